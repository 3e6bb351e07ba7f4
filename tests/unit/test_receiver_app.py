"""POST /webhooks/enode and the health/metrics routes, in-process on fakeredis (fast, exhaustive)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import fakeredis
import httpx
import orjson
import pytest
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

from plugwatch import ingest_protocol as ingest
from plugwatch import keys
from plugwatch.settings import ProcessSettings, ReceiverSettings, Settings
from receiver.app import create_app
from tests.conftest import TEST_SECRET
from tests.support.receiver_app import InProcessReceiver, signed, vehicle_batch

BODY = vehicle_batch("v1")
OLD_SECRET = "old-secret-0123456789abcdef"


@pytest.fixture
def receiver() -> InProcessReceiver:
    return InProcessReceiver(Settings(receiver=ReceiverSettings(enode_webhook_secrets=(TEST_SECRET, OLD_SECRET),
                                                                max_body_bytes=64 * 1024)))


def test_enodes_documented_vector_is_accepted_by_the_app() -> None:
    receiver = InProcessReceiver(Settings(receiver=ReceiverSettings(enode_webhook_secrets=("example-secret",))))
    body = b'{"payload":"example"}'
    response = receiver.post(body, {"x-enode-signature": "sha1=e417e6fc2e7f8a78c93a35a7b344d36ce179fc8d"})
    assert response.status_code == 200
    assert response.json() == {"outcome": "quarantined"}  # authentic, but not an Enode batch
    assert receiver.redis.xlen(keys.QUARANTINE_STREAM) == 1


def test_a_valid_delivery_is_stored_once_and_armed(receiver: InProcessReceiver) -> None:
    response = receiver.post(BODY, signed(BODY, "d1"))
    assert (response.status_code, response.json()) == (200, {"outcome": "accepted"})
    [(_, fields)] = receiver.redis.xrange(keys.INGEST_STREAM)
    assert (fields[b"d"], fields[b"b"]) == (b"d1", BODY)
    assert receiver.redis.exists(keys.INGEST_ARMED)
    assert len(receiver.redis.lrange("rq:queue:" + keys.INGEST_QUEUE, 0, -1)) == 1


def test_a_delivery_signed_with_the_previous_secret_is_accepted(receiver: InProcessReceiver) -> None:
    assert receiver.post(BODY, signed(BODY, secret=OLD_SECRET)).status_code == 200
    assert receiver.ingest_count() == 1


def test_a_retry_is_a_duplicate_only_under_the_same_secret(receiver: InProcessReceiver) -> None:
    """The dedupe mark is made of the id and the verified signature (plugwatch.dedupe_marks.mark_of): a retry
    signed under another configured secret (Enode's secret rotated between two attempts) is stored again,
    never taken for a duplicate and lost; under the same secret it is a duplicate."""
    assert receiver.post(BODY, signed(BODY, "d1", secret=OLD_SECRET)).json() == {"outcome": "accepted"}
    assert receiver.post(BODY, signed(BODY, "d1", secret=OLD_SECRET)).json() == {"outcome": "duplicate"}
    assert receiver.post(BODY, signed(BODY, "d1")).json() == {"outcome": "accepted"}
    assert receiver.post(BODY, signed(BODY, "d1")).json() == {"outcome": "duplicate"}
    assert receiver.ingest_count() == 2


HEX = signed(BODY)["x-enode-signature"].removeprefix("sha1=")


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        pytest.param(None, "missing", id="missing"),
        pytest.param("", "missing", id="empty"),
        pytest.param("sha256=" + HEX, "malformed", id="wrong-prefix"),
        pytest.param("sha1=" + HEX[:-1] + "z", "malformed", id="non-hex"),
        pytest.param("sha1=" + HEX.upper(), "malformed", id="uppercase-hex"),
        pytest.param("sha1==" + HEX, "malformed", id="doubled-equals"),
        pytest.param("sha1=" + HEX[:20], "malformed", id="short"),
        pytest.param("sha1=" + "0" * 40, "mismatch", id="wrong-digest"),
        pytest.param(signed(BODY, secret="some-other-secret-0123456")["x-enode-signature"], "mismatch",
                     id="unknown-secret"),
    ],
)
def test_a_bad_signature_is_401_and_nothing_is_stored(
    receiver: InProcessReceiver, signature: str | None, reason: str
) -> None:
    headers = {"x-enode-delivery": "d1"} if signature is None else {"x-enode-delivery": "d1",
                                                                        "x-enode-signature": signature}
    response = receiver.post(BODY, headers)
    assert (response.status_code, response.json()) == (401, {"outcome": "unauthorized"})
    assert receiver.nothing_stored()
    assert _sample(receiver, "plugwatch_receiver_signature_failures_total", reason=reason) == 1


def test_a_body_changed_by_one_byte_is_401(receiver: InProcessReceiver) -> None:
    changed = BODY.replace(b"v1", b"v2")
    assert receiver.post(changed, signed(BODY)).status_code == 401
    assert receiver.nothing_stored()


def test_a_repeated_delivery_is_200_and_stored_once(receiver: InProcessReceiver) -> None:
    for _ in range(3):
        assert receiver.post(BODY, signed(BODY, "same")).status_code == 200
    assert receiver.ingest_count() == 1
    assert _sample(receiver, "plugwatch_receiver_requests_total", outcome="duplicate") == 2


def test_a_mark_of_the_previous_version_is_honoured_by_the_app(receiver: InProcessReceiver) -> None:
    """The app sends the body's digest only when the script finds an old mark and asks for it."""
    receiver.redis.set(keys.dedupe_key("old"), ingest.body_digest(BODY))
    assert receiver.post(BODY, signed(BODY, "old")).json() == {"outcome": "duplicate"}
    other = vehicle_batch("v2")
    assert receiver.post(other, signed(other, "old")).json() == {"outcome": "accepted"}  # another body: new input
    assert [fields[b"b"] for _, fields in receiver.redis.xrange(keys.INGEST_STREAM)] == [other]


def test_a_delivery_without_an_id_is_deduplicated_by_its_body(receiver: InProcessReceiver) -> None:
    assert receiver.post(BODY, signed(BODY, None)).json() == {"outcome": "accepted"}
    assert receiver.post(BODY, signed(BODY, None)).json() == {"outcome": "duplicate"}
    [(_, fields)] = receiver.redis.xrange(keys.INGEST_STREAM)
    assert fields[b"d"] == b"sha256:" + hashlib.sha256(BODY).hexdigest().encode()


def test_an_absurdly_long_delivery_id_is_hashed(receiver: InProcessReceiver) -> None:
    long_id = "x" * 5000
    assert receiver.post(BODY, signed(BODY, long_id)).status_code == 200
    [(_, fields)] = receiver.redis.xrange(keys.INGEST_STREAM)
    assert fields[b"d"] == b"sha256:" + hashlib.sha256(long_id.encode()).hexdigest().encode()


def test_an_oversized_declared_body_is_413_and_not_read(receiver: InProcessReceiver) -> None:
    body = b"[" + b" " * (64 * 1024) + b"]"
    response = receiver.post(body, signed(body))
    assert (response.status_code, response.json()) == (413, {"outcome": "too_large"})
    assert receiver.nothing_stored()


def test_an_oversized_streamed_body_is_413_after_reading_little_more_than_the_limit(
    receiver: InProcessReceiver,
) -> None:
    """Chunked upload without Content-Length: reading stops once the limit is passed."""
    chunk = b" " * 4096
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(5 * 1024 * 1024 // len(chunk)):  # 5 MiB offered
            sent += len(chunk)
            yield chunk

    headers = {"x-enode-signature": "sha1=" + "0" * 40, "x-enode-delivery": "big"}
    response = receiver.run(lambda client: client.post("/webhooks/enode", content=chunks(), headers=headers))
    assert response.status_code == 413
    assert sent <= 64 * 1024 + 2 * len(chunk)
    assert receiver.nothing_stored()


def test_a_malformed_content_length_is_400(receiver: InProcessReceiver) -> None:
    headers = {**signed(BODY), "content-length": "12abc"}

    async def post(client: httpx.AsyncClient) -> httpx.Response:
        request = client.build_request("POST", "/webhooks/enode", content=BODY)
        request.headers.update(headers)
        return await client.send(request)

    assert receiver.run(post).status_code == 400
    assert receiver.nothing_stored()


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"<html>oops</html>", "invalid_json"), (b'{"event":"x"}', "not_an_array"), (b"[]", "empty_batch")],
)
def test_authentic_but_unusable_content_is_200_and_quarantined(
    receiver: InProcessReceiver, body: bytes, reason: str
) -> None:
    response = receiver.post(body, signed(body, "q1"))
    assert (response.status_code, response.json()) == (200, {"outcome": "quarantined"})
    [(_, fields)] = receiver.redis.xrange(keys.QUARANTINE_STREAM)
    assert (fields[b"d"], fields[b"b"], fields[b"reason"]) == (b"q1", body, reason.encode())
    assert fields[b"at"].endswith(b"Z")
    assert receiver.ingest_count() == 0


