"""JSON from a client, read strictly (SPEC §7): UTF-8 only, nesting bounded before anything
recurses, no key twice in an object, no NaN/Infinity, numbers exact (Decimal, never float).

`loads` raises JsonInputError (a ValueError) with a message fit for the client: it says what is
wrong, never quotes the input.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

# An order is one flat object; a cursor one flat array. Far below Python's recursion limit, so
# no input makes the decoder recurse deep, whatever the stack depth of the caller.
MAX_DEPTH = 16
# Digits of a JSON integer read as an int; longer ones stay exact as a Decimal (Python refuses to
# make an int of more than 4,300 digits, and none of our numbers needs 20).
MAX_INT_DIGITS = 100

# A JSON string (what may be inside: anything but `"` and `\`, or `\` and one character), or one
# bracket. Possessive, so a string without its end costs one pass, not a backtrack.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")


class JsonInputError(ValueError):
    pass


def depth(raw: bytes) -> int:
    """How deep brackets nest outside strings: exactly the nesting of valid JSON, and never less
    than a decoder would reach before failing on invalid JSON."""
    level = deepest = 0
    for token in _TOKEN.finditer(raw):
        first = token.group()[0]
        if first in _OPENERS:
            level += 1
            deepest = max(deepest, level)
        elif first != 0x22:  # a closing bracket; 0x22 is a string
            level -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise JsonInputError("is not valid JSON (NaN and Infinity are not JSON)")


def _integer(text: str) -> int | Decimal:
    return int(text) if len(text) <= MAX_INT_DIGITS else Decimal(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JsonInputError("has the same key twice in one object")
    return result


def _text_ok(value: Any) -> bool:
    """No lone surrogate (`"\\ud800"`) in any string: they are no Unicode text."""
    if isinstance(value, str):
        return value.isascii() or _encodable(value)
    if isinstance(value, dict):
        return all(_text_ok(k) and _text_ok(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_text_ok(v) for v in value)
    return True


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def loads(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of `raw`; JsonInputError("<what is wrong>") when it is not one we take.
    The message completes a sentence whose subject is the input ("... is not valid JSON")."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonInputError("is not UTF-8") from None
    if depth(raw) > max_depth:
        raise JsonInputError(f"nests arrays and objects deeper than {max_depth} levels")
    try:
        value = json.loads(
            text,
            parse_float=Decimal,
            parse_int=_integer,
            parse_constant=_refuse_constant,
            object_pairs_hook=_object,
        )
    except JsonInputError:
        raise
    except (ValueError, RecursionError):
        raise JsonInputError("is not valid JSON") from None
    if not _text_ok(value):
        raise JsonInputError("is not valid Unicode text (a lone surrogate)")
    return value
