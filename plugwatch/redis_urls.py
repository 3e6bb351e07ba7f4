"""What `REDIS_URL` may hold, parsed without I/O (`plugwatch.redis_clients` connects).

    parse(url) -> RedisUrl          raises ValueError saying what is wrong (settings name the variable)
    shown(url) -> str               the URL fit to print: a password replaced by `…`

    redis://[user:password@]host[:port][/db]        one Redis (rediss://: over TLS; unix://[…@]/path[?db=n])
    redis+sentinel://[user:password@]host:port[,host:port…]/<service-name>[/<db>]
                                                    the primary of <service-name>, as the sentinels say, and
                                                    followed across failovers (redis-py's SentinelConnectionPool)
    redis+cluster://[user:password@]host[:port][,host[:port]…][/]
                                                    a Redis Cluster, by some of its nodes (the seeds: any node
                                                    answering gives the whole map); for plugwatch's data only,
                                                    with PLUGWATCH_PARTITIONS >= 2 and RQ on a Redis of its own
                                                    (`plugwatch.settings` checks both)
    rediss+cluster://…[?ssl_ca_certs=…&ssl_cert_reqs=…&ssl_certfile=…&ssl_keyfile=…&ssl_check_hostname=…]
                                                    the same over TLS to every node; the query is redis-py's
                                                    TLS options (a CA bundle, `none`/`optional`/`required`, a
                                                    client certificate and key, `false` to skip the host name)

The credentials of a sentinel URL are those of the Redis servers behind the service (primary and replicas);
sentinels that want their own are given them as `?sentinel_username=…&sentinel_password=…` (redis-py's and
rq-dashboard's habit). A port left out is 26379. The query of a plain URL is redis-py's (e.g. `?ssl_cert_reqs=none`); a
sentinel URL takes no other query.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.connection import parse_url as parse_plain_url

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
CLUSTER_TLS_SCHEME = "rediss+cluster"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_PORT = 26379
REDIS_PORT = 6379
_SENTINEL_QUERY = frozenset({"sentinel_username", "sentinel_password"})
_TLS_QUERY = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_CERT_REQS = ("none", "optional", "required")


class Kind(enum.Enum):
    PLAIN = "plain"  # redis://, rediss://, unix://: one server
    SENTINEL = "sentinel"
    CLUSTER = "cluster"  # redis+cluster:// (rediss+cluster:// over TLS): the seed nodes of a Redis Cluster


@dataclass(frozen=True)
class RedisUrl:
    url: str  # as given
    kind: Kind
    nodes: tuple[tuple[str, int], ...] = ()  # the sentinels, or a cluster's seed nodes
    service: str = ""  # the sentinels' name for the primary
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: dict[str, str | bool] | None = None  # a cluster over TLS: redis-py's ssl_* options (None: no TLS)

    @property
    def client_tls(self) -> dict[str, Any]:
        """Keyword arguments of a redis-py client to a node: `ssl=True` and the URL's options, or none."""
        return {} if self.tls is None else {"ssl": True, **self.tls}

    @property
    def shown(self) -> str:
        return shown(self.url)

    @property
    def nodes_text(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.nodes)


def shown(url: str) -> str:
    """`url` fit to print: a password in it replaced by `…`."""
    return re.sub(r"//([^@/:]*):[^@/]*@", r"//\1:…@", url)


def parse(url: str) -> RedisUrl:
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in PLAIN_SCHEMES:
        parse_plain_url(url)  # type: ignore[no-untyped-call]  # as redis-py parses it when it connects
        return RedisUrl(url, Kind.PLAIN)
    if scheme == SENTINEL_SCHEME:
        return _sentinels(url)
    if scheme in (CLUSTER_SCHEME, CLUSTER_TLS_SCHEME):
        return _cluster(url, tls=scheme == CLUSTER_TLS_SCHEME)
    raise ValueError("unknown scheme")


def _cluster(url: str, *, tls: bool) -> RedisUrl:
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo)
    nodes = tuple(_node(text, REDIS_PORT) for text in hostlist.split(","))
    if parts.fragment or (parts.query and not tls):
        raise ValueError("a cluster URL takes no query (?…) but rediss+cluster://'s TLS options, and no fragment (#…)")
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a cluster has database 0 only: nothing may follow the nodes but '/'")
    return RedisUrl(url, Kind.CLUSTER, nodes, username=username, password=password,
                    tls=_tls_options(parts.query) if tls else None)


def _tls_options(query: str) -> dict[str, str | bool]:
    options: dict[str, str | bool] = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        value = values[-1]
        if name not in _TLS_QUERY:
            raise ValueError(f"unknown query option {name!r} (TLS options only: {', '.join(_TLS_QUERY)})")
        if name == "ssl_cert_reqs" and value not in _CERT_REQS:
            raise ValueError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, got {value!r}")
        if name == "ssl_check_hostname":
            if value.lower() not in ("true", "false"):
                raise ValueError(f"ssl_check_hostname must be true or false, got {value!r}")
            options[name] = value.lower() == "true"
        else:
            options[name] = value
    return options


def _sentinels(url: str) -> RedisUrl:
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo)
    nodes = tuple(_node(text, SENTINEL_PORT) for text in hostlist.split(","))
    query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
    if unknown := sorted(set(query) - _SENTINEL_QUERY):
        raise ValueError(f"unknown query option {unknown[0]!r} (only sentinel_username, sentinel_password)")
    if parts.fragment:
        raise ValueError("a URL fragment (#…) is not taken")
    path = [unquote(segment) for segment in parts.path.split("/")[1:]]
    if not path or not path[0]:
        raise ValueError("the service name is missing: …/<service-name>[/<db>] after the sentinels")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("after the service name only a database number may follow: …/<service-name>/<db>")
    return RedisUrl(url, Kind.SENTINEL, nodes, service=path[0], db=int(path[1]) if len(path) == 2 else 0,
                    username=username, password=password, sentinel_username=query.get("sentinel_username") or None,
                    sentinel_password=query.get("sentinel_password") or None)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    username, colon, password = userinfo.partition(":")
    return unquote(username) or None, unquote(password) if colon and password else None


def _node(text: str, default_port: int) -> tuple[str, int]:
    """`host[:port]` or `[v6]:port` of one node."""
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]/?#\s]+)(?::(\d*))?", text)
    if not match:
        raise ValueError(f"{text!r} is no host:port" if text else "a node's host:port is missing")
    host, port = match.group(1).strip("[]"), match.group(2)
    if port is not None and not (port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError(f"{text!r} has no valid port")
    return host, int(port) if port else default_port
