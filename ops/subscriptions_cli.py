"""`plugwatch subscriptions add|list|remove|rotate-secret`: who receives which events, signed with what.

Changes are stored in Redis (`plugwatch.subscriptions`) and take effect on running workers at once for
routing (the ingest commit reads the routes) and within about a second for signing keys; no restart.
"""

from __future__ import annotations

import time
from typing import Any

import click
import orjson
import redis

from plugwatch import command, delivery_arming, outboxes, partitions, subscriptions, url_state
from plugwatch import dead_letters as deadletters
from plugwatch.settings import SettingsError, whsec_key
from plugwatch.subscriptions import Subscription, SubscriptionError
from plugwatch.urls import webhook_url_problem


@click.group("subscriptions")
def subscriptions_group() -> None:
    """Downstream subscriptions: URLs, event-type filters, signing secrets (stored in Redis)."""


def _key(secret: str | None) -> bytes | None:
    if secret is None:
        return None
    try:
        return whsec_key("--secret", secret)
    except SettingsError as error:
        raise click.BadParameter(str(error)) from None


def _checked_url(url: str) -> str:
    problem = webhook_url_problem(url)
    if problem:
        raise click.BadParameter(f"{url}: {problem}", param_hint="URL")
    return url


def _fail(error: SubscriptionError) -> None:
    raise click.ClickException(str(error))


@subscriptions_group.command("add")
@click.argument("url")
@click.option("--types", default=None,
              help=f"Comma-separated event types (default: all): {', '.join(subscriptions.EVENT_TYPES)}.")
@click.option("--secret", default=None, help="whsec_<base64> signing secret (default: a new one, printed once).")
def add(url: str, types: str | None, secret: str | None) -> None:
    """Subscribe URL, or update it (types; --secret replaces its secret at once: see rotate-secret)."""
    _checked_url(url)
    try:
        chosen = subscriptions.parse_types(types)
    except SubscriptionError as error:
        raise click.BadParameter(str(error), param_hint="--types") from None
    connection = command.connect(command.settings())
    existing = subscriptions.load(connection, url)
    generated = subscriptions.generate_secret() if secret is None and existing is None else None
    try:
        saved = subscriptions.add(connection, url, types=chosen, key=_key(secret or generated), now=time.time())
    except SubscriptionError as error:
        _fail(error)
        return
    verb = "added" if existing is None else "updated"
    click.echo(f"{url}\t{verb}\ttypes={_types(saved)}")
    if generated:
        click.echo("signing secret (shown once):")
        click.echo(generated)


@subscriptions_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_subscriptions(as_json: bool) -> None:
    """URL, types, state (active / paused / disabled / removed), backlog, oldest waiting age, dead letters."""
    settings = command.settings()
    connection = command.connect(settings)
    records = subscriptions.load_all(connection)
    letters = deadletters.list_all(command.connect_queues(settings, connection))
    now = time.time()
    for url in subscriptions.known_urls(connection):
        row = _row(connection, url, records.get(url), sum(1 for letter in letters if letter.url == url), now)
        if as_json:
            click.echo(orjson.dumps(row).decode())
        else:
            click.echo(f"{url}\ttypes={row['types_text']}\t{row['state']}\tbacklog={row['backlog']}\t"
                       f"oldest={row['oldest_waiting_seconds']:.0f}s\tdead_letters={row['dead_letters']}")


def _row(connection: redis.Redis, url: str, record: Subscription | None, dead: int, now: float) -> dict[str, object]:
    state = url_state.read_state(connection, url)
    if record is None or not record.active:
        label = "removed"  # draining what waits, then forgotten
    elif state.disabled:
        label = "disabled"
    elif state.failing(now):
        label = "paused"
    else:
        label = "active"
    count = partitions.recorded(connection)
    heads: list[Any] = [connection.xrange(box.stream, count=1) for box in outboxes.of_urls([url], count)]
    oldest = max((now - int(head[0][0].split(b"-")[0]) / 1000 for head in heads if head), default=0.0)
    return {"url": url, "types": list(record.types) if record else [],
            "types_text": _types(record) if record else "all", "state": label,
            "backlog": delivery_arming.backlog(connection, url, count),
            "oldest_waiting_seconds": round(max(0.0, oldest), 3),
            "dead_letters": dead, "signing_keys": len(record.keys_at(now)) if record else 0}


def _types(record: Subscription) -> str:
    return ",".join(record.types) if record.types else "all"


@subscriptions_group.command("remove")
@click.argument("url")
@click.option("--purge", is_flag=True, help="Also drop the events still waiting for it, and its dead letters.")
def remove(url: str, purge: bool) -> None:
    """No new events go to URL; what waits is still delivered (unless --purge), then URL is forgotten."""
    settings = command.settings()
    connection = command.connect(settings)
    try:
        subscriptions.remove(connection, url, now=time.time())
        dropped = subscriptions.purge(connection, url) if purge else 0
    except SubscriptionError as error:
        _fail(error)
        return
    dead = deadletters.purge(command.connect_queues(settings, connection), url) if purge else 0
    forgotten = subscriptions.forget_if_drained(connection, url)
    if purge:
        click.echo(f"{url}\tremoved\tpurged {dropped} waiting events and {dead} dead letters")
    else:
        waiting = delivery_arming.backlog(connection, url, settings.process.partitions)
        click.echo(f"{url}\tremoved\t{waiting} waiting events are still delivered" if waiting else f"{url}\tremoved")
    if forgotten:
        click.echo(f"{url}\tforgotten (nothing waits)")


@subscriptions_group.command("rotate-secret")
@click.argument("url")
@click.option("--secret", default=None, help="The new whsec_<base64> secret (default: a new one, printed once).")
@click.option("--expire-old", is_flag=True, help="Stop signing with the older secrets now.")
def rotate_secret(url: str, secret: str | None, expire_old: bool) -> None:
    """Sign with a new secret and, for PLUGWATCH_SECRET_OVERLAP_SECONDS, with the old one too."""
    settings = command.settings()
    connection = command.connect(settings)
    try:
        if expire_old and secret is None:
            subscriptions.expire_old(connection, url)
            click.echo(f"{url}\told secrets expired: signed with the newest only")
            return
        generated = subscriptions.generate_secret() if secret is None else None
        overlap = settings.delivery.secret_overlap_seconds
        subscriptions.rotate(connection, url, _key(secret or generated) or b"", now=time.time(), overlap=overlap)
        if expire_old:
            subscriptions.expire_old(connection, url)
    except SubscriptionError as error:
        _fail(error)
        return
    until = "now" if expire_old else f"for {overlap:g} s (or until --expire-old)"
    click.echo(f"{url}\trotated: signed with the new and the old secret {until}")
    if generated:
        click.echo("new signing secret (shown once):")
        click.echo(generated)
