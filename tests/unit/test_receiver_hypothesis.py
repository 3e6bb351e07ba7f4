"""Attacker-controlled headers and bodies never produce a 5xx (only 503 while Redis is down)."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugwatch.enode_signature import sign
from plugwatch.settings import ReceiverSettings, Settings
from tests.conftest import TEST_SECRET
from tests.support.receiver_app import InProcessReceiver

# Header values httpx can send (latin-1, no CR/LF/NUL), including near-misses of a valid signature.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=60)
bodies = st.binary(max_size=300) | st.sampled_from([
    b"[]", b"{}", b"null", b'[{"event":"system:heartbeat","version":"2024-10-01","pendingEvents":-1}]',
    b'[{"event":"user:vehicle:updated","version":"2024-10-01"}]', b'[{"event":1}]', b"[" * 5000,
])


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, bytes]]]:
    body = draw(bodies)
    signature = draw(st.one_of(
        st.just(sign(body, TEST_SECRET)),  # authentic: exercises classification and storage
        header_text,
        st.builds(lambda s: "sha1=" + s, header_text),
        st.just(sign(body, TEST_SECRET).upper()),
    ))
    headers = [("x-enode-signature", signature.encode("latin-1"))]
    for name in ("x-enode-delivery", "content-type", "x-enode-signature"):  # maybe a second signature
        if draw(st.booleans()):
            headers.append((name, draw(header_text).encode("latin-1")))
    return body, headers


def _post_all(receiver: InProcessReceiver, batch: list[tuple[bytes, list[tuple[str, bytes]]]]) -> list[int]:
    async def work(client: httpx.AsyncClient) -> list[int]:
        return [(await client.post("/webhooks/enode", content=body, headers=headers)).status_code
                for body, headers in batch]

    return receiver.run(work)


@given(batch=st.lists(requests(), min_size=1, max_size=5))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_request_gets_a_5xx(batch: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    receiver = InProcessReceiver(Settings(receiver=ReceiverSettings(enode_webhook_secrets=(TEST_SECRET,),
                                                                    max_body_bytes=4096)))
    for status in _post_all(receiver, batch):
        assert status in {200, 400, 401, 413}


@given(batch=st.lists(requests(), min_size=1, max_size=5))
@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_with_redis_down_the_only_5xx_is_503(batch: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    receiver = InProcessReceiver(Settings(receiver=ReceiverSettings(enode_webhook_secrets=(TEST_SECRET,),
                                                                    max_body_bytes=4096)))
    receiver.server.connected = False
    for status in _post_all(receiver, batch):
        assert status in {400, 401, 413, 503}
