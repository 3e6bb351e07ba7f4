"""The `plugwatch` command: one entry point for operators and developers.

Each sub-command group lives in its own module under `plugwatch.cli` and is registered in `_COMMANDS`.
Commands build `Settings.from_env(os.environ)` themselves, so they read the same environment as the
processes they inspect.
"""

from __future__ import annotations

import os
import sys

import click

from ops.dead_letters_cli import dead_letters
from ops.enode_cli import enode
from ops.quarantine_cli import quarantine
from ops.status_cli import status
from plugwatch.logs import configure_logging
from simulator.simulate_cli import simulate
from simulator.up_cli import up


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """plugwatch: Enode webhooks in, 'plugged in at home' events out."""
    configure_logging(os.environ.get("PLUGWATCH_LOG_FORMAT", "auto"), stream=sys.stderr)


for _command in (status, quarantine, simulate, up, enode, dead_letters):
    main.add_command(_command)
