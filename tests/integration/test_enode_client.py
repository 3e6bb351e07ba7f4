"""The Enode client against a fake Enode served by real uvicorn: tokens, retries, errors, pagination."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from plugwatch.enode_api.client import EnodeClient, EnodeConfig, RetryPolicy
from plugwatch.enode_api.errors import (
    EnodeAuthError,
    EnodeNotFound,
    EnodePermanentError,
    EnodeRateLimited,
    EnodeTransientError,
    EnodeUnavailable,
)
from simulator.fake_enode import TOKEN_PATH, FakeEnode
from tests.support.enode_fixtures import enode_settings
from tests.support.enode_objects import vehicle
from tests.support.servers import ThreadedUvicorn, free_port

FAST_RETRIES = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)

pytest_plugins = ("tests.support.enode_fixtures",)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_client(url: str, clock: ManualClock | None = None, **overrides: object) -> EnodeClient:
    config = EnodeConfig.from_settings(enode_settings(url), **({"retry": FAST_RETRIES} | overrides))
    return EnodeClient(config, clock=clock) if clock else EnodeClient(config)


@pytest.fixture
def client(server: ThreadedUvicorn) -> Iterator[EnodeClient]:
    with make_client(server.url) as built:
        yield built


def test_token_is_fetched_once_and_reused(fake: FakeEnode, client: EnodeClient) -> None:
    for _ in range(3):
        client.get("/vehicles")
    assert len(fake.calls("POST", TOKEN_PATH)) == 1
    api = fake.api_calls()
    assert len(api) == 3
    assert {r.authorization for r in api} == {"Bearer " + fake.issued_tokens[0]}
    assert {r.enode_version for r in api} == {"2024-10-01"}


def test_api_version_header_is_configurable(fake: FakeEnode, server: ThreadedUvicorn) -> None:
    with make_client(server.url, api_version="2099-01-01") as client:
        client.get("/vehicles")
    assert fake.api_calls()[0].enode_version == "2099-01-01"


def test_token_is_refreshed_before_it_expires(fake: FakeEnode, server: ThreadedUvicorn) -> None:
    """Tokens live 120 s here; with a 60 s margin the client refreshes once 60 s have passed, not before."""
    fake.token_ttl = 120
    clock = ManualClock()
    with make_client(server.url, clock, refresh_margin_seconds=60.0) as client:
        client.get("/vehicles")
        clock.now += 59
        client.get("/vehicles")
        assert len(fake.calls("POST", TOKEN_PATH)) == 1
        clock.now += 2
        client.get("/vehicles")
    assert len(fake.calls("POST", TOKEN_PATH)) == 2
    assert fake.api_calls()[-1].authorization == "Bearer " + fake.issued_tokens[1]


def test_a_short_lived_token_is_replaced_before_the_server_would_reject_it(
        fake: FakeEnode, server: ThreadedUvicorn) -> None:
    """Real time: 1 s tokens (the fake enforces expiry); the client refreshes at half-life, never sees 401."""
    fake.token_ttl = 1
    with make_client(server.url) as client:
        client.get("/vehicles")
        time.sleep(0.6)
        client.get("/vehicles")
    assert len(fake.calls("POST", TOKEN_PATH)) == 2
    assert [r.authorization for r in fake.calls("GET", "/vehicles")] == [
        "Bearer " + fake.issued_tokens[0], "Bearer " + fake.issued_tokens[1]]

def test_a_401_refreshes_the_token_once_and_the_request_succeeds(
        fake: FakeEnode, client: EnodeClient) -> None:
    fake.vehicles["v1"] = vehicle("v1", "u1")
    client.get("/vehicles")
    fake.revoke_tokens()
    assert client.get("/vehicles/v1")["id"] == "v1"
    assert len(fake.calls("POST", TOKEN_PATH)) == 2
    assert [r.authorization for r in fake.calls("GET", "/vehicles/v1")] == [
        "Bearer " + fake.issued_tokens[0], "Bearer " + fake.issued_tokens[1]]


def test_a_401_after_a_fresh_token_is_an_auth_error(fake: FakeEnode, client: EnodeClient) -> None:
    fake.fail("GET", "/vehicles", 401, times=5)
    with pytest.raises(EnodeAuthError) as raised:
        client.get("/vehicles")
    assert raised.value.status == 401
    assert len(fake.calls("GET", "/vehicles")) == 2
    assert len(fake.calls("POST", TOKEN_PATH)) == 2


def test_rejected_client_credentials_say_which_variables(server: ThreadedUvicorn) -> None:
    config = EnodeConfig.from_settings(enode_settings(server.url, client_secret="wrong-secret-000000"))
    with EnodeClient(config) as client, pytest.raises(EnodeAuthError, match="ENODE_CLIENT_SECRET"):
        client.get("/vehicles")


def test_a_429_with_retry_after_2_waits_about_2_seconds_then_succeeds(
        fake: FakeEnode, client: EnodeClient) -> None:
    fake.fail("GET", "/vehicles", 429, headers={"Retry-After": "2"})
    started = time.monotonic()
    body = client.get("/vehicles")
    elapsed = time.monotonic() - started
    assert body == {"data": [], "pagination": {"after": None, "before": None}}
    assert elapsed >= 1.95
    assert len(fake.calls("GET", "/vehicles")) == 2


def test_a_retry_after_longer_than_the_cap_is_raised_not_slept(fake: FakeEnode, client: EnodeClient) -> None:
    fake.fail("GET", "/vehicles", 429, headers={"Retry-After": "3600"})
    with pytest.raises(EnodeRateLimited) as raised:
        client.get("/vehicles")
    assert raised.value.retry_after == 3600
    assert raised.value.problem.title == "Scripted fault"
    assert isinstance(raised.value, EnodeTransientError)
    assert len(fake.calls("GET", "/vehicles")) == 1


def test_5xx_is_retried_with_backoff_until_it_succeeds(fake: FakeEnode, client: EnodeClient) -> None:
    fake.fail("GET", "/chargers", 503, times=2)
    assert client.get("/chargers")["data"] == []
    assert len(fake.calls("GET", "/chargers")) == 3


def test_persistent_5xx_raises_unavailable_after_max_attempts(fake: FakeEnode, client: EnodeClient) -> None:
    fake.fail("GET", "/chargers", 500, times=10)
    with pytest.raises(EnodeUnavailable) as raised:
        client.get("/chargers")
    assert raised.value.status == 500
    assert "Scripted fault" in str(raised.value)
    assert len(fake.calls("GET", "/chargers")) == FAST_RETRIES.max_attempts


def test_a_post_is_not_retried_on_5xx(fake: FakeEnode, client: EnodeClient) -> None:
    """The POST may have been applied before the 5xx; repeating it could create a duplicate."""
    fake.fail("POST", "/webhooks", 502)
    with pytest.raises(EnodeUnavailable):
        client.request("POST", "/webhooks", json={"url": "https://example.com/hook", "secret": "s" * 32})
    assert len(fake.calls("POST", "/webhooks")) == 1
    assert fake.webhooks == {}


def test_a_post_is_retried_on_429(fake: FakeEnode, client: EnodeClient) -> None:
    fake.fail("POST", "/webhooks", 429, headers={"Retry-After": "0"})
    client.request("POST", "/webhooks", json={"url": "https://example.com/hook", "secret": "s" * 32})
    assert len(fake.calls("POST", "/webhooks")) == 2
    assert len(fake.webhooks) == 1


def test_an_unreachable_api_raises_unavailable() -> None:
    with make_client(f"http://127.0.0.1:{free_port()}") as client, pytest.raises(EnodeUnavailable):
        client.get("/vehicles")


def test_a_404_maps_problem_json_to_not_found(client: EnodeClient) -> None:
    with pytest.raises(EnodeNotFound) as raised:
        client.get("/chargers/nope")
    assert isinstance(raised.value, EnodePermanentError)
    assert raised.value.status == 404
    assert raised.value.problem.title == "Charger not found"
    assert str(raised.value) == "GET /chargers/nope failed (404): Charger not found: Could not find nope"


def test_pagination_walks_every_page(fake: FakeEnode, client: EnodeClient) -> None:
    fake.page_size = 3
    for n in range(7):
        fake.vehicles[f"v{n}"] = vehicle(f"v{n}", "u1")
    assert [v["id"] for v in client.paginate("/vehicles")] == [f"v{n}" for n in range(7)]
    pages = fake.calls("GET", "/vehicles")
    assert len(pages) == 3
    assert "after" not in pages[0].query
    assert all("after" in page.query for page in pages[1:])


def test_pagination_of_an_empty_list_is_one_request(fake: FakeEnode, client: EnodeClient) -> None:
    assert list(client.paginate("/chargers", page_size=10)) == []
    assert [r.query for r in fake.calls("GET", "/chargers")] == [{"pageSize": "10"}]
