"""`plugwatch enode ...` against a fake Enode on a real port: location set-up, webhooks, no credentials."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from click.testing import CliRunner, Result

from cli import main
from plugwatch.settings import ReceiverSettings, Settings
from receiver.app import create_app
from simulator.fake_enode import TOKEN_PATH, FakeEnode
from tests.conftest import TEST_SECRET
from tests.support.enode_objects import charger
from tests.support.servers import ThreadedUvicorn, free_port

ENODE_VARS = ("ENODE_CLIENT_ID", "ENODE_CLIENT_SECRET", "ENODE_API_URL", "ENODE_TOKEN_URL")
SETUP = ["enode", "location-setup", "--user", "u1", "--charger", "c1", "--name", "Home",
         "--lat", "59.9139", "--lon", "10.7522", "--timezone", "Europe/Oslo"]

pytest_plugins = ("tests.support.enode_fixtures",)


@pytest.fixture
def fake() -> FakeEnode:
    fake = FakeEnode()
    fake.chargers["c1"] = charger("c1", "u1")
    return fake


def run(server: ThreadedUvicorn | None, *args: str) -> Result:
    env: dict[str, str | None] = dict.fromkeys(ENODE_VARS)
    if server is not None:
        env |= {"ENODE_CLIENT_ID": FakeEnode.client_id, "ENODE_CLIENT_SECRET": FakeEnode.client_secret,
                "ENODE_API_URL": server.url, "ENODE_TOKEN_URL": server.url + TOKEN_PATH}
    return CliRunner().invoke(main, list(args), env=env)


def secret_in(output: str) -> str:
    [secret] = re.findall(r"^  ([0-9a-f]{64})$", output, flags=re.MULTILINE)
    return secret


def test_location_setup_twice_creates_one_location_and_one_assignment(
        fake: FakeEnode, server: ThreadedUvicorn) -> None:
    first = run(server, *SETUP)
    second = run(server, *SETUP)
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    [location] = fake.locations.values()
    assert fake.chargers["c1"]["location"]["id"] == location["id"]
    assert [c.body for c in fake.calls("POST", "/users/u1/locations")] == [
        {"name": "Home", "latitude": 59.9139, "longitude": 10.7522, "timezoneName": "Europe/Oslo"}]
    assert [c.body for c in fake.calls("PUT", "/chargers/c1")] == [{"locationId": location["id"]}]
    assert f"location {location['id']}: created" in first.stdout
    assert f"location {location['id']}: reused" in second.stdout
    assert "already assigned" in second.stdout


def test_location_setup_reuses_a_same_named_location_a_few_meters_away(
        fake: FakeEnode, server: ThreadedUvicorn) -> None:
    fake.locations["l0"] = {"id": "l0", "userId": "u1", "name": "Home", "latitude": 59.91395,
                            "longitude": 10.75225, "timezoneName": "Europe/Oslo",
                            "createdAt": "2025-01-01T00:00:00Z"}
    result = run(server, *SETUP)
    assert result.exit_code == 0, result.output
    assert fake.calls("POST", "/users/u1/locations") == []
    assert fake.chargers["c1"]["location"]["id"] == "l0"


@pytest.mark.parametrize(("name", "latitude", "user"), [
    ("Cabin", 59.9139, "u1"),  # another name
    ("Home", 59.9239, "u1"),  # about 1.1 km north
    ("Home", 59.9139, "u2"),  # another user's
])
def test_location_setup_does_not_reuse_a_location_that_does_not_match(
        fake: FakeEnode, server: ThreadedUvicorn, name: str, latitude: float, user: str) -> None:
    fake.locations["l0"] = {"id": "l0", "userId": user, "name": name, "latitude": latitude,
                            "longitude": 10.7522, "timezoneName": "UTC", "createdAt": "2025-01-01T00:00:00Z"}
    result = run(server, *SETUP)
    assert result.exit_code == 0, result.output
    assert len(fake.calls("POST", "/users/u1/locations")) == 1
    assert fake.chargers["c1"]["location"]["id"] not in (None, "l0")


def test_location_setup_moves_a_charger_from_another_location(
        fake: FakeEnode, server: ThreadedUvicorn) -> None:
    fake.locations["old"] = {"id": "old", "userId": "u1", "name": "Office", "latitude": 1.0,
                             "longitude": 1.0, "timezoneName": "UTC", "createdAt": "2025-01-01T00:00:00Z"}
    fake.chargers["c1"] = charger("c1", "u1", location_id="old")
    result = run(server, *SETUP)
    assert result.exit_code == 0, result.output
    assert "(was old)" in result.stdout
    assert fake.chargers["c1"]["location"]["id"] != "old"


def test_location_setup_refuses_another_users_charger(fake: FakeEnode, server: ThreadedUvicorn) -> None:
    fake.chargers["c1"] = charger("c1", "someone-else")
    result = run(server, *SETUP)
    assert result.exit_code == 1
    assert "belongs to user 'someone-else'" in result.stderr
    assert fake.locations == {}
    assert fake.calls("PUT", "/chargers/c1") == []


def test_location_setup_of_an_unknown_charger_exits_1_with_enodes_problem(server: ThreadedUvicorn) -> None:
    result = run(server, *[("nope" if arg == "c1" else arg) for arg in SETUP])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "plugwatch enode: GET /chargers/nope failed (404): Charger not found: Could not find nope")


def test_location_setup_rejects_an_unknown_time_zone(server: ThreadedUvicorn) -> None:
    result = run(server, *SETUP[:-1], "Mars/Olympus")
    assert result.exit_code == 2
    assert "IANA time zone" in result.stderr


def test_webhook_create_shows_a_strong_secret_once_and_sends_it_to_enode(
        fake: FakeEnode, server: ThreadedUvicorn) -> None:
    result = run(server, "enode", "webhook", "create", "--url", "https://plugwatch.example/webhooks/enode")
    assert result.exit_code == 0, result.output
    [hook_id] = fake.webhooks
    secret = secret_in(result.stdout)
    assert fake.webhook_secrets[hook_id] == secret
    [call] = fake.calls("POST", "/webhooks")
    assert call.body["apiVersion"] == "2024-10-01"
    assert "user:vehicle:updated" in call.body["events"]
    again = run(server, "enode", "webhook", "create", "--url", "https://other.example/hook")
    assert secret_in(again.stdout) != secret


def test_webhook_create_with_events_and_an_existing_url(fake: FakeEnode, server: ThreadedUvicorn) -> None:
    url = "https://plugwatch.example/webhooks/enode"
    created = run(server, "enode", "webhook", "create", "--url", url, "--event", "user:vehicle:updated")
    assert created.exit_code == 0, created.output
    assert fake.calls("POST", "/webhooks")[0].body["events"] == ["user:vehicle:updated"]
    duplicate = run(server, "enode", "webhook", "create", "--url", url)
    assert duplicate.exit_code == 1
    assert "Webhook already exists" in duplicate.stderr


def test_webhook_show_lists_all_or_one(fake: FakeEnode, server: ThreadedUvicorn) -> None:
    run(server, "enode", "webhook", "create", "--url", "https://a.example/hook")
    run(server, "enode", "webhook", "create", "--url", "https://b.example/hook")
    listed = run(server, "enode", "webhook", "show")
    assert listed.exit_code == 0, listed.output
    assert "https://a.example/hook" in listed.stdout
    assert "https://b.example/hook" in listed.stdout
    hook_id = next(h["id"] for h in fake.webhooks.values() if h["url"].startswith("https://b."))
    one = run(server, "enode", "webhook", "show", hook_id)
    assert '"isActive": true' in one.stdout
    assert "https://a.example" not in one.stdout
    assert run(server, "enode", "webhook", "show", "missing").exit_code == 1


def _receiver(settings: Settings, secrets: str, port: int | None = None) -> ThreadedUvicorn:
    """The real receiver, accepting `secrets` (comma-separated, as ENODE_WEBHOOK_SECRET)."""
    app = create_app(replace(settings, receiver=ReceiverSettings(enode_webhook_secrets=tuple(secrets.split(",")))))
    return ThreadedUvicorn(app, port=port)


def test_webhook_test_reaches_the_receiver_configured_with_the_printed_secret(
        fake: FakeEnode, server: ThreadedUvicorn, settings: Settings) -> None:
    """The full operator path: create, paste the printed secret into the receiver, test -> SUCCESS."""
    port = free_port()
    created = run(server, "enode", "webhook", "create", "--url", f"http://127.0.0.1:{port}/webhooks/enode")
    secret = secret_in(created.stdout)
    [hook_id] = fake.webhooks
    with _receiver(settings, secret, port):
        tested = run(server, "enode", "webhook", "test", hook_id)
    assert tested.exit_code == 0, tested.output
    assert "SUCCESS: HTTP 200" in tested.stdout.splitlines()


def test_webhook_test_against_a_receiver_with_another_secret_fails(
        fake: FakeEnode, server: ThreadedUvicorn, settings: Settings) -> None:
    with _receiver(settings, TEST_SECRET) as receiver:
        run(server, "enode", "webhook", "create", "--url", receiver.url + "/webhooks/enode")
        [hook_id] = fake.webhooks
        tested = run(server, "enode", "webhook", "test", hook_id)
    assert tested.exit_code == 1
    assert "FAILURE: HTTP 401" in tested.stdout.splitlines()


def test_webhook_secret_rotation_keeps_deliveries_verified(
        fake: FakeEnode, server: ThreadedUvicorn, settings: Settings) -> None:
    """Create (old), generate new, receiver accepts both, rotate, test; a receiver with only old now fails."""
    port = free_port()
    created = run(server, "enode", "webhook", "create", "--url", f"http://127.0.0.1:{port}/webhooks/enode")
    old = secret_in(created.stdout)
    [hook_id] = fake.webhooks
    generated = run(server, "enode", "webhook", "rotate-secret", hook_id)
    new = secret_in(generated.stdout)
    assert new != old
    assert fake.webhook_secrets[hook_id] == old  # step 1 does not touch Enode
    with _receiver(settings, f"{new},{old}", port):
        rotated = run(server, "enode", "webhook", "rotate-secret", hook_id, "--secret", new)
        assert rotated.exit_code == 0, rotated.output
        assert "SUCCESS: HTTP 200" in run(server, "enode", "webhook", "test", hook_id).stdout.splitlines()
    assert fake.webhook_secrets[hook_id] == new
    assert [c.body for c in fake.calls("PATCH", "/webhooks/" + hook_id)] == [{"secret": new}]
    with _receiver(settings, old, port):
        assert "FAILURE: HTTP 401" in run(server, "enode", "webhook", "test", hook_id).stdout.splitlines()


def test_webhook_rotation_refuses_a_short_secret(fake: FakeEnode, server: ThreadedUvicorn) -> None:
    result = run(server, "enode", "webhook", "rotate-secret", "some-id", "--secret", "short")
    assert result.exit_code == 2
    assert fake.api_calls() == []


@pytest.mark.parametrize("args", [
    SETUP,
    ["enode", "webhook", "create", "--url", "https://plugwatch.example/webhooks/enode"],
    ["enode", "webhook", "show"],
    ["enode", "webhook", "test", "some-id"],
    ["enode", "webhook", "rotate-secret", "some-id", "--secret", "0123456789abcdef0123"],
    ["enode", "reconcile"],
])
def test_without_credentials_every_command_says_so_in_one_line_and_exits_2(args: list[str]) -> None:
    result = run(None, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "plugwatch enode: Enode API is not configured: set ENODE_CLIENT_ID and ENODE_CLIENT_SECRET\n")
