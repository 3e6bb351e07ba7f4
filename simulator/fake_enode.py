"""A fake Enode: OAuth token endpoint plus the API paths plugwatch uses, as a real Starlette app.

`plugwatch up` serves one as the demo's Enode API, holding the devices of its simulated scenario
(`simulator.enode_demo`); the tests serve their own (`tests.support.enode_fixtures.serve`). Run it under
real uvicorn, point a client at its URL (API) and its URL + `TOKEN_PATH` (OAuth), then program it and inspect
what it received:

- state: `fake.vehicles`, `fake.chargers`, `fake.locations`, `fake.webhooks` (dicts by id; edit freely, holding
  `fake.lock` while it is served);
- faults: `fake.fail("GET", "/vehicles", 429, headers={"Retry-After": "2"})`, `fake.revoke_tokens()` (the
  next API call with an old token gets 401), `fake.token_ttl` (the `expires_in` it issues), `fake.page_size`;
- records: `fake.requests` (every request, in order), `fake.calls("GET", "/chargers/c1")`.

`POST /webhooks/{id}/test` really POSTs a signed `enode:webhook:test` delivery to the webhook's URL.

Not Enode's: `fake.observe(events)` (or `POST /simulator/events` with a JSON array of webhook events, signed
for like any API call) applies the simulator's webhook events, in the order Enode produced them, to what the
API serves: a vehicle or charger as its newest `:discovered` / `:updated` event shows it, gone after its
`:deleted` (charge actions are not listed: Enode has no endpoint listing them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.clock import iso
from simulator.payloads import API_VERSION

SIMULATOR_PATH = "/simulator/events"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a path, not a password)
CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret-0123456789"  # noqa: S105 (the tests' default for a fake)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    enode_version: str | None
    body: Any


@dataclass
class _Fault:
    method: str
    path: str
    status: int
    headers: dict[str, str]
    remaining: int


def now_iso() -> str:
    return iso(time.time_ns() // 1_000_000)


def problem(status: int, title: str, detail: str) -> JSONResponse:
    kind = {400: "bad-request", 401: "unauthorized", 404: "not-found", 429: "too-many-requests"}
    body = {"type": "https://developers.enode.com/api/problems/" + kind.get(status, "server-error"),
            "title": title, "detail": detail}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


@dataclass
class FakeEnode:
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_ttl: int = 3599
    page_size: int = 50  # the largest page the fake returns, whatever pageSize asks
    vehicles: dict[str, dict[str, Any]] = field(default_factory=dict)
    chargers: dict[str, dict[str, Any]] = field(default_factory=dict)
    locations: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhook_secrets: dict[str, str] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    issued_tokens: list[str] = field(default_factory=list)
    _valid_tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    _faults: list[_Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # hold it to edit state from another thread

    # --- programming -------------------------------------------------------------------------------
    def fail(self, method: str, path: str, status: int, *, times: int = 1,
             headers: dict[str, str] | None = None) -> None:
        """Answer the next `times` requests to `method path` with `status` (a problem+json body)."""
        self._faults.append(_Fault(method, path, status, headers or {}, times))

    def revoke_tokens(self) -> None:
        """Every token issued so far is rejected from now on (as after a secret rotation or expiry)."""
        self._valid_tokens.clear()

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)]

    def api_calls(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path != TOKEN_PATH]

    def observe(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Apply Enode webhook events (in Enode's order) to the vehicles and chargers the API serves."""
        with self.lock:
            for event in events:
                parts = str(event.get("event", "")).split(":")
                kind, verb = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
                body = event.get(kind) if kind in ("vehicle", "charger") else None
                if not isinstance(body, Mapping):
                    continue
                devices = self.vehicles if kind == "vehicle" else self.chargers
                if verb == "deleted":
                    devices.pop(str(body.get("id")), None)
                else:
                    devices[str(body.get("id"))] = dict(body)

    @property
    def app(self) -> Starlette:
        routes = [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route("/vehicles", self._list(self.vehicles), methods=["GET"]),
            Route("/chargers", self._list(self.chargers), methods=["GET"]),
            Route("/locations", self._list(self.locations), methods=["GET"]),
            Route("/webhooks", self._list(self.webhooks), methods=["GET"]),
            Route("/webhooks", self._create_webhook, methods=["POST"]),
            Route("/users/{user_id}/vehicles", self._list(self.vehicles, by_user=True), methods=["GET"]),
            Route("/users/{user_id}/chargers", self._list(self.chargers, by_user=True), methods=["GET"]),
            Route("/users/{user_id}/locations", self._list(self.locations, by_user=True), methods=["GET"]),
            Route("/users/{user_id}/locations", self._create_location, methods=["POST"]),
            Route("/vehicles/{item_id}", self._get(self.vehicles, "Vehicle"), methods=["GET"]),
            Route("/chargers/{item_id}", self._get(self.chargers, "Charger"), methods=["GET"]),
            Route("/chargers/{item_id}", self._update_charger, methods=["PUT"]),
            Route("/locations/{item_id}", self._get(self.locations, "Location"), methods=["GET"]),
            Route("/webhooks/{item_id}", self._get(self.webhooks, "Webhook"), methods=["GET"]),
            Route("/webhooks/{item_id}", self._update_webhook, methods=["PATCH"]),
            Route("/webhooks/{item_id}/test", self._test_webhook, methods=["POST"]),
            Route(SIMULATOR_PATH, self._observe, methods=["POST"]),
        ]
        return Starlette(routes=routes, middleware=[])

    # --- request plumbing --------------------------------------------------------------------------
    async def _begin(self, request: Request, *, authenticated: bool = True) -> Response | None:
        """Record the request; return the response that pre-empts it (fault, 401), if any."""
        raw = await request.body()
        body: Any = raw.decode() if request.url.path == TOKEN_PATH else (orjson.loads(raw) if raw else None)
        self.requests.append(RecordedRequest(
            request.method, request.url.path, dict(request.query_params),
            request.headers.get("authorization"), request.headers.get("enode-version"), body))
        request.state.body = body
        with self.lock:
            fault = next((f for f in self._faults if f.remaining > 0 and f.method == request.method
                          and f.path == request.url.path), None)
            if fault is not None:
                fault.remaining -= 1
                response = problem(fault.status, "Scripted fault", "fake Enode was told to fail")
                response.headers.update(fault.headers)
                return response
        if authenticated:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if self._valid_tokens.get(token, 0.0) < time.monotonic():
                return problem(401, "Unauthorized", "Invalid or expired access token")
        return None

    async def _token(self, request: Request) -> Response:
        if (early := await self._begin(request, authenticated=False)) is not None:
            return early
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if not hmac.compare_digest(request.headers.get("authorization", ""), expected):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if parse_qs(request.state.body).get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        token = secrets.token_urlsafe(24)
        self.issued_tokens.append(token)
        self._valid_tokens[token] = time.monotonic() + self.token_ttl
        return JSONResponse({"access_token": token, "expires_in": self.token_ttl, "scope": "",
                             "token_type": "bearer"})

    def _list(self, items: dict[str, dict[str, Any]], *, by_user: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            if (early := await self._begin(request)) is not None:
                return early
            user = request.path_params.get("user_id") if by_user else None
            with self.lock:
                rows = [item for item in items.values() if user is None or item.get("userId") == user]
            size = min(int(request.query_params.get("pageSize") or self.page_size), self.page_size)
            after = request.query_params.get("after")
            start = int(base64.urlsafe_b64decode(after).decode()) if after else 0
            end = start + size
            cursor = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(rows) else None
            return JSONResponse({"data": rows[start:end], "pagination": {"after": cursor, "before": None}})
        return endpoint

    def _get(self, items: dict[str, dict[str, Any]], kind: str) -> Any:
        async def endpoint(request: Request) -> Response:
            if (early := await self._begin(request)) is not None:
                return early
            with self.lock:
                item = items.get(request.path_params["item_id"])
            if item is None:
                return problem(404, f"{kind} not found", f"Could not find {request.path_params['item_id']}")
            return JSONResponse(item)
        return endpoint

    # --- writes ------------------------------------------------------------------------------------
    async def _observe(self, request: Request) -> Response:
        if (early := await self._begin(request)) is not None:
            return early
        events = request.state.body
        if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
            return problem(400, "Invalid events", "a JSON array of Enode webhook events is required")
        self.observe(events)
        return JSONResponse({"observed": len(events)})

    async def _create_location(self, request: Request) -> Response:
        if (early := await self._begin(request)) is not None:
            return early
        body = request.state.body
        if not isinstance(body, dict) or not {"name", "latitude", "longitude", "timezoneName"} <= body.keys():
            return problem(400, "Invalid location", "name, latitude, longitude and timezoneName are required")
        location = {"id": str(uuid.uuid4()), "userId": request.path_params["user_id"], "name": body["name"],
                    "latitude": body["latitude"], "longitude": body["longitude"],
                    "timezoneName": body["timezoneName"], "createdAt": now_iso()}
        self.locations[location["id"]] = location
        return JSONResponse(location)

    async def _update_charger(self, request: Request) -> Response:
        if (early := await self._begin(request)) is not None:
            return early
        charger = self.chargers.get(request.path_params["item_id"])
        body = request.state.body
        if charger is None:
            return problem(404, "Charger not found", "Could not find " + request.path_params["item_id"])
        if not isinstance(body, dict) or set(body) != {"locationId"}:
            return problem(400, "Invalid charger update", "body must be {locationId}")
        location_id = body["locationId"]
        if location_id is not None and self.locations.get(location_id, {}).get("userId") != charger["userId"]:
            return problem(400, "Invalid location", "no such location for the charger's user")
        charger["location"] = {"id": location_id, "lastUpdated": now_iso()}
        return JSONResponse(charger)

    async def _create_webhook(self, request: Request) -> Response:
        if (early := await self._begin(request)) is not None:
            return early
        body = request.state.body
        if not isinstance(body, dict) or len(body.get("url") or "") < 8 or len(body.get("secret") or "") < 6:
            return problem(400, "Webhook input is not valid.", "url and secret are required")
        if any(hook["url"] == body["url"] for hook in self.webhooks.values()):
            return problem(400, "Webhook input is not valid.", "Webhook already exists")
        created = now_iso()
        hook = {"id": str(uuid.uuid4()), "url": body["url"], "events": body.get("events") or ["*"],
                "lastSuccess": created, "isActive": True, "createdAt": created,  # the spec: always a string
                "apiVersion": body.get("apiVersion"), "authentication": None}
        self.webhooks[hook["id"]] = hook
        self.webhook_secrets[hook["id"]] = body["secret"]
        return JSONResponse(hook)

    async def _update_webhook(self, request: Request) -> Response:
        if (early := await self._begin(request)) is not None:
            return early
        hook, body = self.webhooks.get(request.path_params["item_id"]), request.state.body
        if hook is None:
            return problem(404, "Webhook not found", "Could not find " + request.path_params["item_id"])
        if not isinstance(body, dict) or not set(body) <= {"url", "secret", "events", "apiVersion"}:
            return problem(400, "Webhook input is not valid.", "unsupported fields")
        if "secret" in body:
            self.webhook_secrets[hook["id"]] = body["secret"]
        hook.update({key: value for key, value in body.items() if key != "secret"})
        return JSONResponse(hook)

    async def _test_webhook(self, request: Request) -> Response:
        if (early := await self._begin(request)) is not None:
            return early
        hook = self.webhooks.get(request.path_params["item_id"])
        if hook is None:
            return problem(404, "Webhook not found", "Could not find " + request.path_params["item_id"])
        raw = orjson.dumps([{"event": "enode:webhook:test", "createdAt": now_iso(), "version": API_VERSION}])
        digest = hmac.new(self.webhook_secrets[hook["id"]].encode(), raw, hashlib.sha1).hexdigest()
        headers = {"content-type": "application/json", "x-enode-delivery": str(uuid.uuid4()),
                   "x-enode-signature": "sha1=" + digest}
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                sent = await client.post(hook["url"], content=raw, headers=headers)
        except httpx.HTTPError as exc:
            return JSONResponse({"status": "FAILURE", "description": repr(exc), "response": None})
        ok = sent.is_success
        if ok:
            hook.update(isActive=True, lastSuccess=now_iso())
        return JSONResponse({"status": "SUCCESS" if ok else "FAILURE",
                             "description": f"HTTP {sent.status_code}",
                             "response": {"code": sent.status_code, "body": sent.text, "headers": []}})

