"""`plugwatch dead-letters list|replay|purge|urls|enable`: events a downstream URL would not take, and the
URLs' delivery state.

Dead letters are failed RQ jobs on queue `plugwatch-dead-letters` (rq-dashboard shows them too, and its
Requeue button does what `replay` does).  A replay puts the event's exact JSON (same id, same bytes) back
at the end of the URL's outbox; the worker then delivers it with the usual retries.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime

import click
import orjson

from plugwatch import command, delivery_arming, outboxes, subscriptions, url_state
from plugwatch import dead_letters as deadletters


@click.group("dead-letters")
def dead_letters() -> None:
    """Events downstream URLs would not take (RQ failed jobs on plugwatch-dead-letters), and URL state."""


@dead_letters.command("list")
@click.option("--url", default=None, help="Only this downstream URL's dead letters.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with the event body.")
def list_letters(url: str | None, as_json: bool) -> None:
    """List dead letters, oldest first: job id, time, URL, event type and id, reason."""
    settings = command.settings()
    letters = deadletters.list_all(command.connect_queues(settings, command.connect(settings)), url)
    for letter in letters:
        if as_json:
            click.echo(orjson.dumps({**asdict(letter), "event": _json_or_text(letter.event_json)}).decode())
        else:
            reason = letter.reason.splitlines()[-1] if letter.reason else ""
            click.echo(f"{letter.job_id}\t{letter.dead_lettered_at}\t{letter.url}\t{letter.event_type}\t"
                       f"{letter.event_id}\t{reason[:160]}")
    click.echo(f"{len(letters)} dead letters", err=True)


@dead_letters.command("replay")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--url", default=None, help="Replay every dead letter of this URL.")
def replay(job_ids: tuple[str, ...], replay_all: bool, url: str | None) -> None:
    """Send dead letters again (same event id and body); each is removed once back in its URL's outbox."""
    if sum([bool(job_ids), replay_all, url is not None]) != 1:
        raise click.UsageError("give job ids, --all, or --url URL")
    settings = command.settings()
    connection = command.connect(settings)
    queues = command.connect_queues(settings, connection)
    ids = list(job_ids) or [letter.job_id for letter in deadletters.list_all(queues, url)]
    if url is not None and not ids:
        click.echo(f"no dead letters for {url}", err=True)
    refused = 0
    for job_id in ids:
        try:
            letter = deadletters.replay(connection, queues, settings, job_id)
        except KeyError:
            click.echo(f"{job_id}\tnot found", err=True)
            refused += 1
        except deadletters.ReplayRefused as error:
            click.echo(f"{job_id}\trefused: {error}", err=True)
            refused += 1
        else:
            click.echo(f"{job_id}\treplayed\t{letter.event_id}\t{letter.url}")
    if refused:
        raise click.ClickException(f"{refused} of {len(ids)} dead letters not replayed")


@dead_letters.command("purge")
@click.option("--url", default=None, help="Only this URL's dead letters.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(url: str | None, yes: bool) -> None:
    """Delete dead letters for good."""
    settings = command.settings()
    queues = command.connect_queues(settings, command.connect(settings))
    if not yes:
        click.confirm(f"Delete {len(deadletters.list_all(queues, url))} dead letters?", abort=True)
    click.echo(f"{deadletters.purge(queues, url)} dead letters deleted")


@dead_letters.command("urls")
def urls() -> None:
    """Downstream URLs with their state (ok, slow, paused, disabled), backlog and dead letters."""
    settings = command.settings()
    connection = command.connect(settings)
    active = set(subscriptions.active_urls(connection))
    letters = deadletters.list_all(command.connect_queues(settings, connection))
    now = time.time()
    for current in url_state.read_states(connection, subscriptions.known_urls(connection)):
        configured = "" if current.url in active else "\t(removed, draining)"
        dead = sum(1 for letter in letters if letter.url == current.url)
        waiting = delivery_arming.backlog(connection, current.url, settings.process.partitions)
        click.echo(f"{current.url}\t{_health(current, now)}\tbacklog={waiting}\tdead_letters={dead}{configured}")


@dead_letters.command("enable")
@click.argument("url")
@click.option("--replay", "replay_too", is_flag=True, help="Also replay the URL's dead letters.")
def enable(url: str, replay_too: bool) -> None:
    """Re-enable a URL disabled by a 410 Gone (and close its breaker)."""
    settings = command.settings()
    connection = command.connect(settings)
    queues = command.connect_queues(settings, connection)
    if url not in subscriptions.active_urls(connection):
        raise click.ClickException(f"{url} is not subscribed (plugwatch subscriptions list)")
    was_disabled = url_state.enable(connection, url)
    delivery_arming.kick(connection, queues, outboxes.of_urls([url], settings.process.partitions))
    click.echo(f"{url}\t{'enabled' if was_disabled else 'was not disabled; breaker closed'}")
    if replay_too:
        for letter in deadletters.list_all(queues, url):
            deadletters.replay(connection, queues, settings, letter.job_id)
            click.echo(f"{letter.job_id}\treplayed\t{letter.event_id}")


def _json_or_text(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _health(current: url_state.UrlState, now: float) -> str:
    if current.disabled:
        return f"disabled since {_iso(current.disabled_at)}: {current.disabled_reason}"
    slow = f" (slow: read timeout raised to {current.read_timeout:g} s)" if current.slow else ""
    if current.paused(now):
        return (f"paused until {_iso(current.paused_until)} after {current.attempts} attempts: "
                f"{current.last_error}{slow}")
    if current.slow:
        return f"slow: read timeout raised to {current.read_timeout:g} s, last slow answer {_iso(current.slow_at)}"
    return "ok"


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
