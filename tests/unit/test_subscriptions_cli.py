"""`plugwatch subscriptions ...` against a real redis-server: validation and what each command prints."""

from __future__ import annotations

import orjson
import pytest
import redis
from click.testing import CliRunner

from cli import main as cli
from plugwatch import keys, subscriptions
from plugwatch.signing import decode_secret
from tests.conftest import TEST_DOWNSTREAM_SECRET

URL = "http://a.example/hook"


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url}


def run(env: dict[str, str], *args: str, exit_code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["subscriptions", *args], env=env)
    assert result.exit_code == exit_code, result.output
    return result.output


def test_add_without_a_secret_prints_a_new_one_alone_on_the_last_line(real_redis: redis.Redis,
                                                                      env: dict[str, str]) -> None:
    secret = run(env, "add", URL, "--types", "control.failed").strip().splitlines()[-1]
    record = subscriptions.load(real_redis, URL)
    assert record is not None
    assert (record.types, record.keys_at(0)) == (("control.failed",), (decode_secret(secret),))
    assert "whsec_" not in run(env, "add", URL)  # an update keeps the secret and prints none
    record = subscriptions.load(real_redis, URL)
    assert record is not None
    assert (record.types, record.keys_at(0)) == ((), (decode_secret(secret),))


@pytest.mark.parametrize(("args", "says"), [
    (("add", "http://h:abc/hook"), "Invalid port"),
    (("add", "ftp://a.example/"), "not an http:// or https:// URL"),
    (("add", URL, "--types", "vehicle.parked"), "unknown event type vehicle.parked"),
    (("add", URL, "--secret", "not-a-secret"), "must look like whsec_"),
])
def test_add_refuses_bad_input_saying_why_and_stores_nothing(real_redis: redis.Redis, env: dict[str, str],
                                                             args: tuple[str, ...], says: str) -> None:
    assert says in run(env, *args, exit_code=2)
    assert subscriptions.load_all(real_redis) == {}


def test_commands_on_an_unknown_url_fail_clearly(env: dict[str, str]) -> None:
    for args in (("remove", URL), ("rotate-secret", URL), ("rotate-secret", URL, "--expire-old")):
        assert "is not a subscription" in run(env, *args, exit_code=1)


def test_list_shows_state_backlog_and_no_secret(real_redis: redis.Redis, env: dict[str, str]) -> None:
    run(env, "add", URL, "--secret", TEST_DOWNSTREAM_SECRET)
    real_redis.xadd(keys.outbox_stream(URL), {"event": b"{}"})
    [row] = [orjson.loads(line) for line in run(env, "list", "--json").splitlines()]
    assert (row["url"], row["types"], row["state"], row["backlog"], row["dead_letters"]) == (URL, [], "active", 1, 0)
    assert TEST_DOWNSTREAM_SECRET.removeprefix("whsec_") not in run(env, "list")
    assert "1 waiting events are still delivered" in run(env, "remove", URL)
    assert "removed" in run(env, "list")
    assert "purge" not in run(env, "list")
    output = run(env, "remove", URL, "--purge")
    assert "purged 1 waiting events and 0 dead letters" in output
    assert "forgotten" in output
    assert run(env, "list") == ""
