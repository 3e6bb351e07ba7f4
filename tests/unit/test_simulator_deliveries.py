"""Deliveries: 1-100 events, deterministic per seed, shuffled and duplicated on request, resent on 5xx."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plugwatch.enode_signature import sign
from simulator.deliveries import Plan, plan_deliveries
from simulator.sender import SendOptions, send_all
from simulator.stories import build_scenario
from tests.support.servers import ThreadedUvicorn

EVENTS = build_scenario(8, seed=2).events


def _events_in(deliveries: list) -> Counter[bytes]:  # type: ignore[type-arg]
    return Counter(orjson.dumps(e) for d in deliveries for e in orjson.loads(d.body)
                   if "user" in e)


def test_same_seed_same_bytes_and_every_event_exactly_once() -> None:
    plan = Plan(min_batch=1, max_batch=100, seed=3)
    first, second = plan_deliveries(EVENTS, plan), plan_deliveries(EVENTS, plan)
    assert [d.body for d in first] == [d.body for d in second]
    assert all(1 <= d.events <= 100 for d in first)
    assert _events_in(first) == Counter(orjson.dumps(e) for e in EVENTS)


def test_in_order_deliveries_keep_the_event_order() -> None:
    deliveries = plan_deliveries(EVENTS, Plan(min_batch=5, max_batch=30))
    assert [e for d in deliveries for e in orjson.loads(d.body)] == list(EVENTS)


def test_shuffle_changes_order_but_not_content() -> None:
    deliveries = plan_deliveries(EVENTS, Plan(shuffle=True, max_batch=10))
    flat = [e for d in deliveries for e in orjson.loads(d.body)]
    assert flat != list(EVENTS)
    assert _events_in(deliveries) == Counter(orjson.dumps(e) for e in EVENTS)


def test_duplicates_reuse_and_renew_delivery_ids() -> None:
    plan = Plan(max_batch=10, duplicate_same_id=0.5, duplicate_new_id=0.5)
    deliveries = plan_deliveries(EVENTS, plan)
    ids = Counter(d.id for d in deliveries)
    bodies = Counter(d.body for d in deliveries)
    assert max(ids.values()) == 2  # resent under the same id
    assert sum(bodies.values()) - len(bodies) > sum(ids.values()) - len(ids)  # and under new ids


def test_system_events_are_their_own_deliveries() -> None:
    deliveries = plan_deliveries(EVENTS, Plan(max_batch=10, heartbeat_every=2, test_event=True))
    kinds = [orjson.loads(d.body)[0]["event"] for d in deliveries if d.events == 1]
    assert kinds[0] == "enode:webhook:test"
    assert "system:heartbeat" in kinds


def test_sender_resends_on_503_with_the_same_id_and_signature() -> None:
    seen: list[tuple[str, str]] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        assert request.headers["x-enode-signature"] == sign(body, "s" * 32)
        seen.append((request.headers["x-enode-delivery"], request.headers["x-enode-signature"]))
        return Response(status_code=503 if len(seen) <= 2 else 200)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    deliveries = plan_deliveries(EVENTS[:5], Plan(min_batch=5, max_batch=5))
    with ThreadedUvicorn(app) as server:
        report = asyncio.run(send_all(server.url + "/hook", "s" * 32, deliveries, SendOptions(concurrency=1)))
    assert report.ok
    assert report.accepted == 1
    assert report.resends == 2
    assert len(set(seen)) == 1
    assert len(seen) == 3


def test_sender_does_not_resend_a_4xx() -> None:
    async def hook(request: Request) -> Response:
        return Response(status_code=401)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    deliveries = plan_deliveries(EVENTS[:3], Plan(min_batch=3, max_batch=3))
    with ThreadedUvicorn(app) as server:
        report = asyncio.run(send_all(server.url + "/hook", "s" * 32, deliveries, SendOptions()))
    assert report.rejected == {401: 1}
    assert report.resends == 0
    assert not report.ok
