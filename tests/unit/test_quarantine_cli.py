"""`plugwatch quarantine list|show|replay|purge` against a real redis-server (REDIS_URL)."""

from __future__ import annotations

import orjson
import pytest
import redis
from click.testing import CliRunner

from cli import main
from plugwatch import keys, quarantine

NOW = 1_700_000_000.0
GOOD = orjson.dumps([{"event": "user:vehicle:updated", "version": "2024-10-01", "vehicle": {"id": "v1"}}])


@pytest.fixture
def cli(redis_url: str) -> CliRunner:
    return CliRunner(env={"REDIS_URL": redis_url, "ENODE_WEBHOOK_SECRET": ""})


def invoke(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(main, ["quarantine", *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_list_shows_each_entry_and_the_total(cli: CliRunner, real_redis: redis.Redis) -> None:
    entry_id = quarantine.add(real_redis, "d1", b"<html>", "invalid_json", now=NOW)
    quarantine.add(real_redis, "d2", b"[1]", "event rejected", now=NOW, event_index=0)
    output = invoke(cli, "list")
    assert f"{entry_id}\t2023-11-14T22:13:20.000Z\tinvalid_json\td1\t-\t6B" in output
    assert "event rejected\td2\t0\t3B" in output
    assert "2 shown, 2 in quarantine" in output


def test_show_prints_the_raw_body(cli: CliRunner, real_redis: redis.Redis) -> None:
    entry_id = quarantine.add(real_redis, "d1", b"<html>", "invalid_json", now=NOW)
    output = invoke(cli, "show", entry_id)
    assert "delivery: d1" in output
    assert "reason: invalid_json" in output
    assert output.rstrip().endswith("<html>")


def test_show_says_when_the_body_is_one_event_alone_and_what_it_replays(
        cli: CliRunner, real_redis: redis.Redis) -> None:
    entry_id = quarantine.add(real_redis, "d1", b"[1, 2]", "event is not a JSON object", now=NOW, event_index=1,
                              replay_of="5-0")
    output = invoke(cli, "show", entry_id)
    assert "event_index: 1 (the body below is that event alone)" in output
    assert "replay_of: 5-0" in output
    assert output.rstrip().endswith("[2]")
    assert "\treplay of 5-0" in invoke(cli, "list")


def test_show_of_an_unknown_entry_fails(cli: CliRunner) -> None:
    assert "no quarantine entry" in invoke(cli, "show", "1-0", code=1)


def test_replay_by_id_requeues_and_reports(cli: CliRunner, real_redis: redis.Redis) -> None:
    entry_id = quarantine.add(real_redis, "d1", GOOD, "worker crashed", now=NOW)
    assert f"{entry_id}\treplayed" in invoke(cli, "replay", entry_id)
    assert real_redis.xlen(keys.INGEST_STREAM) == 1
    assert quarantine.count(real_redis) == 0


def test_replay_all_keeps_still_invalid_entries_and_exits_nonzero(cli: CliRunner, real_redis: redis.Redis) -> None:
    quarantine.add(real_redis, "d1", GOOD, "worker crashed", now=NOW)
    bad = quarantine.add(real_redis, "d2", b"<html>", "invalid_json", now=NOW)
    output = invoke(cli, "replay", "--all", code=1)
    assert f"{bad}\tstill_invalid" in output
    assert "1 of 2 entries not replayed" in output
    assert [e.id for e in quarantine.entries(real_redis)] == [bad]
    assert f"{bad}\treplayed" in invoke(cli, "replay", "--force", bad)


def test_replay_needs_ids_or_all(cli: CliRunner) -> None:
    assert "exactly one" in invoke(cli, "replay", code=2)


def test_purge_asks_for_confirmation(cli: CliRunner, real_redis: redis.Redis) -> None:
    quarantine.add(real_redis, "d1", b"x", "r", now=NOW)
    result = cli.invoke(main, ["quarantine", "purge", "--all"], input="n\n")
    assert result.exit_code == 1
    assert quarantine.count(real_redis) == 1


def test_purge_by_id_all_and_age(cli: CliRunner, real_redis: redis.Redis) -> None:
    """Age is the entry's stream id (the time it was quarantined)."""
    real_redis.xadd(keys.QUARANTINE_STREAM, {"d": "old", "b": "x", "reason": "r", "at": "t"}, id="1000-0")
    first = quarantine.add(real_redis, "d1", b"x", "r", now=NOW)
    quarantine.add(real_redis, "d3", b"x", "r", now=NOW)
    assert "1 entries purged" in invoke(cli, "purge", "--yes", first)
    assert "1 entries purged" in invoke(cli, "purge", "--yes", "--older-than", "7d")
    assert "0 entries purged" in invoke(cli, "purge", "--yes", "--older-than", "1h")
    assert "1 entries purged" in invoke(cli, "purge", "--yes", "--all")


def test_purge_refuses_a_bad_duration_and_ambiguous_selection(cli: CliRunner) -> None:
    assert "use e.g." in invoke(cli, "purge", "--yes", "--older-than", "soon", code=2)
    assert "exactly one" in invoke(cli, "purge", "--yes", "--all", "1-0", code=2)


@pytest.mark.parametrize("args", [
    ["quarantine", "show", "abc"], ["quarantine", "replay", "abc"], ["quarantine", "purge", "1-x", "--yes"],
    ["quarantine", "list", "--after", "abc"], ["quarantine", "list", "--limit", "-1"],
    ["simulate", "--url", "http://127.0.0.1:9/x", "--batch", "5-1"],
    ["simulate", "--url", "http://127.0.0.1:9/x", "--batch", "x"],
    ["simulate", "--url", "http://127.0.0.1:9/x", "--concurrency", "0"],
])
def test_bad_input_is_a_usage_error_not_a_traceback(cli: CliRunner, args: list[str]) -> None:
    result = cli.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output
