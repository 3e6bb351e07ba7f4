"""The `plugwatch` command's composition root: one click group made of each wing's commands.

    ops        status, subscriptions, quarantine, dead-letters, enode (location-setup, webhook)
    worker     enode reconcile (the worker's core and store, fed by the Enode API), mounted in `enode`
    simulator  simulate, up

Each invocation is handed the environment it was started in (`plugwatch.command`), so commands read the same
settings as the processes they inspect, and nothing but this module looks at `os.environ`. An unusable setting
is one line on stderr naming the variable, and exit status 2 (`plugwatch.startup`), in every command.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ops.dead_letters_cli import dead_letters
from ops.enode_cli import enode
from ops.quarantine_cli import quarantine
from ops.status_cli import status
from ops.subscriptions_cli import subscriptions_group
from plugwatch.command import Invocation
from plugwatch.logs import configure_logging
from plugwatch.settings import read
from plugwatch.startup import exit_on_bad_settings
from simulator.simulate_cli import simulate
from simulator.up_cli import up
from worker.enode.reconcile_cli import reconcile_command


class _Main(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        with exit_on_bad_settings("plugwatch"):  # unusable configuration: one line, exit 2, no traceback
            return super().invoke(ctx)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """plugwatch: Enode webhooks in, 'plugged in at home' events out."""
    ctx.obj = Invocation(os.environ)
    configure_logging(read(os.environ, "PLUGWATCH_LOG_FORMAT"), stream=sys.stderr)


enode.add_command(reconcile_command)
for _command in (status, subscriptions_group, quarantine, simulate, up, enode, dead_letters):
    main.add_command(_command)
