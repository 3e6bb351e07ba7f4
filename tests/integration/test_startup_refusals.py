"""Every plugwatch process refuses configuration it cannot use with one line naming the variable, exit 2,
and a Redis it cannot reach with one line naming REDIS_URL, exit 1; never a traceback."""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
import redis

from plugwatch.settings import URL_FORMS, Settings, SettingsError
from simulator.redis_binary import find_redis_server
from tests.conftest import TEST_DOWNSTREAM_SECRET, TEST_SECRET
from tests.support.entry_points import ENTRY_POINTS
from tests.support.servers import ROOT, Process, RedisServer, base_env, free_port, wait_until
from tests.unit.test_settings_readme import README, readme_table

pytestmark = [pytest.mark.slow]

PROCESSES = {
    "python -m worker": [sys.executable, "-m", "worker"],
    "receiver": [sys.executable, "-m", "uvicorn", "receiver.app:app_from_env", "--factory", "--port", "0"],
    "python -m receiver": [sys.executable, "-m", "receiver", "--port", "0"],
    "plugwatch": [str(ROOT / ".venv" / "bin" / "plugwatch"), "status"],
}
VALID = {"REDIS_URL": "redis://127.0.0.1:1/0", "ENODE_WEBHOOK_SECRET": TEST_SECRET}

# One unusable value per variable of the README's configuration table (a variable missing here is tried with
# "not-a-number", and the test says so if Settings accepts that).
BAD = {
    "REDIS_URL": "localhost:6379",
    "PLUGWATCH_LOG_FORMAT": "loud",
    "PLUGWATCH_METRICS_PORT": "99999",
    "PLUGWATCH_PUMP_INTERVAL_SECONDS": "-1",
    "ENODE_WEBHOOK_SECRET": "changeme",
    "PORT": "8000.5",
    "PLUGWATCH_MAX_BODY_BYTES": "0",
    "PLUGWATCH_RECEIVER_MAX_CONNECTIONS": "inf",
    "PLUGWATCH_INGEST_BATCH": "nan",
    "DOWNSTREAM_WEBHOOK_URLS": "ftp://sink.example/hook",
    "DOWNSTREAM_WEBHOOK_SECRET": "whsec_dG9vc2hvcnQ=",
    "PLUGWATCH_DELIVERY_READ_TIMEOUT_MAX_SECONDS": "1",
    "ENODE_CLIENT_ID": "a-client-without-its-secret",
    "ENODE_CLIENT_SECRET": "a-secret-without-its-client",
    "ENODE_API_URL": "enode-api.production.enode.io",
    "ENODE_TOKEN_URL": "ftp://oauth.production.enode.io/oauth2/token",
}


def bad_value(variable: str) -> str:
    value = BAD.get(variable, "not-a-number")
    with pytest.raises(SettingsError):  # else: give `variable` a value Settings refuses, in BAD
        Settings.from_env(VALID | {variable: value})
    return value


def test_every_setting_with_a_bad_value_is_refused_by_receiver_worker_and_cli_in_one_line_and_exit_2() -> None:
    variables = sorted(readme_table(README.read_text()))
    cases = [base_env(**(VALID | {variable: bad_value(variable)})) for variable in variables]

    def walk(entry: str) -> list[dict[str, object]]:  # one warm process forks a child per variable
        done = subprocess.run([sys.executable, "-m", "tests.support.entry_points", entry], cwd=ROOT,
                              input=orjson.dumps(cases), capture_output=True, timeout=300, check=True)
        return list(orjson.loads(done.stdout))

    with ThreadPoolExecutor(len(ENTRY_POINTS)) as pool:  # the three entry points side by side
        results = dict(zip(ENTRY_POINTS, pool.map(walk, ENTRY_POINTS), strict=True))
    wrong = []
    for entry, outcomes in results.items():
        program = entry.removesuffix(" status")  # the CLI names itself `plugwatch`
        for variable, outcome in zip(variables, outcomes, strict=True):
            lines = str(outcome["stderr"]).splitlines()
            if not (outcome["code"] == 2 and len(lines) == 1 and lines[0].startswith(f"{program}: ")
                    and variable in lines[0]):
                wrong.append(f"{entry} with {variable}={bad_value(variable)!r}: exit {outcome['code']}, {lines}")
    assert not wrong, "\n".join(wrong)
    assert len(variables) * len(ENTRY_POINTS) >= 120  # the whole table, through each of the three


