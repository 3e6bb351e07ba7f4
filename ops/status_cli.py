"""`plugwatch status`: queue depths, oldest job age, dead letters, quarantine, Enode heartbeat, URLs.

Plain text for people, `--json` for scripts. Exit status 0, or 1 when Redis cannot be read; with `--check`,
2 when something needs attention (dead letters, no workers, a paused/disabled URL, a backlog over 60 s, Redis
lost plugwatch's state and no full `enode reconcile` ran since),
listed at the end of the text output and as `problems` in the JSON.
"""

from __future__ import annotations

import sys
import time

import click
import orjson
import redis

from ops.status import read_status, render_text
from plugwatch import command


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--check", is_flag=True, help="Exit 2 when something needs attention (for cron and CI).")
def status(as_json: bool, check: bool) -> None:
    """Show queue depths, oldest job age, dead letters, quarantine, last heartbeat and downstream URLs."""
    settings = command.settings()
    connection = redis.Redis.from_url(settings.process.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        snapshot = read_status(connection, settings.delivery.downstream_urls, time.time())
    except (redis.RedisError, OSError) as error:
        click.echo(f"plugwatch status: cannot read Redis: {error}", err=True)
        sys.exit(1)
    finally:
        connection.close()
    if as_json:
        click.echo(orjson.dumps(snapshot.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_text(snapshot), nl=False)
    if check and snapshot.needs_attention:
        sys.exit(2)
