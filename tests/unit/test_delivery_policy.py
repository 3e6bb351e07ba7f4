"""worker.delivery.policy and .events: what an attempt's outcome means, and how long to wait."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.delivery.event_info import parse_event
from worker.delivery.policy import Outcome, backoff_delay, classify_status, parse_retry_after, retry_delay


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SUCCESS), (204, Outcome.SUCCESS), (299, Outcome.SUCCESS),
        (410, Outcome.DISABLED),
        (408, Outcome.RETRY), (429, Outcome.RETRY), (500, Outcome.RETRY), (503, Outcome.RETRY),
        (599, Outcome.RETRY),
        # Standard Webhooks: every other non-2xx is a failure to retry (redirects are not followed)
        (400, Outcome.RETRY), (401, Outcome.RETRY), (404, Outcome.RETRY), (413, Outcome.RETRY),
        (301, Outcome.RETRY), (302, Outcome.RETRY), (101, Outcome.RETRY), (600, Outcome.RETRY),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("120", now=0) == 120.0


def test_retry_after_as_http_date_counts_from_now() -> None:
    when = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=when.timestamp() - 30) == pytest.approx(30)


@pytest.mark.parametrize("value", [None, "", "  ", "soon", "-5", "1.5e9x", "Wed, 99 Foo 2030"])
def test_unusable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, now=0) is None


def test_a_retry_after_in_the_past_means_no_wait() -> None:
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT", now=2e9) == 0.0


@given(attempts=st.integers(1, 10_000), jitter=st.floats(0, 1, exclude_max=True))
def test_backoff_doubles_from_base_up_to_cap_with_half_jitter(attempts: int, jitter: float) -> None:
    step = min(600.0, 1.0 * 2 ** min(attempts - 1, 62))
    delay = backoff_delay(attempts, base=1.0, cap=600.0, jitter=jitter)
    assert step / 2 <= delay <= step


def test_backoff_grows_with_attempts() -> None:
    delays = [backoff_delay(n, base=1.0, cap=600.0, jitter=0.5) for n in range(1, 12)]
    assert delays == sorted(delays)
    assert delays[0] == 0.75
    assert delays[-1] == 450.0


def test_retry_delay_honours_a_longer_retry_after_up_to_its_cap() -> None:
    options = {"base": 1.0, "cap": 600.0, "retry_after_max": 3600.0, "jitter": 0.0}
    assert retry_delay(1, 30.0, **options) == 30.0
    assert retry_delay(1, 99_999.0, **options) == 3600.0
    assert retry_delay(1, None, **options) == 0.5
    assert retry_delay(20, 1.0, **options) == 300.0


def test_parse_event_reads_id_type_and_occurred_at() -> None:
    info = parse_event(b'{"id": "evt_1", "type": "vehicle.plugged_in_at_home", "occurredAt": "2025-03-14T18:02:05Z"}')
    assert info is not None
    assert (info.id, info.type) == ("evt_1", "vehicle.plugged_in_at_home")
    assert info.occurred_at == datetime(2025, 3, 14, 18, 2, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"type": "x"}', b'{"id": 7}', b'{"id": ""}'])
def test_parse_event_refuses_what_has_no_usable_id(body: bytes) -> None:
    assert parse_event(body) is None


def test_parse_event_tolerates_a_missing_or_odd_occurred_at() -> None:
    for occurred in ['"yesterday"', "12", '"2025-03-14T18:02:05"']:
        info = parse_event(b'{"id": "evt_1", "occurredAt": %s}' % occurred.encode())
        assert info is not None
        assert info.occurred_at is None


@pytest.mark.parametrize("value", ["\u00b2", "\u2460", "1\u00b2", "soon", "-5"])
def test_retry_after_that_is_not_plain_digits_or_a_date_is_ignored(value: str) -> None:
    """A sink's odd header must never crash the drainer (str.isdigit() accepts "²")."""
    assert parse_retry_after(value, now=0) is None
