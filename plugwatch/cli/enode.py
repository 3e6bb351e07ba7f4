"""`plugwatch enode ...`: the Enode API tasks an operator runs by hand.

Needs ENODE_CLIENT_ID and ENODE_CLIENT_SECRET (and ENODE_API_URL / ENODE_TOKEN_URL for production); without
them every command prints one line saying so and exits with status 2.  Enode API errors exit with status 1.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import orjson
import redis

from plugwatch import keys
from plugwatch.enode import prune
from plugwatch.enode.client import EnodeClient
from plugwatch.enode.errors import EnodeError, EnodeNotConfigured
from plugwatch.enode.locations import HomeLocation, ensure_home_location
from plugwatch.enode.observe import apply_observations
from plugwatch.enode.reconcile import reconcile, record
from plugwatch.enode.webhooks import (
    DEFAULT_EVENTS,
    create_webhook,
    generate_secret,
    get_webhook,
    iter_webhooks,
    rotate_secret,
    test_webhook,
)
from plugwatch.settings import MIN_SECRET_LENGTH, Settings, SettingsError
from worker.store import Store

NOT_CONFIGURED_EXIT = 2


def load_settings() -> Settings:
    try:
        return Settings.from_env(os.environ, require_enode_secret=False)
    except SettingsError as exc:
        _fail(str(exc), NOT_CONFIGURED_EXIT)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"plugwatch enode: {message}", err=True)
    raise click.exceptions.Exit(code)


@contextlib.contextmanager
def enode_api(settings: Settings | None = None) -> Iterator[EnodeClient]:
    """An Enode client for one command; not configured -> exit 2, an API error -> exit 1 (one line each)."""
    try:
        with EnodeClient.from_settings(settings or load_settings()) as client:
            yield client
    except EnodeNotConfigured as exc:
        _fail(str(exc), NOT_CONFIGURED_EXIT)
    except EnodeError as exc:
        _fail(str(exc), 1)


def _echo_json(value: object) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@click.group("enode")
def enode() -> None:
    """Enode API: home location set-up, webhook management, reconcile (needs ENODE_CLIENT_ID/SECRET)."""


def _timezone(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"{value!r} is not an IANA time zone name (e.g. Europe/Oslo)") from None
    return value


@enode.command("location-setup")
@click.option("--user", "user_id", required=True, help="Enode user id (your own id for the end user).")
@click.option("--charger", "charger_id", required=True, help="The user's charger id.")
@click.option("--name", default="Home", show_default=True, help="Location name.")
@click.option("--lat", type=click.FloatRange(-90, 90), required=True, help="Latitude in degrees.")
@click.option("--lon", type=click.FloatRange(-180, 180), required=True, help="Longitude in degrees.")
@click.option("--timezone", "timezone_name", default="UTC", show_default=True, callback=_timezone,
              help="IANA time zone, e.g. Europe/Oslo.")
def location_setup(user_id: str, charger_id: str, name: str, lat: float, lon: float,
                   timezone_name: str) -> None:
    """Create (or reuse) the user's home Location and assign it to the charger (pairing guide step 2).

    Idempotent: a Location of the user with the same name within 25 m is reused, and the charger is only
    updated when it does not already have that Location.
    """
    with enode_api() as client:
        done = ensure_home_location(client, user_id, charger_id, HomeLocation(name, lat, lon, timezone_name))
    click.echo(f"location {done.location_id}: {'created' if done.location_created else 'reused'}")
    if done.charger_assigned:
        was = f" (was {done.previous_location_id})" if done.previous_location_id else ""
        click.echo(f"charger {charger_id}: assigned to location {done.location_id}{was}")
    else:
        click.echo(f"charger {charger_id}: already assigned to location {done.location_id}")


@enode.group("webhook")
def webhook() -> None:
    """Create, show, test and rotate the secret of the Enode webhook that feeds the receiver."""


@webhook.command("create")
@click.option("--url", required=True, help="The receiver's public URL, e.g. https://host/webhooks/enode.")
@click.option("--event", "events", multiple=True, metavar="EVENT",
              help=f"Event to subscribe to (repeatable). Default: {', '.join(DEFAULT_EVENTS)}.")
def webhook_create(url: str, events: tuple[str, ...]) -> None:
    """Create the webhook with a newly generated secret, printed once (Enode never returns it)."""
    with enode_api() as client:
        created = create_webhook(client, url, events or DEFAULT_EVENTS)
    hook = created.webhook
    click.echo(f"created Enode webhook {hook['id']} -> {hook.get('url', url)}")
    click.echo(f"events: {', '.join(hook.get('events') or events or DEFAULT_EVENTS)}")
    click.echo("webhook secret (shown only now; Enode never returns it):")
    click.echo(f"  {created.secret}")
    click.echo("set it on the receiver: ENODE_WEBHOOK_SECRET=<secret> "
               "(during a rotation keep the old one too: ENODE_WEBHOOK_SECRET=<new>,<old>)")


@webhook.command("show")
@click.argument("webhook_id", required=False)
def webhook_show(webhook_id: str | None) -> None:
    """Show one webhook (by id) or all of the client's webhooks, as JSON."""
    with enode_api() as client:
        _echo_json(get_webhook(client, webhook_id) if webhook_id else list(iter_webhooks(client)))


