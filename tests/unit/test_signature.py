"""Enode signature verification: the documented vector, the strict header format, rotation."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugwatch.enode_signature import SignatureFailure, check_header, sign, verify
from tests.conftest import TEST_SECRET

VECTOR_BODY = b'{"payload":"example"}'
VECTOR_SECRET = "example-secret"
VECTOR_SIGNATURE = "sha1=e417e6fc2e7f8a78c93a35a7b344d36ce179fc8d"
BODY = b'[{"event":"enode:webhook:test","createdAt":"2025-03-14T18:31:07.221Z","version":"2024-10-01"}]'
OLD_SECRET = "old-secret-0123456789abcdef"
SECRETS = (TEST_SECRET.encode(), OLD_SECRET.encode())


def test_sign_reproduces_enodes_documented_vector() -> None:
    assert sign(VECTOR_BODY, VECTOR_SECRET) == VECTOR_SIGNATURE


def test_verify_accepts_enodes_documented_vector() -> None:
    assert verify(VECTOR_BODY, [VECTOR_SIGNATURE], [VECTOR_SECRET.encode()]) is None


def test_sign_matches_the_reference_notes_own_vector() -> None:
    """enode-api-reference.md: example E signed with the test secret."""
    assert sign(BODY, TEST_SECRET) == "sha1=86adcae448b2167abd12e4d0be0f2fdba96bad7e"


def test_verify_accepts_any_configured_secret_during_a_rotation() -> None:
    assert verify(BODY, [sign(BODY, TEST_SECRET)], SECRETS) is None
    assert verify(BODY, [sign(BODY, OLD_SECRET)], SECRETS) is None


GOOD = sign(BODY, TEST_SECRET)
HEX = GOOD.removeprefix("sha1=")


@pytest.mark.parametrize(
    ("values", "failure"),
    [
        pytest.param([], SignatureFailure.MISSING, id="absent"),
        pytest.param([""], SignatureFailure.MISSING, id="empty"),
        pytest.param(["sha256=" + HEX], SignatureFailure.MALFORMED, id="wrong-prefix"),
        pytest.param(["SHA1=" + HEX], SignatureFailure.MALFORMED, id="uppercase-prefix"),
        pytest.param([HEX], SignatureFailure.MALFORMED, id="no-prefix"),
        pytest.param(["sha1=" + HEX.upper()], SignatureFailure.MALFORMED, id="uppercase-hex"),
        pytest.param(["sha1==" + HEX], SignatureFailure.MALFORMED, id="doubled-equals"),
        pytest.param(["sha1=" + HEX[:-1] + "g"], SignatureFailure.MALFORMED, id="non-hex"),
        pytest.param(["sha1=" + HEX[:-2]], SignatureFailure.MALFORMED, id="too-short"),
        pytest.param(["sha1=" + HEX + "00"], SignatureFailure.MALFORMED, id="too-long"),
        pytest.param([" " + GOOD], SignatureFailure.MALFORMED, id="leading-space"),
        pytest.param([GOOD + "\n"], SignatureFailure.MALFORMED, id="trailing-newline"),
        pytest.param([GOOD, GOOD], SignatureFailure.MALFORMED, id="two-headers"),
        pytest.param(["sha1=" + "0" * 40], SignatureFailure.MISMATCH, id="wrong-digest"),
        pytest.param([sign(BODY, "another-secret-0123456789")], SignatureFailure.MISMATCH, id="other-secret"),
        pytest.param([GOOD], None, id="valid"),
    ],
)
def test_verify_names_why_a_signature_is_refused(values: list[str], failure: SignatureFailure | None) -> None:
    assert verify(BODY, values, SECRETS) is failure


def test_a_body_changed_by_one_byte_is_a_mismatch() -> None:
    changed = BODY[:-2] + b" ]"
    assert verify(changed, [GOOD], SECRETS) is SignatureFailure.MISMATCH


def test_check_header_judges_the_shape_only() -> None:
    assert check_header(["sha1=" + "0" * 40]) is None


@given(header=st.text(max_size=60), body=st.binary(max_size=200))
def test_verify_never_raises_and_accepts_only_the_exact_signature(header: str, body: bytes) -> None:
    expected = "sha1=" + hmac.new(TEST_SECRET.encode(), body, hashlib.sha1).hexdigest()
    result = verify(body, [header], SECRETS[:1])
    assert (result is None) == (header == expected)


@given(body=st.binary(max_size=500))
def test_verify_accepts_what_sign_produces(body: bytes) -> None:
    assert verify(body, [sign(body, OLD_SECRET)], SECRETS) is None