@pytest.mark.parametrize(
    "body",
    [b'[{"event":"user:vehicle:updated","version":"2031-01-01"}]', b"[1,2]", b'[{"version":"2024-10-01"}]'],
)
def test_events_the_worker_quarantines_one_by_one_are_enqueued(receiver: InProcessReceiver, body: bytes) -> None:
    """No object, no name, an unknown version: the worker quarantines each such event alone, and the others
    of its delivery go on (see test_worker_ingest)."""
    response = receiver.post(body, signed(body, "q1"))
    assert (response.status_code, response.json()) == (200, {"outcome": "accepted"})
    assert receiver.ingest_count() == 1
    assert not receiver.redis.exists(keys.QUARANTINE_STREAM)


HEARTBEAT = b'{"event":"system:heartbeat","version":"2024-10-01","createdAt":"2025-03-14T18:30:00.000Z"'


def test_a_fractional_pending_events_beside_a_plug_in_is_recorded_as_written(receiver: InProcessReceiver) -> None:
    """Enode's spec types pendingEvents as a number >= 0: 0.5 is a heartbeat, not a reason to quarantine."""
    body = BODY[:-1] + b"," + HEARTBEAT + b',"pendingEvents":0.5}]'
    response = receiver.post(body, signed(body, "hb-half"))
    assert (response.status_code, response.json()) == (200, {"outcome": "accepted"})
    assert receiver.redis.hget(keys.HEARTBEAT, "pending_events") == b"0.5"
    assert _sample(receiver, "plugwatch_enode_pending_events") == 0.5
    assert receiver.ingest_count() == 1
    assert not receiver.redis.exists(keys.QUARANTINE_STREAM)


