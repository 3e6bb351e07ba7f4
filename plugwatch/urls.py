"""Downstream webhook URLs: refuse one at the door if httpx could never send to it.  Pure.

    webhook_url_problem("http://h:abc/hook") -> "Invalid port: 'abc'"
    webhook_url_problem("https://example.com/hook") -> None

Parsed with `httpx.URL`, the parser the worker's sender uses, plus what httpx only finds out when it sends
(or what it leaves to the resolver, which raises `UnicodeError`, not an httpx error): a scheme other than
http/https, no host, a port outside 1-65535, a host that is neither a domain name nor an IP address.
Every entry point that takes a downstream URL (`DOWNSTREAM_WEBHOOK_URLS`, `plugwatch subscriptions add`) checks
it with this.
"""

from __future__ import annotations

import ipaddress
import re

import httpx

_HOST = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")  # labels of a domain name (IDNs arrive as xn--)


def webhook_url_problem(url: str) -> str | None:
    """Why `url` cannot receive webhooks, in a few words; None when it can."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        return str(error)
    if parsed.scheme not in {"http", "https"}:
        return "not an http:// or https:// URL"
    if not parsed.raw_host:
        return "no host"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"port {parsed.port} is outside 1-65535"
    return _host_problem(parsed.raw_host.decode("ascii", errors="replace"))


def _host_problem(host: str) -> str | None:
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"host {host!r} is not an IPv6 address"
        return None
    if not _HOST.fullmatch(host):
        return f"host {host!r} is not a domain name or an IP address"
    try:
        host.encode("idna")  # what the resolver does: empty or over-long labels fail here
    except UnicodeError:
        return f"host {host!r} has an empty or over-long label"
    return None
