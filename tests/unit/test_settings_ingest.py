"""Settings.ingest: how a drain job behaves, from PLUGWATCH_INGEST_* variables, failing fast by name."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from plugwatch.settings import IngestSettings, Settings, SettingsError


def ingest_settings(environ: Mapping[str, str]) -> IngestSettings:
    return Settings.from_env(environ, require_enode_secret=False).ingest


def test_drain_options_default_to_production_values() -> None:
    options = ingest_settings({})

    assert options == IngestSettings()
    assert (options.batch_entries, options.budget_seconds, options.claim_idle_ms) == (200, 5.0, 15_000)
    assert options.armed_ttl_ms > options.claim_idle_ms, "a re-armed drain must find a dead drainer's entries"


def test_drain_options_read_their_variables() -> None:
    options = ingest_settings({
        "PLUGWATCH_INGEST_BATCH": "50", "PLUGWATCH_INGEST_BUDGET_SECONDS": "2.5",
        "PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS": "1", "PLUGWATCH_INGEST_MAX_DELIVERIES": "3",
        "PLUGWATCH_INGEST_ARMED_TTL_SECONDS": "1.5", "PLUGWATCH_INGEST_MAX_DRAINERS": "2",
        "PLUGWATCH_INGEST_CONSUMER_IDLE_SECONDS": "60",
    })

    assert options == IngestSettings(batch_entries=50, budget_seconds=2.5, claim_idle_ms=1000, max_deliveries=3,
                                   armed_ttl_ms=1500, max_drainers=2, consumer_idle_ms=60_000)


@pytest.mark.parametrize(("value", "wait_ms"), [("0.25", 250), ("0", 0), ("0.0", 0)])
def test_the_idle_wait_is_read_in_seconds_and_zero_turns_it_off(value: str, wait_ms: int) -> None:
    assert ingest_settings({"PLUGWATCH_INGEST_IDLE_WAIT_SECONDS": value}).idle_wait_ms == wait_ms


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_a_bad_idle_wait_names_its_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="PLUGWATCH_INGEST_IDLE_WAIT_SECONDS"):
        ingest_settings({"PLUGWATCH_INGEST_IDLE_WAIT_SECONDS": value})


@pytest.mark.parametrize("value", ["zero", "0", "-1"])
def test_a_bad_drain_option_names_its_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="PLUGWATCH_INGEST_BATCH"):
        ingest_settings({"PLUGWATCH_INGEST_BATCH": value})
