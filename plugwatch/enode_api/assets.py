"""Reading vehicles and chargers from the Enode API (the objects are returned as Enode sends them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from plugwatch.enode_api.client import EnodeClient, segment


def get_charger(client: EnodeClient, charger_id: str) -> dict[str, Any]:
    return dict(client.get("/chargers/" + segment(charger_id)))


def iter_vehicles(client: EnodeClient, user_id: str | None = None, *,
                  page_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Every vehicle of the client (GET /vehicles), or of one user (GET /users/{userId}/vehicles)."""
    prefix = f"/users/{segment(user_id)}" if user_id else ""
    return client.paginate(prefix + "/vehicles", page_size=page_size)


def iter_chargers(client: EnodeClient, user_id: str | None = None, *,
                  page_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Every charger of the client (GET /chargers), or of one user (GET /users/{userId}/chargers)."""
    prefix = f"/users/{segment(user_id)}" if user_id else ""
    return client.paginate(prefix + "/chargers", page_size=page_size)
