"""Settings.delivery: tuning from PLUGWATCH_DELIVERY_* variables, failing fast by name."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from plugwatch.settings import DeliverySettings, Settings, SettingsError
from worker.delivery.lease import attempt_seconds, lease_ms


def delivery_settings(environ: Mapping[str, str]) -> DeliverySettings:
    return Settings.from_env(environ, require_enode_secret=False).delivery


def test_defaults_and_the_max_age_from_settings() -> None:
    config = delivery_settings({"PLUGWATCH_DELIVERY_MAX_AGE_SECONDS": "60"})
    assert config == DeliverySettings(max_age_seconds=60.0)
    assert (config.connect_timeout, config.read_timeout, config.dead_letter_ttl) == (5.0, 15.0, 7 * 86400)


def test_variables_override_the_defaults() -> None:
    config = delivery_settings({
        "PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS": "2", "PLUGWATCH_DELIVERY_BATCH_SIZE": "10",
        "PLUGWATCH_DEAD_LETTER_TTL_SECONDS": "3600", "PLUGWATCH_DELIVERY_BACKOFF_BASE_SECONDS": "0.1",
    })
    assert (config.read_timeout, config.batch_size, config.dead_letter_ttl, config.backoff_base) == (2.0, 10, 3600, 0.1)


@pytest.mark.parametrize(("value", "seconds"), [("", 0.5), ("2", 2.0), ("0", 0.0)])
def test_the_idle_wait_defaults_to_half_a_second_and_zero_turns_it_off(value: str, seconds: float) -> None:
    config = delivery_settings({"PLUGWATCH_DELIVERY_IDLE_WAIT_SECONDS": value})
    assert config.idle_wait == seconds


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_a_bad_idle_wait_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="PLUGWATCH_DELIVERY_IDLE_WAIT_SECONDS"):
        delivery_settings({"PLUGWATCH_DELIVERY_IDLE_WAIT_SECONDS": value})


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_a_bad_value_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="PLUGWATCH_DELIVERY_CONNECT_TIMEOUT_SECONDS"):
        delivery_settings({"PLUGWATCH_DELIVERY_CONNECT_TIMEOUT_SECONDS": value})


def test_the_lease_outlives_any_attempt_and_any_inline_wait() -> None:
    config = DeliverySettings(connect_timeout=1, read_timeout=3, inline_wait_max=30)
    assert lease_ms(config) > 1000 * attempt_seconds(config)
    assert lease_ms(config) > 1000 * config.inline_wait_max
