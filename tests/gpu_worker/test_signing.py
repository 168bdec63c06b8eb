"""HMAC signing shared by the API and the workers, and the keys derived for each purpose."""

import uuid

import pytest

from app.core import keys
from gpu_worker.common.signing import MAX_SKEW_SECONDS, canonical, sign, signed, verify

NOW = 1_800_000_000
CAT = b"a cat"


def test_signature_is_hmac_sha256_of_message_and_ts():
    # Computed independently: printf 'a cat|1800000000' | openssl dgst -sha256 -hmac secret
    assert sign("secret", CAT, NOW) == (
        "8eb4454ea6a8224d1ca91a72ec5d1ad04befb3f4a4fba7b4e7f6ee68749cf5b6"
    )


def test_a_job_is_signed_whole_as_canonical_json():
    """Every field but `auth`, keys sorted, no spaces, UTF-8: printf
    '{"n":1,"text":"café"}|1800000000' | openssl dgst -sha256 -hmac secret."""
    job = {"text": "café", "n": 1, "auth": {"ts": 1, "sig": "x"}}
    assert canonical(job) == '{"n":1,"text":"café"}'.encode()
    assert sign("secret", canonical(job), NOW) == (
        "301945a201e6c1eabb9fd9cd360570357bb708a463417072fa0b48fb1eb3f409"
    )
    made = signed("secret", {"text": "café", "n": 1})
    assert verify("secret", canonical(made), made["auth"])
    for tampered in ({"n": 2}, {"text": "cafe"}, {"extra": True}):  # any field, not only one
        assert not verify("secret", canonical(made | tampered), made["auth"])


@pytest.mark.parametrize(
    ("auth", "now", "ok"),
    [
        ({"ts": NOW, "sig": sign("secret", CAT, NOW)}, NOW, True),
        ({"ts": NOW, "sig": sign("secret", CAT, NOW)}, NOW + MAX_SKEW_SECONDS, True),
        ({"ts": NOW, "sig": sign("wrong", CAT, NOW)}, NOW, False),
        ({"ts": NOW, "sig": sign("secret", b"a dog", NOW)}, NOW, False),
        ({"ts": NOW, "sig": sign("secret", CAT, NOW)}, NOW + MAX_SKEW_SECONDS + 1, False),
        ({"ts": NOW, "sig": sign("secret", CAT, NOW)}, NOW - MAX_SKEW_SECONDS - 1, False),
        ({"ts": str(NOW), "sig": sign("secret", CAT, NOW)}, NOW, False),
        ({"ts": True, "sig": sign("secret", CAT, 1)}, 1, False),
        ({"sig": sign("secret", CAT, NOW)}, NOW, False),
        ({"ts": NOW}, NOW, False),
        ({"ts": NOW, "sig": "é" * 64}, NOW, False),
        ({"ts": NOW, "sig": "\ud800" * 64}, NOW, False),
        (None, NOW, False),
        ("ts=1", NOW, False),
    ],
    ids=[
        "valid",
        "at-the-edge",
        "wrong-secret",
        "other-payload",
        "expired",
        "future",
        "string-ts",
        "bool-ts",
        "missing-ts",
        "missing-sig",
        "non-ascii-sig",
        "lone-surrogate-sig",
        "missing",
        "not-an-object",
    ],
)
def test_verify(auth, now, ok):
    assert verify("secret", CAT, auth, now=now) is ok


def test_each_purpose_has_a_key_of_its_own_derived_by_hkdf():
    # Computed independently: openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt key:secret
    #   -kdfopt info:tandem/workers HKDF
    assert keys.derive("secret", keys.WORKERS) == (
        "2e4dbd72b8ac17fc8a7f16c77f3914b182391f32864d1630ff34fa1f2d23cd71"
    )
    one, other = uuid.uuid4(), uuid.uuid4()
    derived = [
        keys.derive("secret", purpose) for purpose in (keys.JOB_WEBHOOKS, keys.SIGNED_URLS)
    ] + [keys.deployment_key("secret", one), keys.deployment_key("secret", other)]
    assert len({keys.derive("secret", keys.WORKERS), *derived}) == 5
    assert "secret" not in "".join(derived)
