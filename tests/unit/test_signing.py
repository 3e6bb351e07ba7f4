"""plugwatch.signing against the Standard Webhooks spec, checked by an independent verifier written here."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from plugwatch import signing

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def spec_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The spec's algorithm, written from its text, sharing no code with plugwatch.signing."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = headers["webhook-id"] + "." + headers["webhook-timestamp"] + "." + body.decode()
    expected = base64.b64encode(hmac.new(key, content.encode(), hashlib.sha256).digest()).decode()
    for item in headers["webhook-signature"].split(" "):
        version, _, signature = item.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


def _spec_headers(**changes: str) -> dict[str, str]:
    headers = {
        "webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE,
    }
    headers.update(changes)
    return headers


def test_sign_reproduces_the_spec_example_vector() -> None:
    key = signing.decode_secret(SPEC_SECRET)
    assert signing.sign(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_independent_verifier_accepts_the_spec_example() -> None:
    assert spec_verify(SPEC_SECRET, _spec_headers(), SPEC_BODY)


@pytest.mark.parametrize("body", [b"{}", '{"id": "evt_1", "data": {"ä": "ö"}}'.encode(), b"x" * 10_000])
def test_signature_headers_verify_with_the_independent_verifier(body: bytes) -> None:
    headers = signing.signature_headers(signing.decode_secret(SPEC_SECRET), "evt_1", 1_700_000_000, body)
    assert spec_verify(SPEC_SECRET, headers, body)
    assert not spec_verify(SPEC_SECRET, headers, body + b" ")


def test_verify_accepts_the_spec_example_at_its_time() -> None:
    headers = {name.title(): value for name, value in _spec_headers().items()}
    signing.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10)


def test_verify_accepts_any_matching_signature_among_several() -> None:
    """During a key rotation the header carries one signature per key, space-separated."""
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP),
               "webhook-signature": "v1,bm90LXRoaXMtb25l " + SPEC_SIGNATURE}
    signing.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize(
    ("headers", "body", "error"),
    [
        (_spec_headers(), SPEC_BODY + b" ", signing.NoMatchingSignatureError),
        (_spec_headers(**{"webhook-id": "msg_other"}), SPEC_BODY, signing.NoMatchingSignatureError),
        (_spec_headers(**{"webhook-signature": "v2," + SPEC_SIGNATURE[3:]}), SPEC_BODY,
         signing.NoMatchingSignatureError),
        (_spec_headers(**{"webhook-signature": "garbage"}), SPEC_BODY, signing.NoMatchingSignatureError),
        (_spec_headers(**{"webhook-timestamp": "soon"}), SPEC_BODY, signing.TimestampError),
        (_spec_headers(**{"webhook-signature": ""}), SPEC_BODY, signing.MissingHeaderError),
        ({"webhook-id": SPEC_ID}, SPEC_BODY, signing.MissingHeaderError),
    ],
)
def test_verify_rejects_altered_or_malformed_messages(
    headers: dict[str, str], body: bytes, error: type[signing.SignatureError]
) -> None:
    with pytest.raises(error):
        signing.verify(SPEC_SECRET, headers, body, now=SPEC_TIMESTAMP)


def test_verify_rejects_a_timestamp_outside_the_tolerance() -> None:
    with pytest.raises(signing.TimestampError):
        signing.verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP + 301)
    with pytest.raises(signing.TimestampError):
        signing.verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP - 301)


def test_verify_rejects_another_key() -> None:
    other = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()
    with pytest.raises(signing.NoMatchingSignatureError):
        signing.verify(other, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP)


def test_decode_secret_refuses_what_is_not_base64() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        signing.decode_secret("whsec_not base64!")