@pytest.mark.parametrize("pending", [b"-1", b'"3"', b"null", b"true"])
def test_a_bad_heartbeat_beside_a_plug_in_is_quarantined_alone(receiver: InProcessReceiver, pending: bytes) -> None:
    body = BODY[:-1] + b"," + HEARTBEAT + b',"pendingEvents":' + pending + b"}]"
    response = receiver.post(body, signed(body, "hb-bad"))
    assert (response.status_code, response.json()) == (200, {"outcome": "accepted"})
    assert receiver.ingest_count() == 1
    [(_, fields)] = receiver.redis.xrange(keys.QUARANTINE_STREAM)
    assert (fields[b"d"], fields[b"b"], fields[b"reason"], fields[b"event_index"]) == (
        b"hb-bad", b"[" + HEARTBEAT + b',"pendingEvents":' + pending + b"}]", b"invalid_heartbeat", b"1")
    assert not receiver.redis.exists(keys.HEARTBEAT)
    assert _sample(receiver, "plugwatch_receiver_quarantined_events_total", reason="invalid_heartbeat") == 1


def test_a_delivery_of_one_bad_heartbeat_is_quarantined(receiver: InProcessReceiver) -> None:
    body = b"[" + HEARTBEAT + b"}]"
    assert receiver.post(body, signed(body, "hb-none")).json() == {"outcome": "quarantined"}
    [(_, fields)] = receiver.redis.xrange(keys.QUARANTINE_STREAM)
    assert (fields[b"reason"], fields[b"event_index"]) == (b"invalid_heartbeat", b"0")
    assert receiver.ingest_count() == 0


