"""Enode's published webhook payloads (OpenAPI 3.1, 2024-10-01) as plain JSON Schemas to generate from.

The spec's `webhooks` section names one request-body schema per event. To feed those to hypothesis-jsonschema:

- every `$ref` (`#/components/schemas/...`) is inlined (the spec has no recursive schemas; a cycle raises);
- annotations are dropped (`description`, `example(s)`, `title`, `x-format`, `deprecated`, `default`,
  `discriminator`: the `anyOf` it decorates already constrains the payload);
- OpenAPI 3.0 `nullable: true` becomes a `"null"` type (3.1 writes `type: [..., "null"]` itself);
- `allOf` is merged into one schema. The spec extends a closed object with another closed object
  (`allOf: [Vehicle, {properties: {location}, additionalProperties: false}]`), which no payload satisfies
  literally; Enode means the union: properties and `required` are united, then `additionalProperties: false`
  applies to the union. A branch that only says `type: [..., "null"]` is the spec's way of writing a
  nullable `$ref`, so the result becomes `anyOf: [merged, {type: null}]`.

`payloads(schema)` is the Hypothesis strategy for a resolved schema. hypothesis-jsonschema 0.23.1 (the newest)
cannot generate objects with Hypothesis 6.170 (its object strategy calls the removed private `many.more()`),
so objects, arrays and `anyOf` are composed here and every leaf (strings with formats, enums, numbers) still
comes from `hypothesis_jsonschema.from_schema`. Tests should validate what it yields with `validator(schema)`.

`webhook_schemas()` is cached: resolving the whole spec takes a moment and the result never changes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

Schema = dict[str, Any]

SPEC_NAME = "enode-openapi-2024-10-01.json"
_ROOT = Path(__file__).resolve().parents[2]
# A copy vendored into the repo wins; else the shared docs folder beside the checkout (`../shared`).
SPEC_CANDIDATES = (_ROOT / "tests" / "data" / SPEC_NAME, _ROOT.parent / "shared" / SPEC_NAME)

_ANNOTATIONS = frozenset({
    "description", "example", "examples", "title", "x-format", "deprecated", "default", "discriminator",
    "readOnly", "writeOnly", "externalDocs", "xml",
})
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SUBSCHEMA_MAPS = ("properties", "patternProperties")


def spec_path() -> Path:
    for candidate in SPEC_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Enode's OpenAPI spec not found; looked at {[str(c) for c in SPEC_CANDIDATES]}")


@functools.cache
def load_spec() -> Mapping[str, Any]:
    return json.loads(spec_path().read_text())  # type: ignore[no-any-return]


@functools.cache
def webhook_schemas() -> Mapping[str, Schema]:
    """Event name (`user:vehicle:updated`, ...) -> its request-body schema, resolved and merged."""
    spec = load_spec()
    return {name: _Resolver(spec).resolve(_body_schema(item)) for name, item in spec["webhooks"].items()}


@functools.cache
def webhook_variants() -> Mapping[str, Schema]:
    """Like `webhook_schemas`, with each top-level `anyOf` of `$ref`s split into one schema per branch.

    `user:vendor-action:updated` carries one of five action shapes; splitting it gives each shape
    (`user:vendor-action:updated[ChargeAction]`, ...) its own examples instead of a fifth of them.
    """
    spec = load_spec()
    variants: dict[str, Schema] = {}
    for name, item in spec["webhooks"].items():
        for suffix, raw in _split_top_level_any_of(spec, _body_schema(item)):
            variants[name + suffix] = _Resolver(spec).resolve(raw)
    return variants


def _body_schema(path_item: Mapping[str, Any]) -> Schema:
    return path_item["post"]["requestBody"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def _split_top_level_any_of(spec: Mapping[str, Any], body: Schema) -> Iterator[tuple[str, Schema]]:
    target = _component(spec, body["$ref"]) if "$ref" in body else body
    for key, prop in target.get("properties", {}).items():
        branches = prop.get("anyOf", [])
        if branches and all("$ref" in branch for branch in branches):
            for branch in branches:
                properties = {**target["properties"], key: branch}
                yield f"[{branch['$ref'].rsplit('/', 1)[-1]}]", {**target, "properties": properties}
            return
    yield "", body


def _component(spec: Mapping[str, Any], ref: str) -> Schema:
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise ValueError(f"unsupported $ref {ref!r}")
    return spec["components"]["schemas"][ref[len(prefix):]]  # type: ignore[no-any-return]


class _Resolver:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._spec = spec
        self._stack: list[str] = []

    def resolve(self, node: Any) -> Any:
        if not isinstance(node, Mapping):
            return node
        if "$ref" in node:
            return self._resolve_ref(node)
        out: Schema = {}
        for key, value in node.items():
            if key in _ANNOTATIONS or key == "nullable":
                continue
            if key in _SUBSCHEMA_LISTS:
                out[key] = [self.resolve(branch) for branch in value]
            elif key in _SUBSCHEMA_MAPS:
                out[key] = {name: self.resolve(sub) for name, sub in value.items()}
            elif key in ("items", "additionalProperties", "not", "contains"):
                out[key] = self.resolve(value)
            else:
                out[key] = value
        if node.get("nullable") is True:
            out = {"anyOf": [out, {"type": "null"}]}
        if "allOf" in out:
            branches = out.pop("allOf")
            out = merge_all_of([out, *branches] if out else branches)
        return out

    def _resolve_ref(self, node: Mapping[str, Any]) -> Any:
        ref = node["$ref"]
        if ref in self._stack:
            raise ValueError(f"recursive $ref {ref!r} is not supported")
        self._stack.append(ref)
        try:
            target = self.resolve(_component(self._spec, ref))
        finally:
            self._stack.pop()
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return merge_all_of([target, self.resolve(siblings)]) if siblings else target


def _is_null_marker(branch: Schema) -> bool:
    """`{type: [..., "null"]}` and nothing else: the spec's way of saying "the other branches, or null"."""
    types = branch.get("type")
    return set(branch) == {"type"} and isinstance(types, list) and "null" in types


