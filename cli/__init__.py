"""The `plugwatch` command's composition root: one click group made of each wing's commands.

    ops        status, subscriptions, quarantine, dead-letters, events (replay), enode (location-setup, webhook)
    worker     enode reconcile (the worker's core and store, fed by the Enode API), mounted in `enode`
    simulator  simulate, up

Each invocation is handed the environment it was started in (`plugwatch.command`), so commands read the same
settings as the processes they inspect, and nothing but this module looks at `os.environ`. An unusable setting
is one line on stderr naming the variable, and exit status 2; a Redis that cannot be reached or fails is one
line naming REDIS_URL's Redis, and exit status 1 (`plugwatch.startup`), in every command.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from ops.dead_letters_cli import dead_letters
from ops.enode_cli import enode
from ops.events_cli import events
from ops.quarantine_cli import quarantine
from ops.status_cli import status
from ops.subscriptions_cli import subscriptions_group
from plugwatch import redis_clients
from plugwatch.command import Invocation
from plugwatch.logs import configure_logging
from plugwatch.settings import read
from plugwatch.startup import exit_on_bad_settings, exit_on_redis_failure
from simulator.simulate_cli import simulate
from simulator.up_cli import up
from worker.enode.reconcile_cli import reconcile_command


class _Main(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # One line, no traceback: unusable configuration exits 2, a Redis down (or failing) exits 1.
        with exit_on_bad_settings("plugwatch"):
            redis_url, rq_redis_url = read(os.environ, "REDIS_URL"), read(os.environ, "RQ_REDIS_URL")
            redis_clients.check_startup(redis_url, rq_redis_url)
            with exit_on_redis_failure("plugwatch", redis_url, rq_redis_url):
                try:
                    return super().invoke(ctx)
                except click.UsageError as error:  # as argparse words it: the usage, then one line
                    _usage_error(error)


def _usage_error(error: click.UsageError) -> NoReturn:
    """`Usage: plugwatch up [OPTIONS]` and `plugwatch up: <what is wrong>` on stderr, exit 2."""
    program = error.ctx.command_path if error.ctx else "plugwatch"
    usage = error.ctx.get_usage() + "\n" if error.ctx else ""
    sys.stderr.write(f"{usage}{program}: {error.format_message()}\n")
    raise SystemExit(error.exit_code)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """plugwatch: Enode webhooks in, 'plugged in at home' events out."""
    ctx.obj = Invocation(os.environ)
    configure_logging(read(os.environ, "PLUGWATCH_LOG_FORMAT"), stream=sys.stderr)


enode.add_command(reconcile_command)
for _command in (status, subscriptions_group, quarantine, simulate, up, enode, dead_letters, events):
    main.add_command(_command)
