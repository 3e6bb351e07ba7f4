"""Pure parts of the Enode client: configuration, backoff bounds, Retry-After parsing, path segments."""

from __future__ import annotations

import time
from email.utils import formatdate

import httpx
import pytest

from plugwatch.enode_api.client import EnodeClient, EnodeConfig, RetryPolicy, _retry_after, segment
from plugwatch.enode_api.errors import EnodeNotConfigured, EnodeProtocolError
from plugwatch.settings import EnodeSettings, Settings


@pytest.mark.parametrize(("client_id", "secret"), [(None, None), ("id", None), (None, "secret")])
def test_config_without_both_credentials_is_not_configured(client_id: str | None, secret: str | None) -> None:
    with pytest.raises(EnodeNotConfigured, match="ENODE_CLIENT_ID and ENODE_CLIENT_SECRET"):
        EnodeConfig.from_settings(Settings(enode=EnodeSettings(client_id=client_id, client_secret=secret)))


def test_config_from_settings_uses_the_settings_urls_and_default_version() -> None:
    config = EnodeConfig.from_settings(Settings(enode=EnodeSettings(client_id="id", client_secret="hush-4711",
                                                                    api_url="https://api.example/",
                                                                    token_url="https://t")))
    assert (config.api_url, config.token_url, config.api_version) == ("https://api.example", "https://t",
                                                                      "2024-10-01")
    assert "hush-4711" not in repr(config)


def test_the_client_constructor_does_no_io() -> None:
    """Building a client must not fetch a token (no I/O in constructors)."""
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: calls.append(request) or httpx.Response(500))
    config = EnodeConfig(client_id="id", client_secret="s", api_url="http://x", token_url="http://x/t")
    with httpx.Client(transport=transport) as http:
        EnodeClient(config, http)
    assert calls == []


@pytest.mark.parametrize("retry", [1, 2, 3, 4, 10])
def test_backoff_is_full_jitter_capped_at_max_delay(retry: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    ceiling = min(8.0, 0.5 * 2 ** (retry - 1))
    assert policy.backoff(retry, lambda: 0.0) == 0.0
    assert policy.backoff(retry, lambda: 0.999999) == pytest.approx(ceiling, rel=1e-5)


@pytest.mark.parametrize(("header", "expected"), [("2", 2.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0),
                                                   ("soon", None), ("", None)])
def test_retry_after_seconds(header: str, expected: float | None) -> None:
    headers = {"Retry-After": header} if header else {}
    assert _retry_after(httpx.Response(429, headers=headers)) == expected


def test_retry_after_as_an_http_date() -> None:
    header = formatdate(time.time() + 30, usegmt=True)
    delay = _retry_after(httpx.Response(429, headers={"Retry-After": header}))
    assert delay is not None
    assert 25 <= delay <= 31


def test_ids_are_quoted_as_one_path_segment() -> None:
    assert segment("../users/x?y=1") == "..%2Fusers%2Fx%3Fy%3D1"


def test_a_repeating_pagination_cursor_raises_instead_of_looking_complete() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3599})
        return httpx.Response(200, json={"data": [{"id": "v"}], "pagination": {"after": "same", "before": None}})

    config = EnodeConfig(client_id="id", client_secret="s", api_url="http://enode", token_url="http://enode/token")
    with httpx.Client(transport=httpx.MockTransport(answer)) as http, pytest.raises(EnodeProtocolError):
        list(EnodeClient(config, http).paginate("/vehicles"))