def merge_all_of(branches: list[Schema]) -> Schema:
    """One schema equivalent to what `allOf: branches` means in Enode's spec (see the module docstring)."""
    nullable = any(_is_null_marker(b) for b in branches)
    merged: Schema = {}
    for branch in branches:
        if _is_null_marker(branch) or not branch:
            continue
        for key, value in branch.items():
            _merge_key(merged, key, value)
    if nullable:
        return {"anyOf": [merged, {"type": "null"}]} if merged else {}
    return merged


def _merge_key(merged: Schema, key: str, value: Any) -> None:
    if key not in merged:
        merged[key] = value
    elif key == "properties":
        for name, sub in value.items():
            old = merged[key].get(name)
            merged[key] = {**merged[key], name: sub if old is None else merge_all_of([old, sub])}
    elif key == "required":
        merged[key] = list(dict.fromkeys([*merged[key], *value]))
    elif key == "additionalProperties":
        merged[key] = merged[key] and value  # closed if any branch is closed
    elif key == "type":
        left, right = _types(merged[key]), _types(value)
        both = [t for t in left if t in right]
        if not both:
            raise ValueError(f"allOf branches disagree on type: {left} vs {right}")
        merged[key] = both if len(both) > 1 else both[0]
    elif key == "enum":
        merged[key] = [v for v in merged[key] if v in value]
    elif merged[key] != value:
        raise ValueError(f"allOf branches disagree on {key!r}: {merged[key]!r} vs {value!r}")


