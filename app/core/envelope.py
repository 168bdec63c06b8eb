"""Envelope encryption of the secrets tenants give the API (their RunPod keys, Hugging Face
tokens, and the secrets their webhooks are signed with).

Each secret is encrypted with a data key of its own (AES-256-GCM, bound to the tenant it is
for), and the data key is wrapped by a key-encryption key (KEK): the database holds only
ciphertexts, and the KEKs live in the stack's Secret Manager (`TENANT_KEY_ENCRYPTION_KEYS`:
`id:base64-of-32-bytes`, comma-separated; the first encrypts, all decrypt). To rotate, put a
new KEK first (a stack: raise `api.tenantKeyGeneration`): the API, at its start, wraps every
data key again with it, and the next rotation drops the old one. Local and test runs without
the setting keep a KEK of their own in TANDEM_HOME.
"""

import base64
import binascii
import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


class KeyringError(ValueError):
    """The KEKs are unusable, or a sealed secret does not open with them."""


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes  # nonce + AES-GCM(data key, secret, tenant)
    wrapped_key: bytes  # nonce + AES-GCM(KEK, data key, kek id)
    kek_id: str

    def text(self) -> str:
        """One column's worth: `sealed:<kek id>:<wrapped key>:<ciphertext>` (base64)."""
        wrapped, ciphertext = (
            base64.b64encode(b).decode() for b in (self.wrapped_key, self.ciphertext)
        )
        return f"{SEALED}{self.kek_id}:{wrapped}:{ciphertext}"

    @classmethod
    def from_text(cls, text: str) -> "Sealed":
        kek_id, wrapped, ciphertext = text.removeprefix(SEALED).split(":")
        return cls(base64.b64decode(ciphertext), base64.b64decode(wrapped), kek_id)


SEALED = "sealed:"


def is_sealed(text: str) -> bool:
    return text.startswith(SEALED)


def _encrypt(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def _decrypt(key: bytes, sealed: bytes, context: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)


class Keyring:
    """The KEKs by id; `current` wraps new data keys."""

    def __init__(self, keks: dict[str, bytes], current: str) -> None:
        if current not in keks:
            raise KeyringError(f"no KEK {current!r}")
        if any(len(kek) != KEY_BYTES for kek in keks.values()):
            raise KeyringError(f"TENANT_KEY_ENCRYPTION_KEYS: a KEK is {KEY_BYTES} bytes")
        self.keks, self.current = keks, current

    @classmethod
    def parse(cls, value: str) -> "Keyring":
        """A keyring from `id:base64,...` (TENANT_KEY_ENCRYPTION_KEYS)."""
        keks: dict[str, bytes] = {}
        for item in value.split(","):
            kek_id, colon, encoded = item.strip().partition(":")
            if not (kek_id and colon):
                raise KeyringError("TENANT_KEY_ENCRYPTION_KEYS: give each KEK as id:base64")
            try:
                keks[kek_id] = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise KeyringError(
                    f"TENANT_KEY_ENCRYPTION_KEYS: {kek_id!r} is not base64"
                ) from None
        return cls(keks, next(iter(keks)))

    @classmethod
    def local(cls, home: Path) -> "Keyring":
        """The KEK of a local or test run, made once under `home` (readable by its owner)."""
        path = home / "tenant-keys.kek"
        if not path.is_file():  # written whole, then linked: a racing process takes one KEK
            home.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f"{path.name}.{secrets.token_hex(8)}")
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write("local:" + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode())
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
            draft.unlink()
        return cls.parse(path.read_text())

    def seal(self, secret: str, tenant: str) -> Sealed:
        data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        ciphertext = _encrypt(data_key, secret.encode(), tenant.encode())
        wrapped = _encrypt(self.keks[self.current], data_key, self.current.encode())
        return Sealed(ciphertext, wrapped, self.current)

    def open(self, sealed: Sealed, tenant: str) -> str:
        kek = self.keks.get(sealed.kek_id)
        if kek is None:
            raise KeyringError(f"the KEK {sealed.kek_id!r} is not in TENANT_KEY_ENCRYPTION_KEYS")
        try:
            data_key = _decrypt(kek, sealed.wrapped_key, sealed.kek_id.encode())
            return _decrypt(data_key, sealed.ciphertext, tenant.encode()).decode()
        except InvalidTag:
            raise KeyringError(
                "a sealed secret does not open: altered, or another tenant's"
            ) from None

    def rewrap(self, sealed: Sealed) -> Sealed:
        """`sealed` with its data key wrapped by the current KEK (its ciphertext unchanged)."""
        kek = self.keks.get(sealed.kek_id)
        if kek is None:
            raise KeyringError(f"the KEK {sealed.kek_id!r} is not in TENANT_KEY_ENCRYPTION_KEYS")
        data_key = _decrypt(kek, sealed.wrapped_key, sealed.kek_id.encode())
        wrapped = _encrypt(self.keks[self.current], data_key, self.current.encode())
        return Sealed(sealed.ciphertext, wrapped, self.current)
