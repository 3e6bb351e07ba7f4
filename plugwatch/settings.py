"""Settings: one frozen object made of one sub-configuration per part of plugwatch, built from the environment.

    Settings.from_env(environ) -> Settings     the one place plugwatch reads its configuration
    read(environ, name)                        one variable alone (the CLI's log format, before any command)
    VARIABLES                                  every variable: its name, the field it sets, its parser

    Settings
    ├── process    ProcessSettings   every process: Redis, its budget, logs; a worker's metrics port and pump
    ├── receiver   ReceiverSettings  POST /webhooks/enode: Enode's secrets, port, body limit, dedupe window,
    │                                slow clients (PLUGWATCH_RECEIVER_*)
    ├── core       CoreSettings      the rules' two tunables (the worker hands them to its core as CoreConfig)
    ├── ingest     IngestSettings    the worker's ingest drain (PLUGWATCH_INGEST_*)
    ├── delivery   DeliverySettings  downstream URLs, their signing key, retries (PLUGWATCH_DELIVERY_*)
    └── enode      EnodeSettings     the optional Enode API client

Each composition root (receiver, worker, `plugwatch` command) builds one `Settings` at start-up and passes it
down; nothing else reads the environment. A missing or unusable value raises `SettingsError` naming the
variable, so a bad deploy fails at boot rather than at the first webhook. Defaults are the fields' defaults;
the README's configuration table names exactly the variables of `VARIABLES` (a test checks it).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plugwatch import keys, redis_urls
from plugwatch.partitions import MAX_PARTITIONS
from plugwatch.urls import webhook_url_problem

SANDBOX_API_URL = "https://enode-api.sandbox.enode.io"
SANDBOX_TOKEN_URL = "https://oauth.sandbox.enode.io/oauth2/token"  # noqa: S105 (a URL)

# Values people paste from docs or templates; refusing them keeps a demo secret out of production.
_PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "secret", "example-secret", "your-secret", "placeholder", "xxx", "todo", "none"}
)
MIN_SECRET_LENGTH = 16
LOG_FORMATS = ("json", "console", "auto")


class SettingsError(ValueError):
    """A configuration value is missing or unusable; the message names the variable."""


@dataclass(frozen=True)
class ProcessSettings:
    """What every process is run with (the worker's metrics port and pump interval too)."""

    redis_url: str = "redis://localhost:6379/0"
    rq_redis_url: str = ""  # RQ's queues and jobs; "" (RQ_REDIS_URL unset): the Redis of `redis_url`
    redis_timeout_seconds: float = 1.0  # the longest a delivery waits for Redis before a 503; tools wait ≥ 5 s
    log_format: str = "auto"  # "json", "console" or "auto" (console on a TTY)
    metrics_port: int = 9100  # a worker's Prometheus port; 0: off
    pump_interval_seconds: float = 1.0  # how often a worker re-arms drains (crash recovery)
    redis_socket_timeout_seconds: float = 10.0  # the longest a worker's or a command's Redis call waits
    worker_ttl_seconds: int = 60  # a worker's RQ registration; RQ blocks on its queues 15 s less than this
    worker_shutdown_grace_seconds: float = 20.0  # after SIGTERM a worker exits within this, Redis or not
    partitions: int = 1  # PLUGWATCH_PARTITIONS: how plugwatch's data is split by user (plugwatch.partitions)

    @property
    def queues_url(self) -> str:
        """The URL of the Redis holding RQ's queues, jobs and dead letters (RQ_REDIS_URL, else REDIS_URL)."""
        return self.rq_redis_url or self.redis_url

    @property
    def queues_apart(self) -> bool:
        """RQ has a Redis of its own (RQ_REDIS_URL names another URL than REDIS_URL)."""
        return self.queues_url != self.redis_url


@dataclass(frozen=True)
class ReceiverSettings:
    enode_webhook_secrets: tuple[str, ...] = ()  # new first, then old during a rotation
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    dedupe_ttl_seconds: int = 72 * 3600  # the dedupe window
    dedupe_bucket_seconds: int = 24 * 3600  # marks are kept in buckets this wide (plugwatch.dedupe_marks)
    # Slow clients (enforced by `python -m receiver`, see receiver/connections.py)
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    max_connections: int = 2048
    # Replicas that must hold a delivery (Redis WAIT) before it is answered 200; 0: the primary's word is enough
    ack_replicas: int = 0


@dataclass(frozen=True)
class CoreSettings:
    """What the pure core's rules depend on (`worker.core.CoreConfig`, built from these by the worker)."""

    action_memory_seconds: int = 72 * 3600  # terminal actions are recognised as repeats this long (receipt time)
    max_clock_skew_seconds: int = 300  # Enode timestamps further ahead of their receipt are clamped to it


@dataclass(frozen=True)
class IngestSettings:
    """How an ingest drain job behaves (see `worker.ingest.drain`)."""

    batch_entries: int = 200  # ingest entries (deliveries) read and committed together
    budget_seconds: float = 5.0  # a drain job stops after this long and re-arms a successor
    idle_wait_ms: int = 500  # an emptied drain waits this long for the next delivery before it ends (0: no wait)
    claim_idle_ms: int = 15_000  # entries pending this long belong to a dead drainer: claim them
    max_deliveries: int = 5  # an entry claimed more often than this is quarantined as poison
    # A running drain keeps its armed key alive this long (crash recovery time); shorter than an arming's
    # `plugwatch.ingest_arming.ARMED_TTL_MS`, which is how the pump tells an arming no drain took up.
    armed_ttl_ms: int = 20_000
    max_drainers: int = 4  # concurrent drain jobs under a backlog (one per worker process at most)
    consumer_idle_ms: int = 3_600_000  # forget consumer-group members idle this long with nothing pending


@dataclass(frozen=True)
class DeliverySettings:
    """Downstream delivery (seconds unless noted; see `worker.delivery`)."""

    downstream_urls: tuple[str, ...] = ()
    downstream_key: bytes | None = field(default=None, repr=False)  # the bytes after whsec_, base64-decoded
    # How long an event is retried, counted from its first failed attempt; then it is dead-lettered, together
    # with every event that has waited in the URL's outbox longer than that (the URL failed all that time).
    max_age_seconds: float = 24 * 3600.0
    connect_timeout: float = 5.0  # per attempt (also the pool wait)
    read_timeout: float = 15.0  # per attempt (also the write timeout); the base a slow URL's is raised from
    # After an attempt timed out, the URL's read timeout doubles up to this (see `worker.delivery.slowness`);
    # equal to the read timeout turns that off. Unset: 120 s, or the read timeout if that is longer.
    read_timeout_max: float = 120.0
    slow_reset: float = 600.0  # a slow URL's raised read timeout goes back to the base after this long within it
    backoff_base: float = 1.0  # first retry delay; doubles per attempt, equal jitter
    backoff_max: float = 600.0
    retry_after_max: float = 3600.0  # cap applied to a sink's Retry-After
    # A drainer waits out pauses up to this long itself; a longer pause releases the URL and the pump resumes it.
    inline_wait_max: float = 5.0
    batch_size: int = 50  # outbox entries read per round trip (a count)
    # POSTs in flight per URL at most (never two of one vehicle at once; see `worker.delivery.flight`).
    concurrency: int = 16
    # A drainer that emptied its outbox keeps the URL's lease this long, waiting (a blocking read) for the next
    # events, so a steady flow is delivered as committed, without an arming, RQ job and drainer per commit.
    idle_wait: float = 0.5
    dead_letter_ttl: int = 7 * 24 * 3600
    # `plugwatch:events` keeps about this many of the newest events (XADD MAXLEN ~): what `events replay` can send
    events_stream_maxlen: int = keys.EVENTS_STREAM_MAXLEN
    # After `plugwatch subscriptions rotate-secret` (or a changed DOWNSTREAM_WEBHOOK_SECRET) the old key
    # signs too, beside the new one, this long.
    secret_overlap_seconds: float = 24 * 3600.0


@dataclass(frozen=True)
class EnodeSettings:
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    api_url: str = SANDBOX_API_URL
    token_url: str = SANDBOX_TOKEN_URL

    @property
    def api_configured(self) -> bool:
        return bool(self.client_id and self.client_secret)


# --- parsers: (variable, its stripped, non-empty value) -> the field's value, or SettingsError naming it ------
Parser = Callable[[str, str], Any]


def _text(_key: str, raw: str) -> str:
    return raw


def _number(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{key} must be a positive number, got {raw!r}")
    return value


def _seconds_or_off(key: str, raw: str) -> float:
    """A positive number of seconds, or 0 (off)."""
    try:
        if float(raw) == 0:
            return 0.0
    except ValueError:
        pass  # _number's error names the variable
    return _number(key, raw)


def _whole(key: str, raw: str) -> int:
    value = _number(key, raw)
    if value != int(value):
        raise SettingsError(f"{key} must be a whole number, got {value!r}")
    return int(value)


def _count(key: str, raw: str) -> int:
    """A positive number, its fraction dropped."""
    return int(_number(key, raw))


def _partitions(key: str, raw: str) -> int:
    value = _whole(key, raw)
    if not 1 <= value <= MAX_PARTITIONS:
        raise SettingsError(f"{key} must be a whole number from 1 to {MAX_PARTITIONS}, got {raw.strip()!r}")
    return value


def _whole_or_zero(key: str, raw: str) -> int:
    """A whole number >= 0."""
    if raw.strip() in ("0", "0.0"):
        return 0
    try:
        return _whole(key, raw)
    except SettingsError:
        raise SettingsError(f"{key} must be a whole number >= 0, got {raw!r}") from None


def _ms(key: str, raw: str) -> int:
    return int(1000 * _number(key, raw))


def _ms_or_off(key: str, raw: str) -> int:
    return int(1000 * _seconds_or_off(key, raw))


def _port(key: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{key} must be a port number (1-65535), got {raw!r}")
    return int(raw)


def _port_or_off(key: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) > 65535:
        raise SettingsError(f"{key} must be a port number or 0 (off), got {raw!r}")
    return int(raw)


def _worker_ttl(key: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) < 20:
        raise SettingsError(f"{key} must be a whole number of seconds, at least 20, got {raw!r}")
    return int(raw)


def _choice(*allowed: str) -> Parser:
    def parse(key: str, raw: str) -> str:
        if raw not in allowed:
            raise SettingsError(f"{key} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {raw!r}")
        return raw

    return parse


URL_FORMS = ("a redis://, rediss://, unix://, redis+sentinel://, redis+cluster:// or rediss+cluster:// URL such as "
             "redis://localhost:6379/0, redis+sentinel://host1:26379,host2:26379/mymaster/0 or "
             "redis+cluster://node1:6379,node2:6379")
QUEUE_URL_FORMS = ("a redis://, rediss://, unix:// or redis+sentinel:// URL such as "
                   "redis://localhost:6379/0 or redis+sentinel://host1:26379,host2:26379/mymaster/0")


def _redis_url(key: str, raw: str) -> str:
    """A URL `plugwatch.redis_urls` parses (a plain one as redis-py parses it: scheme, host, port, database)."""
    try:
        redis_urls.parse(raw)
    except ValueError as error:
        detail = "" if "scheme" in str(error) else f": {error}"
        raise SettingsError(f"{key} must be {URL_FORMS}, got {shown_redis_url(raw)!r}{detail}") from None
    return raw


def _queues_url(key: str, raw: str) -> str:
    """RQ's Redis: any URL but a cluster's (released RQ cannot run on Redis Cluster, rq/rq#1942)."""
    try:
        kind = redis_urls.parse(raw).kind
    except ValueError as error:
        detail = "" if "scheme" in str(error) else f": {error}"
        raise SettingsError(f"{key} must be {QUEUE_URL_FORMS}, got {shown_redis_url(raw)!r}{detail}") from None
    if kind is redis_urls.Kind.CLUSTER:
        raise SettingsError(f"{key} must be {QUEUE_URL_FORMS}, got {shown_redis_url(raw)!r}: RQ cannot run on "
                            "Redis Cluster (give it a Redis or a Sentinel service of its own)")
    return raw


def shown_redis_url(url: str) -> str:
    """`url` fit to print: a password in it replaced by `…`."""
    return redis_urls.shown(url)


def _api_url(example: str) -> Parser:
    def parse(key: str, raw: str) -> str:
        if problem := webhook_url_problem(raw):
            raise SettingsError(f"{key} must be an https:// URL such as {example}, got {raw!r}: {problem}")
        return raw

    return parse


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _webhook_urls(key: str, raw: str) -> tuple[str, ...]:
    urls = _csv(raw)
    for url in urls:
        if problem := webhook_url_problem(url):
            raise SettingsError(f"{key} has an unusable URL {url!r}: {problem}")
    return urls


def _enode_secrets(key: str, raw: str) -> tuple[str, ...]:
    secrets = _csv(raw)
    if not secrets:
        raise SettingsError(_missing_enode_secret(key))
    for secret in secrets:
        if secret.lower() in _PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"{key} holds a placeholder or a secret shorter than {MIN_SECRET_LENGTH} characters; "
                "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
            )
    return secrets


def _missing_enode_secret(key: str) -> str:
    return f"{key} is required: the secret given to Enode when the webhook was created"


def whsec_key(key: str, raw: str) -> bytes:
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
class Variable:
    """One environment variable: the `section.field` of Settings it sets, and how its text is parsed."""

    name: str
    section: str
    field: str
    parse: Parser


VARIABLES: tuple[Variable, ...] = (
    Variable("REDIS_URL", "process", "redis_url", _redis_url),
    Variable("RQ_REDIS_URL", "process", "rq_redis_url", _queues_url),
    Variable("PLUGWATCH_PARTITIONS", "process", "partitions", _partitions),
    Variable("PLUGWATCH_REDIS_TIMEOUT_SECONDS", "process", "redis_timeout_seconds", _number),
    Variable("PLUGWATCH_LOG_FORMAT", "process", "log_format", _choice(*LOG_FORMATS)),
    Variable("PLUGWATCH_METRICS_PORT", "process", "metrics_port", _port_or_off),
    Variable("PLUGWATCH_PUMP_INTERVAL_SECONDS", "process", "pump_interval_seconds", _number),
    Variable("PLUGWATCH_REDIS_SOCKET_TIMEOUT_SECONDS", "process", "redis_socket_timeout_seconds", _number),
    Variable("PLUGWATCH_WORKER_TTL_SECONDS", "process", "worker_ttl_seconds", _worker_ttl),
    Variable("PLUGWATCH_WORKER_SHUTDOWN_GRACE_SECONDS", "process", "worker_shutdown_grace_seconds", _number),
    Variable("ENODE_WEBHOOK_SECRET", "receiver", "enode_webhook_secrets", _enode_secrets),
    Variable("PORT", "receiver", "port", _port),
    Variable("PLUGWATCH_MAX_BODY_BYTES", "receiver", "max_body_bytes", _whole),
    Variable("PLUGWATCH_DEDUPE_TTL_SECONDS", "receiver", "dedupe_ttl_seconds", _whole),
    Variable("PLUGWATCH_DEDUPE_BUCKET_SECONDS", "receiver", "dedupe_bucket_seconds", _whole),
    Variable("PLUGWATCH_ACK_REPLICAS", "receiver", "ack_replicas", _whole_or_zero),
    Variable("PLUGWATCH_RECEIVER_HEADER_TIMEOUT_SECONDS", "receiver", "header_timeout_seconds", _number),
    Variable("PLUGWATCH_RECEIVER_BODY_TIMEOUT_SECONDS", "receiver", "body_timeout_seconds", _number),
    Variable("PLUGWATCH_RECEIVER_MAX_CONNECTIONS", "receiver", "max_connections", _whole),
    Variable("PLUGWATCH_ACTION_MEMORY_SECONDS", "core", "action_memory_seconds", _whole),
    Variable("PLUGWATCH_MAX_CLOCK_SKEW_SECONDS", "core", "max_clock_skew_seconds", _whole),
    Variable("PLUGWATCH_INGEST_BATCH", "ingest", "batch_entries", _count),
    Variable("PLUGWATCH_INGEST_BUDGET_SECONDS", "ingest", "budget_seconds", _number),
    Variable("PLUGWATCH_INGEST_IDLE_WAIT_SECONDS", "ingest", "idle_wait_ms", _ms_or_off),
    Variable("PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS", "ingest", "claim_idle_ms", _ms),
    Variable("PLUGWATCH_INGEST_MAX_DELIVERIES", "ingest", "max_deliveries", _count),
    Variable("PLUGWATCH_INGEST_ARMED_TTL_SECONDS", "ingest", "armed_ttl_ms", _ms),
    Variable("PLUGWATCH_INGEST_MAX_DRAINERS", "ingest", "max_drainers", _count),
    Variable("PLUGWATCH_INGEST_CONSUMER_IDLE_SECONDS", "ingest", "consumer_idle_ms", _ms),
    Variable("DOWNSTREAM_WEBHOOK_URLS", "delivery", "downstream_urls", _webhook_urls),
    Variable("DOWNSTREAM_WEBHOOK_SECRET", "delivery", "downstream_key", whsec_key),
    Variable("PLUGWATCH_DELIVERY_MAX_AGE_SECONDS", "delivery", "max_age_seconds", _number),
    Variable("PLUGWATCH_DELIVERY_CONNECT_TIMEOUT_SECONDS", "delivery", "connect_timeout", _number),
    Variable("PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS", "delivery", "read_timeout", _number),
    Variable("PLUGWATCH_DELIVERY_READ_TIMEOUT_MAX_SECONDS", "delivery", "read_timeout_max", _number),
    Variable("PLUGWATCH_DELIVERY_SLOW_RESET_SECONDS", "delivery", "slow_reset", _number),
    Variable("PLUGWATCH_DELIVERY_BACKOFF_BASE_SECONDS", "delivery", "backoff_base", _number),
    Variable("PLUGWATCH_DELIVERY_BACKOFF_MAX_SECONDS", "delivery", "backoff_max", _number),
    Variable("PLUGWATCH_DELIVERY_RETRY_AFTER_MAX_SECONDS", "delivery", "retry_after_max", _number),
    Variable("PLUGWATCH_DELIVERY_INLINE_WAIT_SECONDS", "delivery", "inline_wait_max", _number),
    Variable("PLUGWATCH_DELIVERY_IDLE_WAIT_SECONDS", "delivery", "idle_wait", _seconds_or_off),
    Variable("PLUGWATCH_DELIVERY_BATCH_SIZE", "delivery", "batch_size", _count),
    Variable("PLUGWATCH_DELIVERY_CONCURRENCY", "delivery", "concurrency", _whole),
    Variable("PLUGWATCH_DEAD_LETTER_TTL_SECONDS", "delivery", "dead_letter_ttl", _count),
    Variable("PLUGWATCH_EVENTS_STREAM_MAXLEN", "delivery", "events_stream_maxlen", _whole),
    Variable("PLUGWATCH_SECRET_OVERLAP_SECONDS", "delivery", "secret_overlap_seconds", _number),
    Variable("ENODE_CLIENT_ID", "enode", "client_id", _text),
    Variable("ENODE_CLIENT_SECRET", "enode", "client_secret", _text),
    Variable("ENODE_API_URL", "enode", "api_url", _api_url(SANDBOX_API_URL)),
    Variable("ENODE_TOKEN_URL", "enode", "token_url", _api_url(SANDBOX_TOKEN_URL)),
)


@dataclass(frozen=True)
class Settings:
    """Everything a plugwatch process is configured with (see README, *Configuration*)."""

    process: ProcessSettings = field(default_factory=ProcessSettings)
    receiver: ReceiverSettings = field(default_factory=ReceiverSettings)
    core: CoreSettings = field(default_factory=CoreSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    enode: EnodeSettings = field(default_factory=EnodeSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, require_enode_secret: bool = True) -> Settings:
        """Build settings from `environ`; raises `SettingsError` naming the first bad variable.

        An empty or unset variable keeps its field's default. `require_enode_secret=False` is for processes
        that never verify Enode signatures (the worker, the CLI); a secret that is given is checked anyway.
        """
        values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for variable in VARIABLES:
            raw = environ.get(variable.name, "").strip()
            if raw:
                values[variable.section][variable.field] = variable.parse(variable.name, raw)
        if require_enode_secret and not values["receiver"].get("enode_webhook_secrets"):
            raise SettingsError(_missing_enode_secret("ENODE_WEBHOOK_SECRET"))
        if values["delivery"].get("downstream_urls") and "downstream_key" not in values["delivery"]:
            raise SettingsError("DOWNSTREAM_WEBHOOK_SECRET is required when DOWNSTREAM_WEBHOOK_URLS is set "
                                "(unsigned delivery)")
        _read_timeout_max(values["delivery"])
        _cluster_needs(values["process"])
        _both_credentials(values["enode"])
        _dedupe_bucket(values["receiver"])
        return cls(**{name: section(**values[name]) for name, section in SECTIONS.items()})


SECTIONS: dict[str, Callable[..., Any]] = {
    "process": ProcessSettings, "receiver": ReceiverSettings, "core": CoreSettings, "ingest": IngestSettings,
    "delivery": DeliverySettings, "enode": EnodeSettings,
}


def _read_timeout_max(delivery: dict[str, Any]) -> None:
    """The read timeout's ceiling defaults to at least the read timeout, and may not be below it."""
    read_timeout = delivery.get("read_timeout", DeliverySettings.read_timeout)
    ceiling = delivery.setdefault("read_timeout_max", max(DeliverySettings.read_timeout_max, read_timeout))
    if ceiling < read_timeout:
        raise SettingsError(f"PLUGWATCH_DELIVERY_READ_TIMEOUT_MAX_SECONDS ({ceiling:g}) must be at least "
                            f"PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS ({read_timeout:g})")


def _cluster_needs(process: dict[str, Any]) -> None:
    """A cluster REDIS_URL holds the data only: RQ needs a Redis of its own, and the data at least two
    partitions (with one, no key carries a hash tag, so a Lua call's keys would span slots)."""
    url = process.get("redis_url", ProcessSettings.redis_url)
    if redis_urls.parse(url).kind is not redis_urls.Kind.CLUSTER:
        return
    if not process.get("rq_redis_url"):
        raise SettingsError("RQ_REDIS_URL is required when REDIS_URL is a Redis Cluster (RQ cannot run on a "
                            "cluster: give it a Redis or a Sentinel service of its own)")
    if process.get("partitions", ProcessSettings.partitions) < 2:
        raise SettingsError("PLUGWATCH_PARTITIONS must be at least 2 when REDIS_URL is a Redis Cluster "
                            "(a few per primary, e.g. 16; see README, Partitions)")


def _both_credentials(enode: dict[str, Any]) -> None:
    """Enode API credentials come in pairs: one alone is a deploy that lost the other."""
    for given, missing in (("client_id", "ENODE_CLIENT_SECRET"), ("client_secret", "ENODE_CLIENT_ID")):
        if given in enode and len(enode.keys() & {"client_id", "client_secret"}) == 1:
            raise SettingsError(f"{missing} is required when ENODE_{given.upper()} is set (set both, or neither)")


def _dedupe_bucket(receiver: dict[str, Any]) -> None:
    """A bucket no wider than the window (a look-up checks window / bucket + 1 of them)."""
    window = receiver.get("dedupe_ttl_seconds", ReceiverSettings.dedupe_ttl_seconds)
    bucket = receiver.setdefault("dedupe_bucket_seconds", min(ReceiverSettings.dedupe_bucket_seconds, window))
    if bucket > window:
        raise SettingsError(f"PLUGWATCH_DEDUPE_BUCKET_SECONDS ({bucket}) must be at most "
                            f"PLUGWATCH_DEDUPE_TTL_SECONDS ({window})")


_BY_NAME = {variable.name: variable for variable in VARIABLES}


def read(environ: Mapping[str, str], name: str) -> Any:
    """One variable's value by the same rules as `Settings.from_env` (its field's default when unset)."""
    variable = _BY_NAME[name]
    raw = environ.get(name, "").strip()
    if not raw:
        return getattr(SECTIONS[variable.section](), variable.field)
    return variable.parse(name, raw)