def _types(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# --- generation ------------------------------------------------------------------------------------------

UUIDS = st.uuids().map(str)
_CUSTOM_FORMATS = {"uuid": UUIDS}  # hypothesis-jsonschema does not know "uuid" (it would yield any string)


def representable(value: object) -> bool:
    """A `date-time` whose instant lies in the years 1-9999 UTC. The format also allows times no such instant
    has (0001-01-01T00:00:00+00:01 is year 0 in UTC); the decoder rejects those (the event is quarantined
    alone), which tests/unit/test_core_schema.py's own RFC 3339 strategy checks, so the generated events that
    "schema-valid events decode" is asked of carry representable times only."""
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        return False
    return True

_COMPOSED = frozenset({"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems"})
_LEAF = frozenset({"type", "enum", "const", "format", "pattern", "minLength", "maxLength", "minimum",
                   "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
_EXTRA_VALUES = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5)


def validator(schema: Schema) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def payloads(schema: Schema) -> st.SearchStrategy[Any]:
    """Values valid against a resolved schema; an unknown keyword raises rather than being ignored."""
    if "anyOf" in schema:
        if set(schema) != {"anyOf"}:
            raise NotImplementedError(f"anyOf beside {sorted(set(schema) - {'anyOf'})}")
        return st.one_of([payloads(branch) for branch in schema["anyOf"]])
    types = _types(schema.get("type", "object" if "properties" in schema else []))
    if len(types) > 1:
        return st.one_of([payloads({**schema, "type": t}) for t in types])
    if types == ["object"] and "enum" not in schema:
        return _objects(schema)
    if types == ["array"]:
        return _arrays(schema)
    unknown = set(schema) - _LEAF - _COMPOSED
    if unknown:
        raise NotImplementedError(f"keywords {sorted(unknown)} in a leaf schema")
    leaf = {key: value for key, value in schema.items() if key in _LEAF}  # object keywords: not for a leaf
    values = from_schema(leaf, custom_formats=_CUSTOM_FORMATS)
    return values.filter(representable) if leaf.get("format") == "date-time" else values


def _objects(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    unknown = set(schema) - _COMPOSED
    if unknown:
        raise NotImplementedError(f"keywords {sorted(unknown)} in an object schema")
    properties: dict[str, Schema] = schema.get("properties", {})
    required = set(schema.get("required", []))
    if required - set(properties):
        raise NotImplementedError(f"required without a schema: {sorted(required - set(properties))}")
    fixed = st.fixed_dictionaries(
        {name: payloads(sub) for name, sub in properties.items() if name in required},
        optional={name: payloads(sub) for name, sub in properties.items() if name not in required},
    )
    if schema.get("additionalProperties", True) is False:
        return fixed
    extra_keys = st.text(min_size=1, max_size=8).filter(lambda key: key not in properties)
    extras = st.dictionaries(extra_keys, _EXTRA_VALUES, max_size=2)  # an open object: unknown fields
    return st.builds(lambda known, more: {**more, **known}, fixed, extras)


def _arrays(schema: Schema) -> st.SearchStrategy[list[Any]]:
    unknown = set(schema) - _COMPOSED
    if unknown:
        raise NotImplementedError(f"keywords {sorted(unknown)} in an array schema")
    items = payloads(schema.get("items", {"type": "string"}))
    return st.lists(items, min_size=schema.get("minItems", 0), max_size=schema.get("maxItems", 3))


_ID_FIELDS = frozenset({"id", "userId", "targetId"})


def with_nonempty_ids(schema: Any) -> Any:
    """The schema with every `id`, `userId` and `targetId` string at least one character long.

    The spec leaves them unconstrained (`{type: string}`), but Enode's ids are UUIDs and an empty one
    cannot name a device; plugwatch quarantines such an event (`DecodeError`) rather than guess.
    """
    if isinstance(schema, list):
        return [with_nonempty_ids(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: with_nonempty_ids(value) for key, value in schema.items()}
    for name, sub in out.get("properties", {}).items():
        if name in _ID_FIELDS and "string" in _types(sub.get("type", [])):
            out["properties"][name] = {**sub, "minLength": max(1, sub.get("minLength", 0))}
    return out
