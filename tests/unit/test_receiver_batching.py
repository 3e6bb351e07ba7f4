"""ScriptBatcher: concurrent script calls share pipelines, each still gets its own reply or error."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from receiver.batching import ScriptBatcher
from tests.support.servers import free_port

ECHO = "redis.call('INCR', KEYS[1]); return ARGV[1]"


@contextlib.asynccontextmanager
async def one_reply_then_hold(release: asyncio.Event) -> AsyncIterator[int]:
    """The port of a "Redis" that answers the first command of a pipeline at once and the others (+later)
    only once `release` is set."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        scripts = 0
        while scripts < 2:  # both EVALSHAs of the pipeline; what redis-py sends on connecting gets +OK
            data = await reader.read(65536)
            if not data:
                return
            if b"EVALSHA" in data:
                scripts += data.count(b"EVALSHA")
            else:
                writer.write(b"+OK\r\n")
        writer.write(b"+first\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"+later\r\n")
        await writer.drain()
        while await reader.read(65536):  # (the SET and WAIT of the replicas' case go unanswered)
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        release.set()
        server.close()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """The port of a server that accepts connections and never answers (a Redis that hangs)."""
    stop = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stop.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        stop.set()
        server.close()
        await server.wait_closed()


class CountingBatcher(ScriptBatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sizes: list[int] = []

    async def _pipeline(self, batch: list[Any], answer_early: bool) -> list[Any]:
        self.sizes.append(len(batch))
        return await super()._pipeline(batch, answer_early)


def test_concurrent_calls_share_round_trips_and_get_their_own_replies(redis_url: str) -> None:
    async def main() -> tuple[list[Any], list[int]]:
        client = redis.asyncio.Redis.from_url(redis_url)
        batcher = CountingBatcher(client, ECHO, timeout=2)
        replies = await asyncio.gather(*(batcher(["n"], [str(i)]) for i in range(50)))
        await client.aclose()
        return replies, batcher.sizes

    replies, sizes = asyncio.run(main())
    assert replies == [str(i).encode() for i in range(50)]
    assert sum(sizes) >= 50  # the first pipeline meets NOSCRIPT and is re-sent once
    assert len(sizes) < 10, sizes
    assert redis.Redis.from_url(redis_url).get("n") == b"50"


@pytest.mark.parametrize("replicas", [0, 1])
def test_a_reply_answers_its_caller_before_the_rest_of_its_batch_unless_replicas_must_confirm(
        replicas: int) -> None:
    """Without replicas to wait for, a caller whose reply has been read is answered while the batch's later
    replies are still due (the next request on its connection need not wait for them); with
    PLUGWATCH_ACK_REPLICAS every caller waits for the batch and its WAIT."""

    async def main() -> tuple[bool, bool]:
        release = asyncio.Event()
        async with one_reply_then_hold(release) as port:
            client = redis.asyncio.Redis(port=port)
            batcher = ScriptBatcher(client, ECHO, timeout=5, replicas=replicas, ack_mark="m")
            first = asyncio.create_task(batcher(["n"], ["1"]))
            later = asyncio.create_task(batcher(["n"], ["2"]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(first), timeout=1)
            answered = (first.done(), later.done())
            release.set()
            await asyncio.gather(first, later, return_exceptions=True)
            await client.aclose(close_connection_pool=True)
        return answered

    first_done, later_done = asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert not later_done
    assert first_done is (replicas == 0)


def test_a_lone_call_is_sent_alone(redis_url: str) -> None:
    """No timer collects a batch: an idle receiver sends each call as soon as it comes."""

    async def main() -> tuple[Any, list[int]]:
        client = redis.asyncio.Redis.from_url(redis_url)
        batcher = CountingBatcher(client, ECHO, timeout=2)
        await batcher(["n"], ["warm"])
        batcher.sizes.clear()
        reply = await batcher(["n"], ["x"])
        await client.aclose()
        return reply, batcher.sizes

    assert asyncio.run(main()) == (b"x", [1])


def test_a_flushed_script_cache_is_reloaded_and_nothing_runs_twice(redis_url: str) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        batcher = ScriptBatcher(client, ECHO, timeout=2)
        await batcher(["n"], ["1"])
        await client.script_flush()
        await asyncio.gather(*(batcher(["n"], ["2"]) for _ in range(5)))
        await client.aclose()

    asyncio.run(main())
    assert redis.Redis.from_url(redis_url).get("n") == b"6"


def test_a_script_error_reaches_only_its_caller(redis_url: str) -> None:
    script = "if ARGV[1] == 'bad' then return redis.error_reply('nope') end return ARGV[1]"

    async def main() -> list[Any]:
        client = redis.asyncio.Redis.from_url(redis_url)
        batcher = ScriptBatcher(client, script, timeout=2)
        results = await asyncio.gather(batcher([], ["a"]), batcher([], ["bad"]), batcher([], ["c"]),
                                       return_exceptions=True)
        await client.aclose()
        return list(results)

    first, bad, third = asyncio.run(main())
    assert (first, third) == (b"a", b"c")
    assert isinstance(bad, redis.ResponseError)


def test_an_unreachable_redis_fails_every_caller_quickly() -> None:
    async def main() -> list[Any]:
        client = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
        batcher = ScriptBatcher(client, ECHO, timeout=0.5)
        results = await asyncio.gather(*(batcher(["n"], ["x"]) for _ in range(5)), return_exceptions=True)
        await client.aclose()
        return results

    started = time.monotonic()
    results = asyncio.run(main())
    assert time.monotonic() - started < 2
    assert all(isinstance(result, redis.ConnectionError | TimeoutError) for result in results), results


def test_a_redis_that_never_answers_times_out_instead_of_hanging() -> None:
    async def main() -> list[Any]:
        async with silent_server() as port:
            client = redis.asyncio.Redis(port=port, socket_timeout=5, socket_connect_timeout=5)
            batcher = ScriptBatcher(client, ECHO, timeout=0.3)
            results = await asyncio.gather(*(batcher(["n"], ["x"]) for _ in range(3)), return_exceptions=True)
            await client.aclose()
        return results

    started = time.monotonic()
    results = asyncio.run(main())
    assert time.monotonic() - started < 2
    assert all(isinstance(result, TimeoutError | redis.TimeoutError) for result in results), results


@pytest.mark.parametrize("cancelled", [0, 2])
def test_a_caller_that_gives_up_does_not_disturb_the_others(redis_url: str, cancelled: int) -> None:
    async def main() -> list[Any]:
        client = redis.asyncio.Redis.from_url(redis_url)
        batcher = ScriptBatcher(client, ECHO, timeout=2)
        tasks = [asyncio.create_task(batcher(["n"], [str(i)])) for i in range(5)]
        await asyncio.sleep(0)
        tasks[cancelled].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        return results

    results = asyncio.run(main())
    assert isinstance(results[cancelled], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != cancelled] == [
        str(i).encode() for i in range(5) if i != cancelled]


def test_a_batch_is_capped_by_the_bytes_it_carries(redis_url: str) -> None:
    async def main() -> list[int]:
        client = redis.asyncio.Redis.from_url(redis_url)
        batcher = CountingBatcher(client, ECHO, timeout=2, max_batch_bytes=2500)
        await batcher(["n"], [b"warm"])
        batcher.sizes.clear()
        await asyncio.gather(*(batcher(["n"], [b"x" * 1000]) for _ in range(6)))
        await client.aclose()
        return batcher.sizes

    assert asyncio.run(main()) == [2, 2, 2]  # two calls of 1000 bytes fit under 2500, a third does not


def test_calls_queued_behind_a_stuck_batch_give_up_at_their_deadline() -> None:
    """The batch's own timeout is long; each call's deadline (one timer for all of them) ends its wait."""

    async def main() -> tuple[list[Any], list[Any]]:
        async with silent_server() as port:
            client = redis.asyncio.Redis(port=port, socket_timeout=30, socket_connect_timeout=30)
            batcher = ScriptBatcher(client, ECHO, timeout=30, deadline=0.2)
            first = await asyncio.gather(*(batcher(["n"], ["x"]) for _ in range(3)), return_exceptions=True)
            later = await asyncio.gather(*(batcher(["n"], ["y"]) for _ in range(2)), return_exceptions=True)
            await client.aclose()
        return first, later

    first, later = asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert all(isinstance(result, TimeoutError) for result in first + later), (first, later)


def test_answered_calls_are_not_failed_by_their_deadline_later(redis_url: str) -> None:
    async def main() -> list[Any]:
        client = redis.asyncio.Redis.from_url(redis_url)
        batcher = ScriptBatcher(client, ECHO, timeout=2, deadline=0.1)
        replies = list(await asyncio.gather(*(batcher(["n"], [str(i)]) for i in range(20))))
        await asyncio.sleep(0.3)  # past every deadline of the calls above
        replies.append(await batcher(["n"], ["last"]))
        await client.aclose()
        return replies

    assert asyncio.run(main()) == [str(i).encode() for i in range(20)] + [b"last"]


def test_a_link_that_redis_closed_while_idle_is_reconnected_for_the_next_batch(redis_url: str) -> None:
    """The batcher's link has no health check (no PING before a write): a link Redis dropped fails the
    exchange, and the retry policy reconnects and sends the batch again."""

    async def main() -> list[Any]:
        client = redis.asyncio.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 2),
                                              retry_on_error=[redis.ConnectionError])
        batcher = ScriptBatcher(client, ECHO, timeout=2)
        replies = [await batcher(["n"], ["before"])]
        killed = redis.Redis.from_url(redis_url).client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        replies.append(await batcher(["n"], ["after"]))
        await client.aclose()
        return replies

    assert asyncio.run(main()) == [b"before", b"after"]
