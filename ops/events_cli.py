"""`plugwatch events replay --url URL --since T [--until T] [--type TYPE]…`: send the events `plugwatch:events`
still holds for a window to a URL again (same ids, same bytes), through its outbox (see `ops.events_replay`).

It prints how many events it queued (or that the window is empty); anything it cannot do as asked — a
missing or bad flag, a URL that is not a destination, a disabled URL — is one line on stderr and exit 2.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import NoReturn

import click

from ops import events_replay
from plugwatch import command, keys, url_state
from plugwatch.settings import Settings

USAGE_EXIT = 2


class _OneLine(click.Command):
    """Click's usage errors as one line (`plugwatch events replay: …`), exit 2, without the usage text."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            _refuse(error.format_message())


@click.group("events")
def events() -> None:
    """The emitted events (the Redis stream plugwatch:events): replay a window to a URL."""


@events.command("replay", cls=_OneLine)
@click.option("--url", default=None, help="The downstream URL to send them to (configured).")
@click.option("--since", default=None, help="From this time on: ISO-8601 (UTC if no offset) or 30m, 2h, 1d ago.")
@click.option("--until", default=None, help="Before this time (same forms); default: up to the newest event.")
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable).")
def replay(url: str | None, since: str | None, until: str | None, types: tuple[str, ...]) -> None:
    """Send the events plugwatch:events still holds, committed in [--since, --until), to URL again."""
    if url is None or since is None:
        _refuse("--url and --since are required")
    now_ms = int(time.time() * 1000)
    try:
        window = events_replay.Window(events_replay.parse_time(since, now_ms),
                                      None if until is None else events_replay.parse_time(until, now_ms))
        wanted = events_replay.check_types(types)
    except events_replay.ReplayError as error:
        _refuse(str(error))
    settings = command.settings()
    connection = command.connect(settings)
    subscribed = events_replay.subscribed_types(connection, url)
    if subscribed is None:
        _refuse(f"{url} is not subscribed (plugwatch subscriptions list)")
    try:
        wanted = events_replay.replay_types(wanted, subscribed)
    except events_replay.ReplayError as error:
        _refuse(str(error))
    if url_state.read_state(connection, url).disabled:
        _refuse(f"{url} is disabled; re-enable it first: plugwatch dead-letters enable {url}")
    done = events_replay.replay(connection, url, window, wanted,
                                queues=command.connect_queues(settings, connection),
                                partitions=settings.process.partitions)
    span = f"{_iso(window.since_ms)} to {'now' if window.until_ms is None else _iso(window.until_ms)}"
    kinds = f" of type {', '.join(sorted(wanted))}" if wanted else ""
    if done.oldest_held_ms is None or done.oldest_held_ms > window.since_ms:
        held = "nothing" if done.oldest_held_ms is None else f"nothing older than {_iso(done.oldest_held_ms)}"
        click.echo(f"note: {_streams(settings)} holds {held} (PLUGWATCH_EVENTS_STREAM_MAXLEN="
                   f"{settings.delivery.events_stream_maxlen})", err=True)
    if not done.queued:
        click.echo(f"no events{kinds} in {_streams(settings)} from {span}; nothing queued")
        return
    click.echo(f"queued {done.queued} events{kinds} from {span} for {url} "
               f"(stream entries {done.first_id} to {done.last_id})")


def _streams(settings: Settings) -> str:
    count = settings.process.partitions
    return keys.EVENTS_STREAM if count == 1 else f"the events streams of {count} partitions"


def _refuse(message: str) -> NoReturn:
    click.echo(f"plugwatch events replay: {message}", err=True)
    raise SystemExit(USAGE_EXIT)


def _iso(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

