"""`plugwatch up` (what ./scripts/run runs): within seconds a newcomer sees a vehicle plugged in at home, and
Ctrl-C stops every process it started."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.support.servers import ROOT, base_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def test_up_shows_a_vehicle_plugged_in_at_home_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    env = base_env(PLUGWATCH_LOG_FORMAT="json")  # no REDIS_URL: up starts a private redis-server
    args = [str(Path(sys.executable).parent / "plugwatch"), "up", "--users", "2", "--rate", "200", "--no-dashboard",
            "--port", str(free_port()), "--logs", str(tmp_path / "logs")]
    up = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if "plugged in at home" in line:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert seen.wait(timeout=90), "no 'plugged in at home' line:\n" + "".join(lines)
        children = psutil.Process(up.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names
        assert "-m receiver" in names  # the Procfile receiver, with its limits against slow clients
        assert "-m worker" in names
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
        time.sleep(0.5)
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"still running after Ctrl-C: {[c.cmdline() for c in alive]}"
        assert "everything stopped" in "".join(lines)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        assert up.stdout is not None
        up.stdout.close()
