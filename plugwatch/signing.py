"""Standard Webhooks signing (https://www.standardwebhooks.com/): how plugwatch signs emitted events and how
a consumer verifies them.  Pure functions; the only impurity is `verify` reading the clock when not given
`now`.

    signed content = "{webhook-id}.{webhook-timestamp}.{raw body}"
    webhook-signature = "v1," + base64(HMAC-SHA256(key, signed content))   (space-separated when several:
                        one per key during a secret rotation, newest first)
    key = base64-decode of the secret after its "whsec_" prefix

Exceptions (all `SignatureError`, a `ValueError`):

    SignatureError
    ├── MissingHeaderError      a webhook-id / -timestamp / -signature header is absent or empty
    ├── TimestampError          the timestamp is not an integer or is outside the tolerance
    └── NoMatchingSignatureError  no "v1," signature in the header matches
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
DEFAULT_TOLERANCE_SECONDS = 5 * 60


class SignatureError(ValueError):
    """The message is not authentic (or cannot be checked); never act on it."""


class MissingHeaderError(SignatureError):
    pass


class TimestampError(SignatureError):
    pass


class NoMatchingSignatureError(SignatureError):
    pass


def decode_secret(secret: str | bytes) -> bytes:
    """`whsec_<base64>` (or plain base64) -> key bytes; bytes are taken as the key itself."""
    if isinstance(secret, bytes):
        return secret
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the secret must be whsec_<base64>") from None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one message: `v1,<base64 HMAC-SHA256>`."""
    content = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    keyed = _keyed(key).copy()  # the key's HMAC set-up done once, not per message
    keyed.update(content)
    digest = keyed.digest()
    return "v1," + base64.b64encode(digest).decode()


@lru_cache(maxsize=256)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def signature_headers(key: bytes | Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt; with several keys (during a secret rotation,
    newest first) `webhook-signature` carries one signature per key, space-separated, in that order."""
    signing_keys = [key] if isinstance(key, bytes) else list(key)
    if not signing_keys:
        raise ValueError("at least one signing key is needed")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(one, msg_id, timestamp, body) for one in signing_keys),
    }


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise `SignatureError` unless `body` with `headers` was signed with `secret` within `tolerance` s.

    `headers` may use any letter case (a plain dict or a framework's header mapping).  `body` must be the
    raw request body bytes, before any JSON parsing.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, raw_timestamp, signatures = (
        lowered.get(name, "").strip() for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and raw_timestamp and signatures):
        raise MissingHeaderError("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise TimestampError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise TimestampError("webhook-timestamp is outside the tolerance (replayed or clock skew)")
    expected = sign(decode_secret(secret), msg_id, timestamp, body).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise NoMatchingSignatureError("no v1 signature matches")
