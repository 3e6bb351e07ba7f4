"""`plugwatch enode reconcile`: the worker's core and store, fed by the Enode API instead of webhooks.

Part of the worker wing (it commits state and events exactly as a worker does); the `plugwatch` command's
composition root (`cli`) mounts it in the operator's `enode` group. Needs the Enode API credentials; the
events go to the subscriptions stored in Redis, as a worker's do (see README, *Runbook*).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import click
import redis

from plugwatch import delivery_arming, outboxes, redis_clients, subscriptions
from plugwatch.enode_api.session import enode_api, fail, load_settings
from plugwatch.partitions import layout
from plugwatch.startup import check_partitions
from worker.enode import prune
from worker.enode.observe import apply_observations
from worker.enode.reconcile import reconcile, record
from worker.ingest.store import Store


def _epochs(store: Store) -> list[str]:
    """The epoch id each partition's commits run under now (read, or created, on first use)."""
    return [store.epoch(partition).id for partition in range(store.partitions)]


def _kick_subscribed(connection: redis.Redis, queues: redis.Redis, partitions: int) -> None:
    delivery_arming.kick(connection, queues, outboxes.of_urls(subscriptions.active_urls(connection), partitions))


@click.command("reconcile")
@click.option("--user", "user_id", default=None, help="Only this Enode user (default: every user of the client).")
@click.option("--page-size", type=click.IntRange(1, 500), default=None, help="Objects per API page.")
@click.option("--prune-deleted", is_flag=True,
              help="Also treat tracked devices Enode no longer lists as deleted (emits their unplugs).")
@click.option("--force", is_flag=True, help="Prune even if more than half would be deleted.")
def reconcile_command(user_id: str | None, page_size: int | None, prune_deleted: bool, force: bool) -> None:
    """Fetch every charger and vehicle and apply them like webhooks: emits exactly the missed transitions.

    Run it after webhooks were down or disabled (the worker suggests it: log `enode.reconcile_suggested`,
    gauge `plugwatch_reconcile_suggested`).  Safe to re-run: what plugwatch already knows emits nothing.
    """
    settings = load_settings()
    with enode_api(settings) as client:
        connection = redis_clients.command(settings, timeout=10)
        queues = redis_clients.queues(settings, connection, socket_timeout=10)
        try:
            connection.ping()  # Redis first: a Redis that does not answer is one line, before any Enode call
            store = Store.from_settings(connection, settings)
            deliver = functools.partial(_kick_subscribed, connection, queues, settings.process.partitions)
            apply = functools.partial(apply_observations, store, deliver)
            check_partitions("plugwatch enode reconcile", connection, settings.process.partitions)
            started, before = datetime.now(UTC), _epochs(store)
            report = reconcile(client, apply, started, user_id=user_id, page_size=page_size, config=store.config)
            if prune_deleted:
                limit = 1.0 if force else prune.DEFAULT_MAX_FRACTION
                report.emitted.update(prune.prune_deleted(connection, store, apply, report, started,
                                                          user_id=user_id, max_fraction=limit))
            after = _epochs(store)  # a partition whose state was lost meanwhile is not reconciled by this run
            record(connection, report, user_id, epochs=[(layout(partition, store.partitions), epoch_id)
                                                        for partition, epoch_id in enumerate(before)
                                                        if after[partition] == epoch_id])
        except redis.RedisError as error:
            fail(f"Redis at REDIS_URL failed: {error} (safe to re-run)", 1)
        except prune.PruneRefused as error:
            fail(f"not pruning: {error} (the reconcile itself was applied)", 1)
        finally:
            redis_clients.close_both(connection, queues)
    click.echo(report.summary())
