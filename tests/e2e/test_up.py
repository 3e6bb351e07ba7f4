"""`plugwatch up` (what ./scripts/run runs): within seconds a newcomer sees a vehicle plugged in at home, a
second terminal that sources `<logs>/env` talks to the running demo (its Enode API too: `enode reconcile`), and
Ctrl-C stops every process it started. What it cannot start it refuses in one line naming the port, the flag or
REDIS_URL."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from simulator.stories import build_scenario
from simulator.truth import expected_events
from tests.support.eventlog import alive_devices
from tests.support.servers import ROOT, RedisServer, base_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

PLUGWATCH = str(Path(sys.executable).parent / "plugwatch")


class Up:
    """A `plugwatch up` process and the lines it has printed so far (stdout and stderr together)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen([PLUGWATCH, "up", *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.ended = False  # its output is closed
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        """The first line matching `pattern`, waiting up to `timeout` for it (a deadline, not a measurement)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        return match
                if self.ended or time.monotonic() > deadline:
                    raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))
                self._changed.wait(0.5)

    def wait_for_lines(self, pattern: str, count: int, timeout: float = 90) -> None:
        """Wait up to `timeout` until `count` lines match `pattern` (a deadline, not a measurement)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len([line for line in self.lines if re.search(pattern, line)]) < count:
                if self.ended or time.monotonic() > deadline:
                    raise AssertionError(f"fewer than {count} lines matching {pattern!r}:\n" + self.text())
                self._changed.wait(0.5)

    def text(self) -> str:
        return "\n".join(self.lines)

    def interrupt(self) -> int:
        self.popen.send_signal(signal.SIGINT)
        return self.popen.wait(timeout=30)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        assert self.popen.stdout is not None
        self.popen.stdout.close()


def run_up(args: list[str], env: dict[str, str]) -> Iterator[Up]:
    up = Up(args, env)
    try:
        yield up
    finally:
        up.close()


def in_second_terminal(env_file: Path, command: str) -> subprocess.CompletedProcess[str]:
    """`command` in a fresh shell that has only sourced the env file `up` wrote (no other plugwatch settings)."""
    return subprocess.run(["bash", "-c", f"source {env_file} && {command}"], env=base_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def reconcile_in_second_terminal(up: Up, env_file: Path, seeds: list[int]) -> None:
    """The demo's Enode API lists the devices of `up`'s scenario and of the second terminal's `simulate`: once
    the sink printed every event the truth expects, a reconcile reads exactly them and finds nothing new or
    deleted; the API's webhook is the demo's receiver."""
    scenarios = [build_scenario(2, seed) for seed in seeds]
    for seed, scenario in zip(seeds, scenarios, strict=True):
        up.wait_for_lines(rf"^sink: .* usr-{seed}-\d+ #", len(expected_events(scenario.events)), timeout=60)
    reconciled = in_second_terminal(env_file, f"{PLUGWATCH} enode reconcile --prune-deleted")
    assert reconciled.returncode == 0, reconciled.stderr
    chargers, vehicles = (sum(len(alive_devices(scenario.events, kind)) for scenario in scenarios)
                          for kind in ("charger", "vehicle"))
    assert reconciled.stdout.strip() == (f"reconciled {chargers} chargers and {vehicles} vehicles; "
                                         "0 events emitted (none)")
    logged = [orjson.loads(line) for line in reconciled.stderr.splitlines() if line.startswith("{")]
    assert [entry["deleted"] for entry in logged if entry["event"] == "enode.pruned"] == [0]
    hooks = in_second_terminal(env_file, f"{PLUGWATCH} enode webhook show")
    [hook] = orjson.loads(hooks.stdout)
    assert hook["url"] == up.wait_for(r"up: receiver +(http://\S+)")[1]
    tested = in_second_terminal(env_file, f"{PLUGWATCH} enode webhook test {hook['id']}")
    assert tested.stdout.strip() == "SUCCESS: HTTP 200", tested.stdout + tested.stderr


def refused(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`plugwatch up` with `args`, expected to end by itself (a refusal)."""
    return subprocess.run([PLUGWATCH, "up", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)


def test_up_shows_a_vehicle_at_home_a_second_terminal_talks_to_it_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    env = base_env(PLUGWATCH_LOG_FORMAT="json")  # no REDIS_URL: up starts a private redis-server
    logs = tmp_path / "logs"
    args = ["--users", "2", "--rate", "200", "--port", "0", "--dashboard-port", "0", "--logs", str(logs)]
    for up in run_up(args, env):
        up.wait_for("plugged in at home")
        children = psutil.Process(up.popen.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names
        assert "-m receiver" in names  # the Procfile receiver, with its limits against slow clients
        assert "-m worker" in names
        dashboard = up.wait_for(r"up: rq-dashboard (http://\S+)")[1]
        assert httpx.get(dashboard + "/", timeout=10).status_code == 200  # advertised only once it answers
        sink_url = up.wait_for(r"up: demo sink +(http://\S+)")[1]
        seed = int(up.wait_for(r"seed (\d+) \(--seed \1 repeats it\)")[1])

        # The banner's export block is the env file, with full values.
        env_file = Path(up.wait_for(r"source (\S+)/env")[1]) / "env"
        assert env_file == logs / "env"
        exported = [line for line in env_file.read_text().splitlines() if line.startswith("export ")]
        assert [line.strip() for line in up.lines if line.startswith("  export ")] == exported
        values = dict(line.removeprefix("export ").split("=", 1) for line in exported)
        assert set(values) == {"REDIS_URL", "ENODE_WEBHOOK_SECRET", "DOWNSTREAM_WEBHOOK_URLS",
                               "DOWNSTREAM_WEBHOOK_SECRET", "PORT", "ENODE_CLIENT_ID", "ENODE_CLIENT_SECRET",
                               "ENODE_API_URL", "ENODE_TOKEN_URL"}
        assert len(values["ENODE_WEBHOOK_SECRET"]) == 64  # the whole secret, not its first 8 characters
        assert values["DOWNSTREAM_WEBHOOK_URLS"] == sink_url

        status = in_second_terminal(env_file, f"{PLUGWATCH} status --json")
        assert status.returncode == 0, status.stderr
        snapshot = orjson.loads(status.stdout)
        assert snapshot["workers"] >= 1
        assert sink_url in {url["url"] for url in snapshot["downstream"]}
        urls = in_second_terminal(env_file, f"{PLUGWATCH} dead-letters urls")
        assert urls.returncode == 0, urls.stderr
        assert urls.stdout.startswith(f"{sink_url}\tok"), urls.stdout  # the live sink, not "(not configured)"
        for command in ("quarantine list", "dead-letters list"):
            listed = in_second_terminal(env_file, f"{PLUGWATCH} {command}")
            assert listed.returncode == 0, listed.stderr

        other = seed + 1  # simulate from the second terminal: its users' events reach the demo's sink
        sent = in_second_terminal(env_file, f"{PLUGWATCH} simulate --users 2 --seed {other} --rate 500")
        assert sent.returncode == 0, sent.stderr
        up.wait_for(rf"sink: .* usr-{other}-0000\d\d #\d+ ", timeout=60)
        reconcile_in_second_terminal(up, env_file, [seed, other])

        assert up.interrupt() == 0
        time.sleep(0.5)
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"still running after Ctrl-C: {[c.cmdline() for c in alive]}"
        assert "everything stopped" in up.text()


def test_a_second_run_on_the_same_redis_shows_events_again_with_a_new_seed(private_redis: RedisServer,
                                                                           tmp_path: Path) -> None:
    env = base_env(REDIS_URL=private_redis.url)
    seeds = []
    for run in range(2):
        args = ["--users", "1", "--rate", "500", "--port", "0", "--no-dashboard", "--logs", str(tmp_path / str(run))]
        for up in run_up(args, env):
            up.wait_for(rf"up: Redis +{re.escape(private_redis.url)} \(REDIS_URL\)")
            seeds.append(up.wait_for(r"seed (\d+)")[1])
            up.wait_for(rf"sink: .* usr-{seeds[-1]}-000000 ")  # the run's own events, on a Redis used before
            assert up.interrupt() == 0
    assert seeds[0] != seeds[1]


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("flag", ["--port", "--dashboard-port", "--sink-port"])
def test_a_busy_port_is_refused_in_one_line_naming_the_port_and_its_flag(flag: str, tmp_path: Path) -> None:
    with _listening() as taken:
        port = taken.getsockname()[1]
        done = refused(["--port", "0", "--dashboard-port", "0", flag, str(port), "--logs", str(tmp_path)],
                       base_env())
    assert done.returncode == 1
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr  # one line, nothing started
    assert done.stderr.startswith(f"plugwatch up: port {port} (")
    assert f"choose another with {flag} N" in done.stderr
    assert not list(tmp_path.iterdir())


def test_an_unreachable_redis_url_is_refused_not_replaced_by_a_private_one(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = refused(["--port", "0", "--dashboard-port", "0", "--logs", str(tmp_path)], base_env(REDIS_URL=url))
    assert done.returncode == 1  # a runtime failure (the setting is well-formed; its Redis is down)
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(f"plugwatch up: cannot reach Redis at {url} (REDIS_URL): ")
    assert "--private-redis" in done.stderr
    assert not list(tmp_path.iterdir())


def test_up_needs_at_least_one_worker() -> None:
    done = refused(["--workers", "0"], base_env())
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "Usage: plugwatch up [OPTIONS]", "plugwatch up: Invalid value for '--workers': 0 is not in the range x>=1."]
