"""The published event catalog (`schema/events.schema.json`) as a test oracle: every event a test receives —
at a sink, from `plugwatch:events`, from the core — is checked against it.

    check_event(body)                    bytes, str or dict; AssertionError naming the event and every mismatch
    schema_problems(body) -> [str]       the same, as a list (empty: valid)
    stream_events(connection) -> [dict]  `plugwatch:events`, oldest first, each checked
    stream_bodies(connection) -> [bytes] the same, the raw `event` fields
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import orjson
import redis
from jsonschema import Draft202012Validator

from plugwatch import keys

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"
EVENTS_SCHEMA = SCHEMA_DIR / "events.schema.json"
ASYNCAPI = SCHEMA_DIR / "asyncapi.yaml"


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EVENTS_SCHEMA.read_text())
    return loaded


def _validator_of(document: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(document, format_checker=Draft202012Validator.FORMAT_CHECKER)


@functools.cache
def _validator() -> Draft202012Validator:
    return _validator_of(schema())


@functools.cache
def _branches() -> dict[str, Draft202012Validator]:
    """A validator per event type: its definition with every `$ref` inlined. The top-level `oneOf`'s branches
    exclude each other by their `type` const, so an event of a known type is valid iff its branch holds; this
    is ~5x faster than the whole schema (jsonschema resolves refs slowly; every event of every test passes
    here) and its errors name the fields (the oneOf's say only "not valid under any")."""
    branches = {}
    for ref in schema()["oneOf"]:
        definition = _inline(ref, schema()["$defs"])
        branches[definition["properties"]["type"]["const"]] = _validator_of({"$schema": schema()["$schema"],
                                                                               **definition})
    return branches


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    inlined = {key: _inline(value, defs) for key, value in node.items() if key != "$ref"}
    ref = node.get("$ref")
    if isinstance(ref, str):  # only local `#/$defs/<name>` refs, with annotations (description) beside them
        return {**_inline(defs[ref.removeprefix("#/$defs/")], defs), **inlined}
    return inlined


def schema_problems(body: bytes | str | dict[str, Any]) -> list[str]:
    """Why `body` is not a plugwatch event by the published schema; empty when it is."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    return list(_bytes_problems(body)) if isinstance(body, bytes) else _problems(body)


@functools.lru_cache(maxsize=100_000)  # tests poll the same stream again and again
def _bytes_problems(body: bytes) -> tuple[str, ...]:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return (f"not JSON: {error}",)
    return tuple(_problems(event))


def _problems(event: Any) -> list[str]:
    kind = event.get("type") if isinstance(event, dict) else None
    validator = _branches().get(kind) if isinstance(kind, str) else None
    validator = validator or _validator()  # not an object, or no known type: the whole schema says why
    if validator.is_valid(event):
        return []
    errors = validator.iter_errors(event)
    return sorted(f"{'/'.join(map(str, error.absolute_path)) or '(event)'}: {error.message}" for error in errors)


def check_event(body: bytes | str | dict[str, Any]) -> None:
    if problems := schema_problems(body):
        shown = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        raise AssertionError(f"event does not match schema/events.schema.json: {problems}\n  {shown!r}")


def stream_bodies(connection: redis.Redis, stream: str = keys.EVENTS_STREAM) -> list[bytes]:
    bodies = [fields[b"event"] for _, fields in connection.xrange(stream)]
    for body in bodies:
        check_event(body)
    return bodies


def stream_events(connection: redis.Redis, stream: str = keys.EVENTS_STREAM) -> list[dict[str, Any]]:
    return [orjson.loads(body) for body in stream_bodies(connection, stream)]
