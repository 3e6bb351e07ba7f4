"""What every `plugwatch` command shares, whichever wing it comes from: its environment and its settings.

The command's composition root (`cli`) starts each invocation with the environment it was run in, as the
click context's object; commands never read the environment themselves:

    environment() -> Mapping[str, str]     what this invocation was started with (`plugwatch up` hands it on)
    settings() -> Settings                 `Settings.from_env` of it (commands never need the Enode secret)
    connect(settings) -> redis.Redis       a client for a command: the Redis budget, at least 5 s
    connect_queues(settings, connection)   its client for RQ (RQ_REDIS_URL): `connection` unless another Redis
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import click
import redis

from plugwatch import redis_clients
from plugwatch.settings import Settings
from plugwatch.startup import check_partitions

MIN_TIMEOUT_SECONDS = redis_clients.MIN_COMMAND_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Invocation:
    """The click context object of one `plugwatch` invocation (set by `cli.main`)."""

    environ: Mapping[str, str]


def environment() -> Mapping[str, str]:
    invocation = click.get_current_context().find_object(Invocation)
    if invocation is None:
        raise RuntimeError("run plugwatch commands through the `plugwatch` group (cli.main)")
    return invocation.environ


def settings() -> Settings:
    """This invocation's settings; raises `SettingsError` naming a bad variable."""
    return Settings.from_env(environment(), require_enode_secret=False)


def connect(settings: Settings) -> redis.Redis:
    """The command's client; a PLUGWATCH_PARTITIONS other than the count recorded in Redis is one line and exit 2
    (a Redis that does not answer is the command's own error, later)."""
    connection = redis_clients.command(settings)
    with contextlib.suppress(redis.RedisError):
        check_partitions("plugwatch", connection, settings.process.partitions)
    return connection


def connect_queues(settings: Settings, connection: redis.Redis) -> redis.Redis:
    return redis_clients.command_queues(settings, connection)