@pytest.mark.parametrize("levels", [1000, 5000, 100_000])
def test_any_depth_within_the_body_limit_is_stored_never_a_5xx(levels: int) -> None:
    """msgspec raises RecursionError near 1000 levels, orjson refuses 1024: the delivery is still stored,
    the deep element beside a plug-in goes to the worker, which quarantines it alone."""
    receiver = InProcessReceiver()
    body = BODY[:-1] + b"," + b"[" * levels + b"]" * levels + b"]"
    response = receiver.post(body, signed(body, f"deep-{levels}"))
    assert (response.status_code, response.json()) == (200, {"outcome": "accepted"})
    [(_, fields)] = receiver.redis.xrange(keys.INGEST_STREAM)
    assert fields[b"b"] == body
    whole = b"{" * levels + b"}" * levels
    response = receiver.post(whole, signed(whole, f"deep-object-{levels}"))
    assert (response.status_code, response.json()) == (200, {"outcome": "quarantined"})


def test_invalid_utf8_in_an_envelope_field_is_stored_never_a_5xx(receiver: InProcessReceiver) -> None:
    """msgspec raises UnicodeDecodeError (not its DecodeError) for it: the worker quarantines that event alone."""
    body = BODY[:-1] + b',{"event":"user:vehicle:updated","version":"2024-10-01","createdAt":"\xff"}]'
    response = receiver.post(body, signed(body, "utf8"))
    assert (response.status_code, response.json()) == (200, {"outcome": "accepted"})
    assert receiver.ingest_count() == 1


def test_a_heartbeat_records_pending_events_and_time(receiver: InProcessReceiver) -> None:
    body = orjson.dumps([{"event": "system:heartbeat", "version": "2024-10-01", "pendingEvents": 7,
                          "createdAt": "2025-03-14T18:30:00.000Z"}])
    response = receiver.post(body, signed(body, "hb1"))
    assert (response.status_code, response.json()) == (200, {"outcome": "heartbeat"})
    assert receiver.redis.hget(keys.HEARTBEAT, "pending_events") == b"7"
    assert receiver.ingest_count() == 0
    assert _sample(receiver, "plugwatch_enode_pending_events") == 7
    age = _sample(receiver, "plugwatch_enode_heartbeat_age_seconds")
    assert age is not None
    assert 0 <= age < 60


def test_the_webhook_test_event_is_200(receiver: InProcessReceiver) -> None:
    body = b'[{"event":"enode:webhook:test","createdAt":"2025-03-14T18:31:07.221Z","version":"2024-10-01"}]'
    response = receiver.post(body, signed(body, "t1"))
    assert (response.status_code, response.json()) == (200, {"outcome": "test"})
    assert receiver.ingest_count() == 0


def test_redis_down_is_503_and_leaves_no_dedupe_mark(receiver: InProcessReceiver) -> None:
    """A failed store must not mark the delivery as seen: Enode's retry is then accepted."""
    receiver.server.connected = False
    response = receiver.post(BODY, signed(BODY, "retry-me"))
    assert (response.status_code, response.json()) == (503, {"outcome": "unavailable"})
    receiver.server.connected = True
    assert receiver.nothing_stored()
    assert receiver.post(BODY, signed(BODY, "retry-me")).json() == {"outcome": "accepted"}
    assert receiver.ingest_count() == 1


def test_other_methods_on_the_webhook_are_405(receiver: InProcessReceiver) -> None:
    assert receiver.get("/webhooks/enode").status_code == 405


def test_healthz_needs_no_redis(receiver: InProcessReceiver) -> None:
    receiver.server.connected = False
    assert receiver.get("/healthz").status_code == 200


def test_readyz_follows_redis(receiver: InProcessReceiver) -> None:
    assert receiver.get("/readyz").status_code == 200
    receiver.server.connected = False
    assert receiver.get("/readyz").status_code == 503


