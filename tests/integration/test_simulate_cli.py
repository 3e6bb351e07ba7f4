"""`plugwatch simulate` says what it is doing: progress every few seconds, and at once when nothing answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET
from tests.support.servers import ROOT, Process, base_env, free_port, start_receiver, wait_until

pytestmark = [pytest.mark.slow]

PLUGWATCH = str(ROOT / ".venv" / "bin" / "plugwatch")


def simulate(url: str, log: Path, *args: str) -> Process:
    return Process([PLUGWATCH, "simulate", "--url", url, *args], base_env(ENODE_WEBHOOK_SECRET=TEST_SECRET),
                   log).start()


def test_simulate_says_the_receiver_is_not_reachable_then_reports_progress_once_it_is(redis_url: str,
                                                                                        tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/enode"
    sender = simulate(url, tmp_path / "simulate.log", "--users", "5", "--rate", "20", "--give-up-after", "0")
    receiver = None
    try:
        # It is said within a second or so; 15 s is a deadline generous enough for a loaded machine.
        wait_until(lambda: f"receiver not reachable at {url} (" in sender.output(), timeout=15,
                   message="no 'receiver not reachable' line")
        assert sender.alive()  # --give-up-after 0: it keeps resending
        receiver, _ = start_receiver(base_env(REDIS_URL=redis_url, ENODE_WEBHOOK_SECRET=TEST_SECRET),
                                     tmp_path / "receiver.log", port)
        assert sender.wait(timeout=120) == 0, sender.output()
    finally:
        sender.stop()
        if receiver is not None:
            receiver.stop()
    lines = sender.output().splitlines()
    progress = [line for line in lines if " deliveries sent, " in line]
    assert progress, lines  # ~10 s of sending at 20 events/s: at least one line on the 5 s period
    assert all(line.startswith("simulate: ") and line.endswith(" retrying") for line in progress)
    assert lines[-1].startswith("simulate: accepted ")
    assert ", gave up 0" in lines[-1]


def test_simulate_stops_with_exit_1_when_nothing_answers_for_its_give_up_time(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/webhooks/enode"  # nothing listens there
    sender = simulate(url, tmp_path / "simulate.log", "--users", "1", "--give-up-after", "2")
    try:
        assert sender.wait(timeout=60) == 1
    finally:
        sender.stop()
    lines = sender.output().splitlines()
    assert any(line.startswith(f"simulate: receiver not reachable at {url} (") for line in lines), lines
    assert lines[-1].startswith(f"simulate: receiver not reachable at {url} for 2 s: stopped with ")
    assert "Traceback" not in sender.output()
