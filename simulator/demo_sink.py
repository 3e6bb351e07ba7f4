"""The demo sink `plugwatch up` points plugwatch at: it verifies each emitted event's Standard Webhooks
signature and prints one readable line per event ("vehicle 3f2a… plugged in at home at 9c1e…").

An event's `sequence` counts on from its epoch's base (Unix ms when plugwatch's state began, see
`plugwatch.epoch`), so the sink prints it relative to that base (`#3`: the vehicle's third event in this
epoch), given by `sequence_base()`; consumers get the real value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plugwatch import signing


def _short(value: object) -> str:
    return str(value)[:8] + "…" if value else "?"


def describe(event: dict[str, Any], sequence_base: int = 0) -> str:
    """One line a newcomer can read, for any emitted event; its sequence relative to `sequence_base`."""
    kind, data = event.get("type"), event.get("data") or {}
    vehicle, charger, location = (_short(event.get(k)) for k in ("vehicleId", "chargerId", "locationId"))
    when = str(event.get("occurredAt", ""))[11:19]
    if kind == "vehicle.plugged_in_at_home":
        what = f"vehicle {vehicle} plugged in at home (Location {location}, charger {charger})"
    elif kind == "vehicle.unplugged_from_home":
        what = f"vehicle {vehicle} unplugged from home (Location {location}): {data.get('reason')}"
    elif kind == "control.failed":
        reason = (data.get("failureReason") or {}).get("type")
        what = (f"{data.get('kind')} on {data.get('targetType')} {_short(data.get('targetId'))} "
                f"{data.get('state')} ({reason}); vehicle {vehicle} failures in a row: "
                f"{data.get('consecutiveFailures')}")
    elif kind == "control.failure_streak":
        what = f"vehicle {vehicle}: {data.get('consecutiveFailures', 10)} failed commands in a row (streak)"
    else:
        what = f"{kind} for vehicle {vehicle}"
    sequence = event.get("sequence")
    if isinstance(sequence, int) and 0 < sequence_base < sequence:
        sequence -= sequence_base
    return f"[{when}] {event.get('userId')} #{sequence} {what}"


def create_sink(secret: str, echo: Callable[[str], None], sequence_base: Callable[[], int] = lambda: 0
                ) -> Starlette:
    """A Starlette app: POST any path with a signed event -> 204 and one printed line; bad signature -> 401."""

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            signing.verify(secret, request.headers, body)
        except signing.SignatureError:
            echo("rejected an event with a bad signature")
            return Response(status_code=401)
        echo(describe(orjson.loads(body), sequence_base()))
        return Response(status_code=204)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
