"""`plugwatch quarantine list|show|replay|purge`: inspect and act on authentic input plugwatch set aside."""

from __future__ import annotations

import re
import sys
import time

import click
import redis

from plugwatch import command
from plugwatch import quarantine as store
from plugwatch.partitions import Layout, layout
from plugwatch.settings import Settings

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r}: use e.g. 30m, 12h or 7d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _entry_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A quarantine entry id is a Redis stream id, as `list` prints it (e.g. 1763740800000-0)."""
    if not _STREAM_ID.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not an entry id (as `plugwatch quarantine list` shows them)")
    return value


_STREAM_ID = re.compile(r"\d+(-\d+)?")

_PARTITION = click.option("--partition", type=click.IntRange(0), default=0, show_default=True,
                          help="Which partition's quarantine (with PLUGWATCH_PARTITIONS > 1; each has its own).")


def _connect(partition: int) -> tuple[Settings, redis.Redis, Layout]:
    """The command's settings, client and partition layout; a partition beyond PLUGWATCH_PARTITIONS is a usage
    error."""
    settings = command.settings()
    count = settings.process.partitions
    if partition >= count:
        raise click.BadParameter(f"{partition}: PLUGWATCH_PARTITIONS is {count} (partitions 0 to {count - 1})",
                                 param_hint="--partition")
    return settings, command.connect(settings), layout(partition, count)


@click.group("quarantine")
def quarantine() -> None:
    """Deliveries and events that were authentic but unusable (stream plugwatch:quarantine)."""


@quarantine.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="How many entries to show.")
@click.option("--after", default="-", callback=lambda ctx, param, value: value if value == "-" else _entry_id(
    ctx, param, value), help="Show entries after this entry id (paging).")
@_PARTITION
def list_entries(limit: int, after: str, partition: int) -> None:
    """List entries, oldest first: id, time, reason, delivery id, event index, body size[, replay of ID]."""
    settings, connection, into = _connect(partition)
    rows = store.entries(connection, after=after, limit=limit, into=into)
    for entry in rows:
        index = "-" if entry.event_index is None else str(entry.event_index)
        replayed = "" if entry.replay_of is None else f"\treplay of {entry.replay_of}"
        click.echo(f"{entry.id}\t{entry.at}\t{entry.reason}\t{entry.delivery_id}\t{index}\t{len(entry.body)}B"
                   f"{replayed}")
    where = f" of partition {partition}" if settings.process.partitions > 1 else ""
    click.echo(f"{len(rows)} shown, {store.count(connection, into)} in quarantine{where}", err=True)


@quarantine.command("show")
@click.argument("entry_id", callback=_entry_id)
@_PARTITION
def show(entry_id: str, partition: int) -> None:
    """Print one entry's fields, then its raw body."""
    _, connection, into = _connect(partition)
    entry = store.get(connection, entry_id, into)
    if entry is None:
        raise click.ClickException(f"no quarantine entry {entry_id}")
    click.echo(f"id: {entry.id}\ndelivery: {entry.delivery_id}\nreason: {entry.reason}\nat: {entry.at}")
    if entry.event_index is not None:
        kept = " (the body below is that event alone)" if entry.alone else ""
        click.echo(f"event_index: {entry.event_index}{kept}")
    if entry.replay_of is not None:
        click.echo(f"replay_of: {entry.replay_of}")
    click.echo("")
    sys.stdout.flush()
    sys.stdout.buffer.write(entry.body + b"\n")


@quarantine.command("replay")
@click.argument("entry_ids", nargs=-1, callback=lambda ctx, param, values: tuple(
    _entry_id(ctx, param, value) for value in values))
@click.option("--all", "replay_all", is_flag=True, help="Replay every entry.")
@click.option("--force", is_flag=True, help="Replay even entries in which nothing would be processed.")
@_PARTITION
def replay(entry_ids: tuple[str, ...], replay_all: bool, force: bool, partition: int) -> None:
    """Put entries back on the ingest stream and arm a drain job.

    An entry leaves the quarantine; what the worker quarantines again comes back as a new entry that
    names it (`replay of`). Without --force, an entry in which nothing would be processed stays.
    """
    settings, connection, into = _connect(partition)
    queues = command.connect_queues(settings, connection)
    ids = _selected(connection, entry_ids, replay_all, into)
    failed = 0
    for entry_id in ids:
        outcome = store.replay(connection, entry_id, queues=queues, now=time.time(), force=force, into=into)
        click.echo(f"{entry_id}\t{outcome.value}")
        failed += outcome is not store.ReplayOutcome.REPLAYED
    if failed:
        raise click.ClickException(f"{failed} of {len(ids)} entries not replayed")


@quarantine.command("purge")
@click.argument("entry_ids", nargs=-1, callback=lambda ctx, param, values: tuple(
    _entry_id(ctx, param, value) for value in values))
@click.option("--all", "purge_all", is_flag=True, help="Delete every entry.")
@click.option("--older-than", default=None, help="Delete entries older than this (e.g. 7d, 12h).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_PARTITION
def purge(entry_ids: tuple[str, ...], purge_all: bool, older_than: str | None, yes: bool, partition: int) -> None:
    """Delete entries for good: by id, all of them, or those older than a duration."""
    if sum((bool(entry_ids), purge_all, older_than is not None)) != 1:
        raise click.UsageError("give entry ids, --all or --older-than (exactly one)")
    if not yes:
        click.confirm("Delete these quarantine entries for good?", abort=True)
    _, connection, into = _connect(partition)
    if purge_all:
        removed = store.purge_all(connection, into)
    elif older_than is not None:
        removed = store.purge_before(connection, time.time() - _seconds(older_than), into)
    else:
        removed = store.purge(connection, entry_ids, into)
    click.echo(f"{removed} entries purged")


def _selected(connection: redis.Redis, entry_ids: tuple[str, ...], everything: bool, into: Layout) -> list[str]:
    if bool(entry_ids) == everything:
        raise click.UsageError("give entry ids or --all (exactly one)")
    if entry_ids:
        return list(entry_ids)
    ids: list[str] = []
    after = "-"
    while batch := store.entries(connection, after=after, limit=500, into=into):
        ids.extend(entry.id for entry in batch)
        after = batch[-1].id
    return ids
