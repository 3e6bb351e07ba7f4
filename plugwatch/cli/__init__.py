"""The `plugwatch` command: one entry point for operators and developers.

Each sub-command group lives in its own module under `plugwatch.cli` and is registered in `_COMMANDS`.
Commands build `Settings.from_env(os.environ)` themselves, so they read the same environment as the
processes they inspect.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from plugwatch.logs import configure_logging
from plugwatch.startup import exit_on_bad_settings

# module name under plugwatch.cli -> attribute holding the click command or group
_COMMANDS: dict[str, str] = {
    "status": "status",
    "quarantine": "quarantine",
    "simulate": "simulate",
    "up": "up",
    "enode": "enode",
    "deadletters": "dead_letters",
}


class _Main(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        with exit_on_bad_settings("plugwatch"):  # unusable configuration: one line, exit 2, no traceback
            return super().invoke(ctx)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """plugwatch: Enode webhooks in, 'plugged in at home' events out."""
    configure_logging(os.environ.get("PLUGWATCH_LOG_FORMAT", "auto"), stream=sys.stderr)


for _module, _attr in _COMMANDS.items():
    main.add_command(getattr(importlib.import_module(f"plugwatch.cli.{_module}"), _attr))
