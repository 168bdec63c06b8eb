"""HMAC signing shared by the API and the embedding worker."""

import pytest

from gpu_worker.common.signing import MAX_SKEW_SECONDS, sign, signed_auth, verify

NOW = 1_800_000_000


def test_signature_is_hmac_sha256_of_payload_and_ts():
    # Computed independently: printf 'a cat|1800000000' | openssl dgst -sha256 -hmac secret
    assert sign("secret", "a cat", NOW) == (
        "8eb4454ea6a8224d1ca91a72ec5d1ad04befb3f4a4fba7b4e7f6ee68749cf5b6"
    )


@pytest.mark.parametrize(
    ("auth", "now", "ok"),
    [
        ({"ts": NOW, "sig": sign("secret", "a cat", NOW)}, NOW, True),
        ({"ts": NOW, "sig": sign("secret", "a cat", NOW)}, NOW + MAX_SKEW_SECONDS, True),
        ({"ts": NOW, "sig": sign("wrong", "a cat", NOW)}, NOW, False),
        ({"ts": NOW, "sig": sign("secret", "a dog", NOW)}, NOW, False),
        ({"ts": NOW, "sig": sign("secret", "a cat", NOW)}, NOW + MAX_SKEW_SECONDS + 1, False),
        ({"ts": NOW, "sig": sign("secret", "a cat", NOW)}, NOW - MAX_SKEW_SECONDS - 1, False),
        ({"ts": str(NOW), "sig": sign("secret", "a cat", NOW)}, NOW, False),
        ({"ts": True, "sig": sign("secret", "a cat", 1)}, 1, False),
        ({"sig": sign("secret", "a cat", NOW)}, NOW, False),
        ({"ts": NOW}, NOW, False),
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
        "missing",
        "not-an-object",
    ],
)
def test_verify(auth, now, ok):
    assert verify("secret", "a cat", auth, now=now) is ok


def test_signed_auth_verifies_now():
    assert verify("secret", "payload", signed_auth("secret", "payload"))
