"""What a plugwatch process does with configuration it cannot use, or a Redis it cannot reach: one line on
stderr, exit status 2 (bad settings) or 1 (a runtime failure).

    with exit_on_bad_settings("python -m worker"):
        settings = Settings.from_env(os.environ)
        ...                                        # anything else that reads settings
    with exit_on_redis_failure("python -m worker", settings.process.redis_url, settings.process.rq_redis_url):
        ...                                        # the process's work

`check_partitions(program, connection, count)` refuses (exit 2) a PLUGWATCH_PARTITIONS other than the
count recorded in Redis.

A `SettingsError` names the variable and says what is wrong; a traceback would only bury that line (and a
process manager restarting the process would print it again and again). A Redis error that reaches the top
is named with its URL (password hidden) and the variable that set it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import redis

from plugwatch import partitions
from plugwatch.settings import SettingsError, shown_redis_url

BAD_SETTINGS_EXIT = 2
RUNTIME_FAILURE_EXIT = 1


@contextlib.contextmanager
def exit_on_bad_settings(program: str) -> Iterator[None]:
    """Turn a `SettingsError` raised inside the block into `program: <message>` on stderr and exit 2."""
    try:
        yield
    except SettingsError as error:
        sys.stderr.write(f"{program}: {error}\n")
        sys.stderr.flush()
        raise SystemExit(BAD_SETTINGS_EXIT) from None


def check_partitions(program: str, connection: redis.Redis, count: int) -> None:
    """PLUGWATCH_PARTITIONS against the count recorded in Redis (`plugwatch.partitions.check_count`): another
    count is one line naming the variable and exit 2. Redis errors are the caller's."""
    try:
        partitions.check_count(connection, count)
    except partitions.PartitionCountMismatch as error:
        sys.stderr.write(f"{program}: {error}\n")
        sys.stderr.flush()
        raise SystemExit(BAD_SETTINGS_EXIT) from None


@contextlib.contextmanager
def exit_on_redis_failure(program: str, redis_url: str, rq_redis_url: str = "") -> Iterator[None]:
    """Turn a Redis error raised inside the block into one line naming REDIS_URL's Redis (and RQ_REDIS_URL's,
    when RQ has a Redis of its own: the error's own text says which one answered), and exit 1."""
    try:
        yield
    except redis.RedisError as error:
        problem = "cannot reach" if isinstance(error, redis.ConnectionError | redis.TimeoutError) else "error from"
        which = f"Redis at {shown_redis_url(redis_url)} (REDIS_URL)"
        if rq_redis_url and rq_redis_url != redis_url:
            which += f" or {shown_redis_url(rq_redis_url)} (RQ_REDIS_URL)"
        sys.stderr.write(f"{program}: {problem} {which}: {error}\n")
        sys.stderr.flush()
        raise SystemExit(RUNTIME_FAILURE_EXIT) from None

