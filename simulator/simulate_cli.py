"""`plugwatch simulate`: play seeded Enode webhook traffic at a receiver, or print it and its ground truth."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click
import orjson

from plugwatch import command
from plugwatch.enode_api.errors import EnodeError
from plugwatch.settings import Settings
from plugwatch.urls import webhook_url_problem
from simulator.deliveries import Plan, plan_deliveries
from simulator.enode_demo import is_demo_enode, tell_demo_enode
from simulator.payloads import Event
from simulator.sender import SendOptions, SendReport, send_all
from simulator.stories import build_scenario
from simulator.truth import expected_events


@click.command("simulate")
@click.option("--url", default=None, show_default="http://127.0.0.1:$PORT/webhooks/enode, PORT 8000 if unset",
              callback=lambda ctx, param, value: _url(value), help="The receiver's webhook URL.")
@click.option("--secret", envvar="ENODE_WEBHOOK_SECRET", help="Signing secret [env: ENODE_WEBHOOK_SECRET].")
@click.option("--users", default=10, show_default=True, help="How many Enode users to simulate.")
@click.option("--seed", default=1, show_default=True, help="Same seed, same traffic.")
@click.option("--batch", "batch", default="1-100", show_default=True, callback=lambda ctx, param, value: _batch(value),
              help="Events per delivery: N or MIN-MAX (1-100).")
@click.option("--shuffle/--in-order", default=False, help="Shuffle events across and within deliveries.")
@click.option("--dup-same-id", default=0.0, help="Share of deliveries resent with the same delivery id.")
@click.option("--dup-new-id", default=0.0, help="Share of deliveries resent under a new delivery id.")
@click.option("--heartbeat-every", default=20, show_default=True, help="A heartbeat after every N deliveries.")
@click.option("--concurrency", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Deliveries in flight (1 keeps order).")
@click.option("--rate", default=0.0, help="Events per second (0: as fast as the receiver answers).")
@click.option("--delay", default=0.0, help="Seconds between deliveries (per concurrent sender).")
@click.option("--give-up-after", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Stop (exit 1) once the receiver has not answered for this many seconds (0: never).")
@click.option("--truth", "truth_path", type=click.Path(path_type=Path),
              help="Write the expected emitted events (JSON lines) here.")
@click.option("--dry-run", is_flag=True, help="Print the Enode events (JSON lines) instead of sending.")
def simulate(url: str | None, secret: str | None, users: int, seed: int, batch: tuple[int, int], shuffle: bool,
             dup_same_id: float, dup_new_id: float, heartbeat_every: int, concurrency: int, rate: float,
             delay: float, give_up_after: float, truth_path: Path | None, dry_run: bool) -> None:
    """Send realistic, signed Enode (API 2024-10-01) traffic for USERS simulated users.

    Prints a progress line every 5 s, and "receiver not reachable at URL" within about a second when nothing
    answers (then every 5 s while it keeps resending); exits 1 if nothing answered for --give-up-after seconds.
    """
    scenario = build_scenario(users, seed)
    if truth_path is not None:
        lines = (orjson.dumps(dataclasses.asdict(e)) for e in expected_events(scenario.events))
        truth_path.write_bytes(b"\n".join(lines) + b"\n")
    if dry_run:
        for event in scenario.events:
            sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
        return
    if not secret:
        raise click.UsageError("--secret or ENODE_WEBHOOK_SECRET is required to sign deliveries")
    low, high = batch
    plan = Plan(min_batch=low, max_batch=high, shuffle=shuffle, duplicate_same_id=dup_same_id,
                duplicate_new_id=dup_new_id, heartbeat_every=heartbeat_every, test_event=True, seed=seed)
    deliveries = plan_deliveries(scenario.events, plan)
    options = SendOptions(concurrency=concurrency, rate=rate, delay=delay, unreachable_limit=give_up_after)
    settings = command.settings()
    url = url or f"http://127.0.0.1:{settings.receiver.port}/webhooks/enode"
    if is_demo_enode(settings):  # after `source <logs>/env`: `plugwatch up`'s Enode API lists these devices too
        _tell_demo_enode(settings, scenario.events)
    click.echo(f"simulate: {users} users, {len(scenario.events)} events, {len(deliveries)} deliveries -> {url}",
               err=True)
    report = asyncio.run(send_all(url, secret, deliveries, options, on_progress=lambda r: _progress(url, r)))
    click.echo(f"simulate: accepted {report.accepted} deliveries ({report.events} events), "
               f"resent {report.resends}, rejected {report.rejected or 0}, gave up {report.gave_up}", err=True)
    if report.stopped:
        click.echo(f"simulate: receiver not reachable at {url} for {give_up_after:g} s: stopped with "
                   f"{report.unsent} deliveries unsent (start the receiver, or pass --url)", err=True)
    if not report.ok:
        raise SystemExit(1)


def _tell_demo_enode(settings: Settings, events: Sequence[Event]) -> None:
    try:
        tell_demo_enode(settings, events)
    except EnodeError as error:
        click.echo(f"simulate: the demo's Enode API at {settings.enode.api_url} (ENODE_API_URL) did not take the "
                   f"scenario: {error}; sending its webhooks only", err=True)
    else:
        click.echo(f"simulate: the demo's Enode API at {settings.enode.api_url} now lists this scenario's devices",
                   err=True)


def _progress(url: str, report: SendReport) -> None:
    if report.unreachable_since is not None:
        waited = time.monotonic() - report.unreachable_since
        click.echo(f"simulate: receiver not reachable at {url} (nothing answered for {waited:.0f} s; "
                   "resending)", err=True)
    else:
        click.echo(f"simulate: {report.sent}/{report.total} deliveries sent, {report.accepted} accepted, "
                   f"{report.retrying} retrying", err=True)


def _url(value: str | None) -> str | None:
    """A URL httpx can POST to (an unusable one would end in a traceback on the first send)."""
    if value is not None and (problem := webhook_url_problem(value)):
        raise click.BadParameter(f"{value!r}: {problem}", param_hint="--url")
    return value


def _batch(value: str) -> tuple[int, int]:
    """`N` or `MIN-MAX` events per delivery, within Enode's 1-100."""
    low, _, high = value.partition("-")
    if not (low.isdecimal() and (high or low).isdecimal()) or not 1 <= int(low) <= int(high or low) <= 100:
        raise click.BadParameter(f"{value!r}: give N or MIN-MAX with 1 <= MIN <= MAX <= 100", param_hint="--batch")
    return int(low), int(high or low)
