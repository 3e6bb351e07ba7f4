"""Enode webhook signatures: `x-enode-signature: sha1=<hex HMAC-SHA1 of the raw body>`; the one implementation,
used by the receiver (`check_header`, then `authentic_digest`) and the simulated Enode (`sign`).

The header is checked strictly, before and apart from the HMAC: exactly `sha1=` followed by 40
lowercase hexadecimal characters (what Enode sends). Anything else — absent, empty, another prefix,
uppercase or non-hex digits, a doubled `=`, the wrong length, surrounding spaces, several headers —
is refused with a reason, never an exception. The digest is compared in constant time against every
configured secret, so a secret can be rotated by configuring the old and the new one together.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Sequence

SIGNATURE_HEADER = "x-enode-signature"
_WELL_FORMED = re.compile(r"sha1=[0-9a-f]{40}")


class SignatureFailure(enum.StrEnum):
    """Why a signature was refused (the `reason` label of `plugwatch_receiver_signature_failures_total`)."""

    MISSING = "missing"  # no header, or an empty one
    MALFORMED = "malformed"  # not exactly `sha1=` + 40 lowercase hex characters, or several headers
    MISMATCH = "mismatch"  # well formed, but no configured secret produces it


def digest(body: bytes, secret: str | bytes) -> bytes:
    """HMAC-SHA1 of `body` under `secret`: the 20 bytes a valid header spells in hex."""
    return hmac.digest(secret.encode() if isinstance(secret, str) else secret, body, "sha1")


def sign(body: bytes, secret: str) -> str:
    """The header value Enode sends for `body` signed with `secret`."""
    return "sha1=" + digest(body, secret).hex()


def check_header(values: Sequence[str]) -> SignatureFailure | None:
    """Check the shape of the signature header(s) without touching the body; None when well formed."""
    if not values or (len(values) == 1 and not values[0]):
        return SignatureFailure.MISSING
    if len(values) > 1 or _WELL_FORMED.fullmatch(values[0]) is None:
        return SignatureFailure.MALFORMED
    return None


def verify(body: bytes, values: Sequence[str], secrets: Sequence[bytes]) -> SignatureFailure | None:
    """None when `values` (the header's values) is a valid signature of `body` under one of `secrets`."""
    failure = check_header(values)
    if failure is not None:
        return failure
    return None if authentic_digest(body, values[0], secrets) is not None else SignatureFailure.MISMATCH


def authentic_digest(body: bytes, value: str, secrets: Sequence[bytes]) -> bytes | None:
    """The 20-byte digest of a well-formed header `value` (`check_header` passed) when it signs `body` under
    one of `secrets`, else None. The receiver's dedupe mark is built from it (`plugwatch.dedupe_marks`)."""
    given = bytes.fromhex(value[5:])  # well formed: 40 hex digits after "sha1="
    matched = False
    for secret in secrets:  # no early exit: the time does not tell which secret matched
        matched |= hmac.compare_digest(hmac.digest(secret, body, "sha1"), given)
    return given if matched else None
