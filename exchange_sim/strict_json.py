"""JSON from a client, as a venue reads it: UTF-8, nesting bounded before anything recurses, no
key twice in one object, no NaN/Infinity. The services have their own (orders_core.strict_json);
the stand-in plays the outside world and imports nothing of ours, so this is its own."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 8  # an order or a config change is one flat object
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)


def _depth(raw: bytes) -> int:
    level = deepest = 0
    for token in _TOKEN.finditer(raw):
        first = token.group()[0]
        if first in b"[{":
            level += 1
            deepest = max(deepest, level)
        elif first != ord('"'):
            level -= 1
    return deepest


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key for key, _ in pairs}) != len(pairs):
        raise _DuplicateKey("body has the same key twice in one object")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError("body is not valid JSON")


def loads(raw: bytes) -> Any:
    """The JSON value of `raw`; ValueError with a message for the client otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("body is not UTF-8") from None
    if _depth(raw) > MAX_DEPTH:
        raise ValueError(f"body nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except _DuplicateKey:
        raise
    except ValueError:  # also the int() of a number past 4,300 digits
        raise ValueError("body is not valid JSON") from None
