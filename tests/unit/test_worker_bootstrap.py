"""Worker wiring: drain options from the environment, and a context built without touching Redis."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from plugwatch.settings import Settings, SettingsError
from tests.support.servers import free_port
from worker.bootstrap import DrainOptions, bootstrap


def test_drain_options_default_to_production_values() -> None:
    options = DrainOptions.from_env({})

    assert options == DrainOptions()
    assert (options.batch_entries, options.budget_seconds, options.claim_idle_ms) == (200, 5.0, 15_000)
    assert options.armed_ttl_ms > options.claim_idle_ms, "a re-armed drain must find a dead drainer's entries"


def test_drain_options_read_their_variables() -> None:
    options = DrainOptions.from_env({
        "PLUGWATCH_INGEST_BATCH": "50", "PLUGWATCH_INGEST_BUDGET_SECONDS": "2.5",
        "PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS": "1", "PLUGWATCH_INGEST_MAX_DELIVERIES": "3",
        "PLUGWATCH_INGEST_ARMED_TTL_SECONDS": "1.5", "PLUGWATCH_INGEST_MAX_DRAINERS": "2",
        "PLUGWATCH_INGEST_CONSUMER_IDLE_SECONDS": "60",
    })

    assert options == DrainOptions(batch_entries=50, budget_seconds=2.5, claim_idle_ms=1000, max_deliveries=3,
                                   armed_ttl_ms=1500, max_drainers=2, consumer_idle_ms=60_000)


@pytest.mark.parametrize(("value", "wait_ms"), [("0.25", 250), ("0", 0), ("0.0", 0)])
def test_the_idle_wait_is_read_in_seconds_and_zero_turns_it_off(value: str, wait_ms: int) -> None:
    assert DrainOptions.from_env({"PLUGWATCH_INGEST_IDLE_WAIT_SECONDS": value}).idle_wait_ms == wait_ms


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_a_bad_idle_wait_names_its_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="PLUGWATCH_INGEST_IDLE_WAIT_SECONDS"):
        DrainOptions.from_env({"PLUGWATCH_INGEST_IDLE_WAIT_SECONDS": value})


@pytest.mark.parametrize("value", ["zero", "0", "-1"])
def test_a_bad_drain_option_names_its_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="PLUGWATCH_INGEST_BATCH"):
        DrainOptions.from_env({"PLUGWATCH_INGEST_BATCH": value})


def test_bootstrap_does_no_io() -> None:
    """Nothing listens on the port: building the context must not try to connect."""
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", downstream_urls=())

    context = bootstrap(settings, {}, registry=CollectorRegistry(), consumer="c1")

    assert context.consumer == "c1"
    assert context.options == DrainOptions()
    context.delivery.close()
