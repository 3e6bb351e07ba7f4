"""`plugwatch simulate` refuses what it could never send to in one line, before sending anything."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import main


@pytest.mark.parametrize("url", ["http://h:abc/x", "ftp://x/y", "http://127.0.0.1:99999/webhooks/enode"])
def test_simulate_refuses_an_unusable_url_in_one_line(url: str) -> None:
    """Not a traceback on the first send: one line naming --url, exit 2."""
    result = CliRunner().invoke(main, ["simulate", "--users", "1", "--url", url],
                                env={"ENODE_WEBHOOK_SECRET": "x" * 32})
    assert result.exit_code == 2
    assert f"Invalid value for --url: {url!r}: " in result.stderr
    assert "Traceback" not in result.output
