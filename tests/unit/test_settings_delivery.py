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


def test_the_read_timeout_max_defaults_to_120_s_or_the_read_timeout_when_that_is_longer() -> None:
    assert delivery_settings({}).read_timeout_max == 120.0
    config = delivery_settings({"PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS": "200"})
    assert (config.read_timeout, config.read_timeout_max) == (200.0, 200.0)
    config = delivery_settings({"PLUGWATCH_DELIVERY_READ_TIMEOUT_MAX_SECONDS": "30",
                                "PLUGWATCH_DELIVERY_SLOW_RESET_SECONDS": "60"})
    assert (config.read_timeout_max, config.slow_reset) == (30.0, 60.0)


def test_a_read_timeout_max_below_the_read_timeout_is_refused_naming_both() -> None:
    with pytest.raises(SettingsError, match=r"READ_TIMEOUT_MAX_SECONDS .* at least PLUGWATCH_DELIVERY_READ_TIMEOUT"):
        delivery_settings({"PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS": "20",
                           "PLUGWATCH_DELIVERY_READ_TIMEOUT_MAX_SECONDS": "10"})


def test_the_lease_of_a_slow_url_outlives_its_longer_attempts() -> None:
    config = DeliverySettings(connect_timeout=1, read_timeout=3, read_timeout_max=60)
    assert lease_ms(config, 60) > 1000 * attempt_seconds(config, 60) > 1000 * attempt_seconds(config)
    assert lease_ms(config, config.read_timeout) == lease_ms(config)