@pytest.mark.parametrize("program", sorted(PROCESSES))
def test_a_malformed_downstream_url_is_refused_with_one_line_and_exit_2(program: str, tmp_path: Path) -> None:
    env = base_env(REDIS_URL="redis://127.0.0.1:1/0", ENODE_WEBHOOK_SECRET=TEST_SECRET,
                   DOWNSTREAM_WEBHOOK_URLS="http://ok.example/hook,http://h:abc/hook",
                   DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET)
    process = Process(PROCESSES[program], env, tmp_path / "out.log").start()
    assert process.wait(timeout=60) == 2
    assert process.output().splitlines() == [
        f"{program}: DOWNSTREAM_WEBHOOK_URLS has an unusable URL 'http://h:abc/hook': Invalid port: 'abc'"]


@pytest.mark.parametrize("program", ["python -m worker", "python -m receiver", "plugwatch"])
def test_a_redis_url_that_is_no_url_is_refused_with_one_line_and_exit_2(program: str, tmp_path: Path) -> None:
    env = base_env(REDIS_URL="notaurl", ENODE_WEBHOOK_SECRET=TEST_SECRET)
    process = Process(PROCESSES[program], env, tmp_path / "out.log").start()
    assert process.wait(timeout=60) == 2
    assert process.output().splitlines() == [
        f"{program}: REDIS_URL must be {URL_FORMS}, got 'notaurl'"]


SENTINEL_PROGRAMS = ["python -m worker", "python -m receiver", "receiver", "plugwatch"]


def _refusal(program: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    process = Process(PROCESSES[program], base_env(ENODE_WEBHOOK_SECRET=TEST_SECRET, **env),
                      tmp_path / f"{program.replace(' ', '_')}-{uuid.uuid4().hex[:8]}.log").start()
    assert process.wait(timeout=60) == 2, process.output()
    return process.output().splitlines()


@pytest.mark.parametrize("program", SENTINEL_PROGRAMS)
def test_a_cluster_redis_url_without_rq_redis_url_is_refused_in_one_line(program: str, tmp_path: Path) -> None:
    lines = _refusal(program, {"REDIS_URL": "redis+cluster://127.0.0.1:1,127.0.0.1:2", "PLUGWATCH_PARTITIONS": "4"},
                     tmp_path)
    assert lines == [f"{program}: RQ_REDIS_URL is required when REDIS_URL is a Redis Cluster (RQ cannot run on a "
                     "cluster: give it a Redis or a Sentinel service of its own)"]


@pytest.mark.parametrize("variable", ["REDIS_URL", "RQ_REDIS_URL"])
def test_sentinels_none_of_which_answers_are_refused_at_start_up_naming_the_variable(variable: str,
                                                                                    tmp_path: Path) -> None:
    nodes = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()},127.0.0.1:{free_port()}"  # nothing listens there
    url = f"redis+sentinel://:hunter2@{nodes}/plugwatch/0"
    for program in SENTINEL_PROGRAMS:
        lines = _refusal(program, {"REDIS_URL": "redis://127.0.0.1:1/0", variable: url}, tmp_path)
        assert lines == [f"{program}: {variable}: none of the sentinels {nodes} answers "
                         f"(in redis+sentinel://:…@{nodes}/plugwatch/0)"]


def test_sentinels_that_know_no_such_service_are_refused_at_start_up_naming_the_variable(tmp_path: Path) -> None:
    binary = find_redis_server()
    assert binary is not None
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {tmp_path}\n")  # monitors nothing
    sentinel = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(port), timeout=10, message="the sentinel did not start")
        url = f"redis+sentinel://127.0.0.1:{port}/nosuch"
        for program in SENTINEL_PROGRAMS:
            lines = _refusal(program, {"REDIS_URL": url}, tmp_path)
            assert lines == [f"{program}: REDIS_URL: the sentinels (127.0.0.1:{port}) know no service 'nosuch' "
                             f"(in {url})"]
    finally:
        sentinel.terminate()
        sentinel.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