def test_metrics_name_every_outcome_and_reason(receiver: InProcessReceiver) -> None:
    receiver.post(BODY, signed(BODY))
    text = receiver.get("/metrics").text
    for outcome in ("accepted", "duplicate", "quarantined", "heartbeat", "test", "unauthorized", "too_large",
                    "unavailable", "bad_request"):
        assert f'plugwatch_receiver_requests_total{{outcome="{outcome}"}}' in text
    for reason in ("missing", "malformed", "mismatch"):
        assert f'plugwatch_receiver_signature_failures_total{{reason="{reason}"}}' in text
    assert _sample(receiver, "plugwatch_receiver_enqueue_seconds_count") == 1
    assert _sample(receiver, "plugwatch_queue_depth", queue="ingest") == 1
    assert _sample(receiver, "plugwatch_quarantine_entries") == 0


def test_metrics_still_answer_when_redis_is_down(receiver: InProcessReceiver) -> None:
    receiver.server.connected = False
    response = receiver.get("/metrics")
    assert response.status_code == 200
    assert _sample(receiver, "plugwatch_redis_up", text=response.text) == 0


def test_two_apps_have_separate_registries() -> None:
    first, second = InProcessReceiver(), InProcessReceiver()
    first.post(BODY, signed(BODY))
    assert _sample(first, "plugwatch_receiver_requests_total", outcome="accepted") == 1
    assert _sample(second, "plugwatch_receiver_requests_total", outcome="accepted") == 0


def _sample(receiver: InProcessReceiver, name: str, text: str | None = None, **labels: str) -> float | None:
    text = text if text is not None else receiver.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


class SilentOnScripts:
    """A fake Redis that answers the connection handshake (+OK) but never a script call, and records the
    delivery id of every EVALSHA that reaches it (a minimal RESP reader: arrays of bulk strings)."""

    def __init__(self) -> None:
        self.script_calls: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                command = await self._command(reader)
                if command[0].upper() == b"EVALSHA":
                    self.script_calls.append(command[3 + int(command[2])])  # the first ARGV: the delivery id
                else:
                    writer.write(b"+OK\r\n")
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    @staticmethod
    async def _command(reader: asyncio.StreamReader) -> list[bytes]:
        header = await reader.readuntil(b"\r\n")
        assert header.startswith(b"*"), header
        parts = []
        for _ in range(int(header[1:-2])):
            length = int((await reader.readuntil(b"\r\n"))[1:-2])
            parts.append((await reader.readexactly(length + 2))[:-2])
        return parts


def test_every_caller_behind_a_silent_redis_gets_its_503_and_a_late_caller_is_never_sent() -> None:
    """1,200 deliveries queue behind pipelines of 128 that never answer (the batcher gives each pipeline half
    the budget). Each caller's own deadline must answer it 503 and drop its call before it is sent: without
    that deadline every one of them is sent, pipeline after pipeline (the tenth 4.5 budgets after the first),
    long after its budget was spent. A 2 s budget keeps this true however slowly the callers are started."""
    fake = SilentOnScripts()

    async def main() -> list[int]:
        server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
        url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
        connection = redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        settings = Settings(process=ProcessSettings(redis_url=url, redis_timeout_seconds=2),
                            receiver=ReceiverSettings(enode_webhook_secrets=(TEST_SECRET,)))
        app = create_app(settings, redis=connection, sync_redis=fakeredis.FakeRedis())

        async def one(client: httpx.AsyncClient, i: int) -> int:
            response = await client.post("/webhooks/enode", content=BODY, headers=signed(BODY, f"dlv-{i:05d}"))
            return response.status_code

        async with server, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
            await connection.ping()  # connected before the flood (the fake answers +OK to the handshake)
            statuses = await asyncio.gather(*(one(client, i) for i in range(1200)))
            await asyncio.sleep(1.1)  # the flusher ends its last, abandoned pipeline
            await connection.aclose(close_connection_pool=True)
        return statuses

    statuses = asyncio.run(main())
    assert statuses == [503] * 1200
    sent = set(fake.script_calls)
    assert sent, "the fake saw script calls: the test exercises the pipelines"
    assert sent <= {f"dlv-{i:05d}".encode() for i in range(1200)}
    assert len(sent) < 1200, "callers past their deadline were still sent to Redis"
