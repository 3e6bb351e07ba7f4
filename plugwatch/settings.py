"""Settings: one frozen object built from the environment, failing fast.

Every process (receiver, worker, CLI) builds exactly one `Settings` with `Settings.from_env(os.environ)`
at start-up and passes it down; nothing else reads the environment.  A missing or unusable value raises
`SettingsError` naming the variable, so a bad deploy fails at boot rather than at the first webhook.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from plugwatch.urls import webhook_url_problem

SANDBOX_API_URL = "https://enode-api.sandbox.enode.io"
SANDBOX_TOKEN_URL = "https://oauth.sandbox.enode.io/oauth2/token"  # noqa: S105 (a URL)

# Values people paste from docs or templates; refusing them keeps a demo secret out of production.
_PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "secret", "example-secret", "your-secret", "placeholder", "xxx", "todo", "none"}
)
MIN_SECRET_LENGTH = 16


class SettingsError(ValueError):
    """A configuration value is missing or unusable; the message names the variable."""


def _split_csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def positive_float(environ: Mapping[str, str], key: str, default: float) -> float:
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{key} must be a positive number, got {raw!r}")
    return value


def seconds_or_off(environ: Mapping[str, str], key: str, default: float) -> float:
    """A positive number of seconds, or 0 (off); anything else fails naming `key`."""
    raw = environ.get(key, "").strip()
    try:
        if raw and float(raw) == 0:
            return 0.0
    except ValueError:
        pass  # positive_float's error names the variable
    return positive_float(environ, key, default)


def positive_int(environ: Mapping[str, str], key: str, default: int) -> int:
    value = positive_float(environ, key, default)
    if value != int(value):
        raise SettingsError(f"{key} must be a whole number, got {value!r}")
    return int(value)


def _enode_secrets(environ: Mapping[str, str]) -> tuple[str, ...]:
    key = "ENODE_WEBHOOK_SECRET"
    secrets = _split_csv(environ.get(key, ""))
    if not secrets:
        raise SettingsError(f"{key} is required: the secret given to Enode when the webhook was created")
    for secret in secrets:
        if secret.lower() in _PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"{key} holds a placeholder or a secret shorter than {MIN_SECRET_LENGTH} characters; "
                "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
            )
    return secrets


def _downstream_key(environ: Mapping[str, str], urls: tuple[str, ...]) -> bytes | None:
    key = "DOWNSTREAM_WEBHOOK_SECRET"
    raw = environ.get(key, "").strip()
    if not raw:
        if urls:
            raise SettingsError(f"{key} is required when DOWNSTREAM_WEBHOOK_URLS is set (unsigned delivery)")
        return None
    if not raw.startswith("whsec_"):
        raise SettingsError(f"{key} must look like whsec_<base64>")
    try:
        decoded = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{key} is not valid base64 after whsec_") from None
    if len(decoded) < 24:
        raise SettingsError(f"{key} must decode to at least 24 bytes")
    return decoded


@dataclass(frozen=True)
class Settings:
    """Everything a plugwatch process is configured with (see README, *Configuration*)."""

    redis_url: str = "redis://localhost:6379/0"
    enode_webhook_secrets: tuple[str, ...] = ()
    port: int = 8000
    downstream_urls: tuple[str, ...] = ()
    downstream_key: bytes | None = field(default=None, repr=False)
    enode_client_id: str | None = None
    enode_client_secret: str | None = field(default=None, repr=False)
    enode_api_url: str = SANDBOX_API_URL
    enode_token_url: str = SANDBOX_TOKEN_URL
    max_body_bytes: int = 1024 * 1024
    dedupe_ttl_seconds: int = 72 * 3600
    redis_timeout_seconds: float = 1.0
    delivery_max_age_seconds: float = 24 * 3600.0
    action_memory_seconds: int = 72 * 3600  # terminal actions are recognised as repeats this long (receipt time)
    max_clock_skew_seconds: int = 300  # Enode timestamps further ahead of their receipt are clamped to it
    log_format: str = "auto"  # "json", "console" or "auto" (console on a TTY)
    # Slow clients (enforced by `python -m receiver`, see receiver/connections.py)
    receiver_header_timeout_seconds: float = 10.0
    receiver_body_timeout_seconds: float = 30.0
    receiver_max_connections: int = 2048

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, require_enode_secret: bool = True) -> Settings:
        """Build settings from `environ`; raises `SettingsError` naming the first bad variable.

        `require_enode_secret=False` is for processes that never verify Enode signatures (the worker, CLI).
        """
        urls = _split_csv(environ.get("DOWNSTREAM_WEBHOOK_URLS", ""))
        for url in urls:
            if problem := webhook_url_problem(url):
                raise SettingsError(f"DOWNSTREAM_WEBHOOK_URLS has an unusable URL {url!r}: {problem}")
        secrets: tuple[str, ...] = ()
        if require_enode_secret or environ.get("ENODE_WEBHOOK_SECRET", "").strip():
            secrets = _enode_secrets(environ)
        log_format = environ.get("PLUGWATCH_LOG_FORMAT", "auto").strip() or "auto"
        if log_format not in {"json", "console", "auto"}:
            raise SettingsError(f"PLUGWATCH_LOG_FORMAT must be json, console or auto, got {log_format!r}")
        return cls(
            redis_url=environ.get("REDIS_URL", "").strip() or cls.redis_url,
            enode_webhook_secrets=secrets,
            port=positive_int(environ, "PORT", cls.port),
            downstream_urls=urls,
            downstream_key=_downstream_key(environ, urls),
            enode_client_id=environ.get("ENODE_CLIENT_ID", "").strip() or None,
            enode_client_secret=environ.get("ENODE_CLIENT_SECRET", "").strip() or None,
            enode_api_url=environ.get("ENODE_API_URL", "").strip() or SANDBOX_API_URL,
            enode_token_url=environ.get("ENODE_TOKEN_URL", "").strip() or SANDBOX_TOKEN_URL,
            max_body_bytes=positive_int(environ, "PLUGWATCH_MAX_BODY_BYTES", cls.max_body_bytes),
            dedupe_ttl_seconds=positive_int(environ, "PLUGWATCH_DEDUPE_TTL_SECONDS", cls.dedupe_ttl_seconds),
            redis_timeout_seconds=positive_float(
                environ, "PLUGWATCH_REDIS_TIMEOUT_SECONDS", cls.redis_timeout_seconds
            ),
            delivery_max_age_seconds=positive_float(
                environ, "PLUGWATCH_DELIVERY_MAX_AGE_SECONDS", cls.delivery_max_age_seconds
            ),
            action_memory_seconds=positive_int(
                environ, "PLUGWATCH_ACTION_MEMORY_SECONDS", cls.action_memory_seconds
            ),
            max_clock_skew_seconds=positive_int(
                environ, "PLUGWATCH_MAX_CLOCK_SKEW_SECONDS", cls.max_clock_skew_seconds
            ),
            log_format=log_format,
            receiver_header_timeout_seconds=positive_float(
                environ, "PLUGWATCH_RECEIVER_HEADER_TIMEOUT_SECONDS", cls.receiver_header_timeout_seconds),
            receiver_body_timeout_seconds=positive_float(
                environ, "PLUGWATCH_RECEIVER_BODY_TIMEOUT_SECONDS", cls.receiver_body_timeout_seconds),
            receiver_max_connections=positive_int(
                environ, "PLUGWATCH_RECEIVER_MAX_CONNECTIONS", cls.receiver_max_connections),
        )

    @property
    def enode_api_configured(self) -> bool:
        return bool(self.enode_client_id and self.enode_client_secret)