PLUGWATCH = str(ROOT / ".venv" / "bin" / "plugwatch")
CANNOT_REACH = "plugwatch: cannot reach Redis at {url} (REDIS_URL): "
REDIS_COMMANDS = {  # the command, and how its line begins
    "plugwatch status": ([PLUGWATCH, "status"], CANNOT_REACH),
    "plugwatch quarantine list": ([PLUGWATCH, "quarantine", "list"], CANNOT_REACH),
    "plugwatch quarantine replay": ([PLUGWATCH, "quarantine", "replay", "--all"], CANNOT_REACH),
    "plugwatch dead-letters list": ([PLUGWATCH, "dead-letters", "list"], CANNOT_REACH),
    "plugwatch dead-letters urls": ([PLUGWATCH, "dead-letters", "urls"], CANNOT_REACH),
    "plugwatch dead-letters replay": ([PLUGWATCH, "dead-letters", "replay", "--all"], CANNOT_REACH),
    # with Enode API credentials (nothing answers there either): Redis is what it reaches first
    "plugwatch enode reconcile": ([PLUGWATCH, "enode", "reconcile"], "plugwatch enode: Redis at REDIS_URL failed: "),
}
UNREACHABLE_ENODE = {"ENODE_CLIENT_ID": "id", "ENODE_CLIENT_SECRET": "secret", "ENODE_API_URL": "http://127.0.0.1:1",
                     "ENODE_TOKEN_URL": "http://127.0.0.1:1/oauth2/token"}


@pytest.mark.parametrize("command", sorted(REDIS_COMMANDS))
def test_a_redis_that_does_not_answer_is_one_line_naming_redis_url_and_exit_1(command: str, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    args, begins = REDIS_COMMANDS[command]
    process = Process(args, base_env(REDIS_URL=url, **UNREACHABLE_ENODE), tmp_path / "out.log").start()
    assert process.wait(timeout=60) == 1
    lines = process.output().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(begins.format(url=url)), lines


def test_a_worker_started_before_its_redis_says_so_and_waits_for_it(tmp_path: Path) -> None:
    """Unlike a command, a worker rides through a Redis that is not there yet (issue 13): a log line naming
    REDIS_URL per try, no traceback, and it starts working once that Redis answers."""
    server = RedisServer(tmp_path / "redis")
    env = base_env(REDIS_URL=server.url, PLUGWATCH_METRICS_PORT="0", PLUGWATCH_LOG_FORMAT="json")
    worker = Process([sys.executable, "-m", "worker"], env, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: "worker.redis_unreachable" in worker.output(), timeout=30, message="no unreachable line")
        assert worker.alive()
        assert "Traceback" not in worker.output()
        assert "REDIS_URL" in worker.output()
        server.start()
        client = server.client()
        wait_until(lambda: bool(client.smembers("rq:workers")), timeout=30, message="the worker did not register")
        client.close()
    finally:
        worker.stop(timeout=10)
        server.stop()


def test_a_worker_whose_rq_redis_is_not_there_yet_names_rq_redis_url_and_waits_for_it(
        redis_url: str, tmp_path: Path) -> None:
    """RQ on a Redis of its own (RQ_REDIS_URL) that is down at start: the data Redis answers, so the lines name
    RQ_REDIS_URL; the worker registers with RQ's Redis once it answers."""
    server = RedisServer(tmp_path / "rq-redis")
    env = base_env(REDIS_URL=redis_url, RQ_REDIS_URL=server.url, PLUGWATCH_METRICS_PORT="0",
                   PLUGWATCH_LOG_FORMAT="json")
    worker = Process([sys.executable, "-m", "worker"], env, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: "worker.redis_unreachable" in worker.output(), timeout=30, message="no unreachable line")
        unreachable = [orjson.loads(line) for line in worker.output().splitlines() if "redis_unreachable" in line]
        assert {line["variable"] for line in unreachable} == {"RQ_REDIS_URL"}
        assert worker.alive()
        assert "Traceback" not in worker.output()
        server.start()
        client = server.client()
        wait_until(lambda: bool(client.smembers("rq:workers")), timeout=30, message="the worker did not register")
        client.close()
        data = redis.Redis.from_url(redis_url)
        assert not data.smembers("rq:workers")  # registered with RQ's Redis only
        data.close()
    finally:
        worker.stop(timeout=10)
        server.stop()
