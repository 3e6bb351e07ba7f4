"""Managing the Enode webhook that feeds the receiver: create (with a generated secret), show, test, rotate.

The secret is generated here (32 random bytes, hex: 256 bits, Enode asks for ≥ 128), sent once in
POST /webhooks and never returned by Enode again: the caller must show it to the operator, who stores it as
ENODE_WEBHOOK_SECRET for the receiver.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from plugwatch.enode_api.client import EnodeClient, segment
from plugwatch.enode_api.errors import EnodeProtocolError

# What the worker consumes; Enode recommends subscribing only to what is needed.  Heartbeats are always sent.
DEFAULT_EVENTS: tuple[str, ...] = (
    "user:vehicle:discovered", "user:vehicle:updated", "user:vehicle:deleted",
    "user:charger:discovered", "user:charger:updated", "user:charger:deleted",
    "user:vendor-action:updated", "enode:webhook:test",
)


def generate_secret() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True)
class CreatedWebhook:
    webhook: dict[str, Any]
    secret: str  # shown once; Enode never returns it


def create_webhook(client: EnodeClient, url: str, events: Sequence[str] = DEFAULT_EVENTS,
                   secret: str | None = None) -> CreatedWebhook:
    secret = secret or generate_secret()
    body = {"url": url, "secret": secret, "events": list(events), "apiVersion": client.config.api_version}
    webhook = client.request("POST", "/webhooks", json=body)
    if not isinstance(webhook, dict) or not isinstance(webhook.get("id"), str):
        raise EnodeProtocolError("POST", "/webhooks", 200, reason="no webhook id returned")
    return CreatedWebhook(webhook, secret)


def get_webhook(client: EnodeClient, webhook_id: str) -> dict[str, Any]:
    return dict(client.get("/webhooks/" + segment(webhook_id)))


def iter_webhooks(client: EnodeClient) -> Iterator[dict[str, Any]]:
    return client.paginate("/webhooks")


def rotate_secret(client: EnodeClient, webhook_id: str, secret: str) -> dict[str, Any]:
    """Make Enode sign with `secret` from now on (PATCH /webhooks/{id}); the receiver must accept it first."""
    return dict(client.request("PATCH", "/webhooks/" + segment(webhook_id), json={"secret": secret}))


def test_webhook(client: EnodeClient, webhook_id: str) -> dict[str, Any]:
    """Ask Enode to send `enode:webhook:test` now; returns `{status: SUCCESS|FAILURE, description, response}`.

    A success also reactivates a webhook Enode had disabled after a day of failed deliveries.
    """
    return dict(client.request("POST", f"/webhooks/{segment(webhook_id)}/test"))
