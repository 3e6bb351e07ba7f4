"""`plugwatch status`: queue depths, oldest job age, dead letters, quarantine, Enode heartbeat, URLs.

Plain text for people, `--json` for scripts. Exit status 0, or 1 when Redis cannot be read; with `--check`,
2 when something needs attention (dead letters, no workers, a paused/disabled URL, a backlog over 60 s, a
failing Redis health check: refusing writes, an evicting maxmemory-policy, evicted keys; Redis lost plugwatch's
state and no full `enode reconcile` ran since),
listed at the end of the text output and as `problems` in the JSON.
"""

from __future__ import annotations

import sys
import time

import click
import orjson

from ops.status import read_status, render_text
from plugwatch import command, redis_clients


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--check", is_flag=True, help="Exit 2 when something needs attention (for cron and CI).")
def status(as_json: bool, check: bool) -> None:
    """Show queue depths, oldest job age, dead letters, quarantine, last heartbeat and downstream URLs."""
    settings = command.settings()
    connection = command.connect(settings)
    queues = command.connect_queues(settings, connection)
    try:  # Redis down: one line and exit 1 (cli)
        snapshot = read_status(connection, (), time.time(), queues=queues,
                               partitions=settings.process.partitions)
    finally:
        redis_clients.close_both(connection, queues)
    if as_json:
        click.echo(orjson.dumps(snapshot.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_text(snapshot), nl=False)
    if check and snapshot.needs_attention:
        sys.exit(2)
