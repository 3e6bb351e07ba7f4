"""Every plugwatch process refuses configuration it cannot use with one line naming the variable, exit 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DOWNSTREAM_SECRET, TEST_SECRET
from tests.support.servers import ROOT, Process, base_env

pytestmark = [pytest.mark.slow]

PROCESSES = {
    "python -m worker": [sys.executable, "-m", "worker"],
    "receiver": [sys.executable, "-m", "uvicorn", "receiver.app:app_from_env", "--factory", "--port", "0"],
    "python -m receiver": [sys.executable, "-m", "receiver", "--port", "0"],
    "plugwatch": [str(ROOT / ".venv" / "bin" / "plugwatch"), "status"],
}


@pytest.mark.parametrize("program", sorted(PROCESSES))
def test_a_malformed_downstream_url_is_refused_with_one_line_and_exit_2(program: str, tmp_path: Path) -> None:
    env = base_env(REDIS_URL="redis://127.0.0.1:1/0", ENODE_WEBHOOK_SECRET=TEST_SECRET,
                   DOWNSTREAM_WEBHOOK_URLS="http://ok.example/hook,http://h:abc/hook",
                   DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET)
    process = Process(PROCESSES[program], env, tmp_path / "out.log").start()
    assert process.wait(timeout=60) == 2
    assert process.output().splitlines() == [
        f"{program}: DOWNSTREAM_WEBHOOK_URLS has an unusable URL 'http://h:abc/hook': Invalid port: 'abc'"]
