"""plugwatch.redis_clients.queues: RQ's Redis is the data client itself unless RQ_REDIS_URL names another."""

from __future__ import annotations

from plugwatch import redis_clients
from plugwatch.settings import Settings


def _settings(**environ: str) -> Settings:
    return Settings.from_env(environ, require_enode_secret=False)


def test_one_redis_is_one_client() -> None:
    settings = _settings(REDIS_URL="redis://127.0.0.1:6390/0")
    data = redis_clients.worker(settings)
    assert redis_clients.worker_queues(settings, data) is data
    assert redis_clients.command_queues(settings, data) is data
    assert redis_clients.receiver_queues(settings, data) is data


def test_rq_apart_is_a_client_of_rq_redis_url_with_the_callers_timeout() -> None:
    settings = _settings(REDIS_URL="redis://127.0.0.1:6390/0", RQ_REDIS_URL="redis://127.0.0.1:6391/3",
                         PLUGWATCH_REDIS_SOCKET_TIMEOUT_SECONDS="7")
    data = redis_clients.worker(settings)
    queues = redis_clients.worker_queues(settings, data)
    assert queues is not data
    options = queues.connection_pool.connection_kwargs
    assert (options["port"], options["db"], options["socket_timeout"]) == (6391, 3, 7.0)
    rq = redis_clients.rq(settings).connection_pool.connection_kwargs
    assert (rq["port"], rq["db"]) == (6391, 3)  # RQ's own dequeue connection too


def test_close_both_closes_a_shared_client_once() -> None:
    closed: list[str] = []

    class Recording:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    shared = Recording("shared")
    redis_clients.close_both(shared, shared)  # type: ignore[arg-type]
    assert closed == ["shared"]
    redis_clients.close_both(Recording("data"), Recording("queues"))  # type: ignore[arg-type]
    assert closed == ["shared", "data", "queues"]
