"""A delivery body's top-level JSON array, split into the raw bytes of its elements, at any depth.

    elements(body) -> list[bytes] | None     each element's bytes, exactly as sent; None: not an array
    alone(body, indices) -> [(bytes, bool)]  per index `([element], True)`: one element as a one-element array

JSON parsers recurse: msgspec raises RecursionError near Python's recursion limit (~1000 levels, fewer
when called deep in a stack), orjson refuses more than 1024 levels and cannot serialize more than 254.
An authentic Enode body may still nest deeper than that. Splitting it into its elements lets each be
parsed on its own: the elements that parse go on, one that does not is quarantined alone. msgspec splits
(`list[Raw]`, in C, skipping values without checking number ranges or UTF-8, which each element's parser
does later); a body too deep for it is scanned token by token without recursion (one regex match per
string, per run of brackets, per comma: ~3 us each). A body whose structure is not JSON is no array.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

# A JSON string (escapes skipped whole), a run of openers, a run of closers, a comma.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+|,', re.DOTALL)
_WHITESPACE = b" \t\r\n"
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


_RAW_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])


def elements(body: bytes) -> list[bytes] | None:
    """The raw bytes of each element of the top-level array `body`; None if it is not one (or never ends).

    Whitespace around an element is dropped; an empty element (`[1,,2]`, `[1,]`) makes the body not an array.
    """
    try:
        return [bytes(raw) for raw in _RAW_ELEMENTS.decode(body)]
    except msgspec.DecodeError:  # not JSON, or JSON but not an array (ValidationError)
        return None
    except RecursionError:
        return scan(body)


def alone(body: bytes, indices: Iterable[int]) -> list[tuple[bytes, bool]]:
    """For each index, (the element there of the array `body` as a one-element array, byte for byte, True),
    or (`body`, False) if it holds no element there. The body is split once."""
    wanted = list(indices)
    found = (elements(body) or []) if wanted else []
    return [(b"[" + found[i] + b"]", True) if 0 <= i < len(found) else (body, False) for i in wanted]


def scan(body: bytes) -> list[bytes] | None:
    """`elements` of a body nested too deep for msgspec, found by scanning tokens without recursion (and
    without validating the elements: their parsers do that)."""
    stripped = body.strip(_WHITESPACE)
    if not stripped.startswith(b"["):
        return None
    found: list[bytes] = []
    level, start = 0, 1  # level: nesting inside the top-level array
    for match in _TOKENS.finditer(stripped, 1):
        token = match.group()
        first = token[0]
        if first == 0x2C:  # ","
            if level == 0:
                found.append(stripped[start:match.start()])
                start = match.end()
        elif first in _OPENERS:
            level += len(token)
        elif first in _CLOSERS:
            if len(token) <= level:
                level -= len(token)
                continue
            end = match.start() + level  # this run closes the top-level array
            if len(token) != level + 1 or match.end() != len(stripped):
                return None
            found.append(stripped[start:end])
            return _cleaned(found)
    return None


def _cleaned(found: list[bytes]) -> list[bytes] | None:
    items = [item.strip(_WHITESPACE) for item in found]
    if items == [b""]:
        return []  # "[]"
    return None if not all(items) else items