@webhook.command("test")
@click.argument("webhook_id")
def webhook_test(webhook_id: str) -> None:
    """Ask Enode to send its test event now (also reactivates a disabled webhook on success)."""
    with enode_api() as client:
        result = test_webhook(client, webhook_id)
    click.echo(f"{result.get('status')}: {result.get('description', '')}")
    if result.get("status") != "SUCCESS":
        sys.exit(1)


@webhook.command("rotate-secret")
@click.argument("webhook_id")
@click.option("--secret", default=None, help="The new secret, already accepted by the receiver (step 2).")
def webhook_rotate_secret(webhook_id: str, secret: str | None) -> None:
    """Rotate the webhook's secret without losing deliveries, in two steps.

    \b
    1. without --secret: prints a new secret; deploy the receiver with ENODE_WEBHOOK_SECRET=<new>,<old>
    2. with --secret <new>: Enode signs with it from now on; then `webhook test`, then drop <old>
    """
    if secret is None:
        new = generate_secret()
        click.echo(f"new webhook secret (not yet sent to Enode):\n  {new}")
        click.echo("1. deploy the receiver with ENODE_WEBHOOK_SECRET=<new>,<old> (it accepts both)")
        click.echo(f"2. plugwatch enode webhook rotate-secret {webhook_id} --secret <new>")
        click.echo(f"3. plugwatch enode webhook test {webhook_id}, then set ENODE_WEBHOOK_SECRET=<new>")
        return
    if len(secret) < MIN_SECRET_LENGTH:
        raise click.BadParameter(f"must be at least {MIN_SECRET_LENGTH} characters", param_hint="--secret")
    with enode_api() as client:
        rotate_secret(client, webhook_id, secret)
    click.echo(f"webhook {webhook_id}: Enode now signs deliveries with the new secret")
    click.echo(f"next: plugwatch enode webhook test {webhook_id}; then remove the old secret from "
               "ENODE_WEBHOOK_SECRET")

def _refuse_missing_urls(connection: redis.Redis, settings: Settings, force: bool) -> None:
    """Events go to the outboxes of this shell's DOWNSTREAM_WEBHOOK_URLS only: a URL the workers deliver to
    but this shell lacks would never get the reconciled events (a re-run emits nothing), so refuse."""
    known = {url.decode() if isinstance(url, bytes) else url for url in connection.hvals(keys.DOWNSTREAM_URLS)}
    missing = sorted(known - set(settings.downstream_urls))
    if missing and not force:
        _fail(f"the workers deliver to {', '.join(missing)}, which this shell's DOWNSTREAM_WEBHOOK_URLS lacks: "
              "run reconcile with the worker's environment (or --force to skip those URLs for good)", 2)


@enode.command("reconcile")
@click.option("--user", "user_id", default=None, help="Only this Enode user (default: every user of the client).")
@click.option("--page-size", type=click.IntRange(1, 500), default=None, help="Objects per API page.")
@click.option("--prune-deleted", is_flag=True,
              help="Also treat tracked devices Enode no longer lists as deleted (emits their unplugs).")
@click.option("--force", is_flag=True, help="Prune even if more than half would be deleted; reconcile even if this "
              "shell lacks a downstream URL the workers deliver to (those URLs never get the events).")
def reconcile_command(user_id: str | None, page_size: int | None, prune_deleted: bool, force: bool) -> None:
    """Fetch every charger and vehicle and apply them like webhooks: emits exactly the missed transitions.

    Run it after webhooks were down or disabled (the worker suggests it: log `enode.reconcile_suggested`,
    gauge `plugwatch_reconcile_suggested`).  Safe to re-run: what plugwatch already knows emits nothing.
    """
    settings = load_settings()
    with enode_api(settings) as client:
        connection = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
        try:
            _refuse_missing_urls(connection, settings, force)
            store = Store.from_settings(connection, settings)
            apply = functools.partial(apply_observations, store, connection, settings)
            started = datetime.now(UTC)
            report = reconcile(client, apply, started, user_id=user_id, page_size=page_size, config=store.config)
            if prune_deleted:
                limit = 1.0 if force else prune.DEFAULT_MAX_FRACTION
                report.emitted.update(prune.prune_deleted(connection, store, apply, report, started,
                                                          user_id=user_id, max_fraction=limit))
            record(connection, report, user_id)
        except redis.RedisError as error:
            _fail(f"Redis at REDIS_URL failed: {error} (safe to re-run)", 1)
        except prune.PruneRefused as error:
            _fail(f"not pruning: {error} (the reconcile itself was applied)", 1)
        finally:
            connection.close()
    click.echo(report.summary())
