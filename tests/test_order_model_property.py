"""The order validator against an independent model of SPEC §2 and §7 (issue 10), by hypothesis.

A body is generated as JSON text, mostly near a valid order with one or more fields bent. The
service reads it as `POST /orders` does (`orders_core.strict_json`, then `CreateOrderModel`); the
model below reads it with the standard library and applies the rules as the SPEC words them,
sharing no code with the service. They must agree on every body, and on the order accepted.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orders_api.schemas import CreateOrderModel
from orders_core import strict_json

FIELDS = {"type", "side", "instrument", "limit_price", "quantity"}
VALID_ISINS = ["US0378331005", "DE0007164600", "GB0002634946", "IE00B4L5Y983"]
BAD_ISINS = ["US0378331006", "DE000A0Q4RZ3", "us0378331005", "US037833100", "US03783310055"]
PRICE_TEXT = re.compile(r"[0-9]{1,16}(\.[0-9]{1,2})?")  # SPEC §7: plain digits, nothing else


# --- the model: SPEC §2's table, §7's strictness ------------------------------------------


def isin_ok(value: str) -> bool:
    """ISO 6166: two letters, nine letters or digits, a Luhn check digit over letters as 10-35."""
    if not re.fullmatch(r"[A-Z]{2}[A-Z0-9]{9}[0-9]", value):
        return False
    digits = [int(d) for ch in value for d in str("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ".index(ch))]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 else digit
        total += doubled // 10 + doubled % 10
    return total % 10 == 0


def price_value(value: Any) -> Decimal | None:
    """A JSON number or a plain decimal string, > 0, at most 2 places and 16 whole digits."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int | Decimal | str):
        return None
    if isinstance(value, str) and not PRICE_TEXT.fullmatch(value):
        return None
    number = Decimal(value)
    if not number.is_finite() or number <= 0 or number >= Decimal(10) ** 16:
        return None
    return number if (number * 100) == (number * 100).to_integral_value() else None


def spec_order(text: str) -> dict[str, Any] | None:
    """The order the SPEC takes from this body, or None when it refuses it."""
    twice = False

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal twice
        twice = twice or len({key for key, _ in pairs}) != len(pairs)
        return dict(pairs)

    try:
        body = json.loads(text, parse_float=Decimal, object_pairs_hook=members)
    except ValueError:
        return None
    if twice:
        return None  # a key twice
    if not isinstance(body, dict) or not set(body) <= FIELDS:
        return None
    kind, quantity = body.get("type"), body.get("quantity")
    if kind not in ("market", "limit") or body.get("side") not in ("buy", "sell"):
        return None
    instrument = body.get("instrument")
    if not isinstance(instrument, str) or not isin_ok(instrument):
        return None
    if type(quantity) is not int or not 1 <= quantity <= 1_000_000_000:
        return None
    price = body.get("limit_price")
    if kind == "market" and price is not None:
        return None
    if kind == "limit" and (price is None or price_value(price) is None):
        return None
    return {**body, "limit_price": None if price is None else price_value(price)}


# --- bodies -----------------------------------------------------------------------------------

ODD_CHARS = ["_", " ", "\t", "+", "-", "e", "E", "\u0661", "\uff11", "\u00b9", "\u00a0", ","]


@st.composite
def price_texts(draw: st.DrawFn) -> str:
    """Decimal strings, plain or bent: an odd character somewhere, an exponent, padding."""
    number = draw(
        st.decimals(min_value=0, max_value=Decimal(10) ** 17, places=draw(st.integers(0, 3)))
    )
    text = draw(st.sampled_from([str(number), f"{number:f}", f"{number:E}"]))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(ODD_CHARS)) + text[at:]
    return text


def json_numbers() -> st.SearchStrategy[str]:
    plain = st.decimals(min_value=Decimal("-1"), max_value=Decimal(10) ** 17, places=3)
    return st.one_of(
        plain.map(str),
        plain.map(lambda d: f"{d:E}"),
        st.integers(-5, 10**18).map(str),
        st.sampled_from(["1e400", "-0", "0.0", "1.0", "10.0", "1e1", "1E+1", "0.001", "1" * 30]),
    )


def values(*preferred: str) -> st.SearchStrategy[str]:
    """JSON text for one field: mostly one of `preferred`, else anything JSON can say."""
    anything = st.one_of(
        json_numbers(),
        st.text(max_size=8).map(json.dumps),
        price_texts().map(json.dumps),
        st.sampled_from(["null", "true", "false", "[]", "{}", '["limit"]', '{"a": 1}']),
    )
    return st.one_of(st.sampled_from(preferred), anything) if preferred else anything


VALID_PRICES = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10) ** 16, places=2)
BENT = {
    "type": values('"LIMIT"', '"stop"', '""'),
    "side": values('"Buy"', '"short"'),
    "instrument": values(*(json.dumps(i) for i in BAD_ISINS)),
    "limit_price": st.one_of(price_texts().map(json.dumps), json_numbers(), values()),
    "quantity": st.one_of(st.integers(-2, 2 * 10**9).map(str), values('"10"', "10.0", "1e1")),
}


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """An order, each field bent one time in eight (a wrong value, or left out)."""
    kind = draw(st.sampled_from(["market", "limit"]))
    price = st.tuples(VALID_PRICES, st.booleans()).map(
        lambda p: json.dumps(str(p[0])) if p[1] else str(p[0])  # a string, or a JSON number
    )
    valid = {
        "type": st.just(json.dumps(kind)),
        "side": st.sampled_from(['"buy"', '"sell"']),
        "instrument": st.sampled_from([json.dumps(i) for i in VALID_ISINS]),
        "limit_price": price if kind == "limit" else st.sampled_from(["null", ""]),
        "quantity": st.integers(1, 10**9).map(str),
    }
    members = []
    for name, strategy in valid.items():
        bend = draw(st.integers(0, 7))
        value = draw(BENT[name]) if bend == 0 else "" if bend == 1 else draw(strategy)
        if value:  # "": the field is left out
            members.append(f'"{name}": {value}')
    if draw(st.integers(0, 19)) == 0:
        members.append(f'"extra": {draw(values())}')
    if members and draw(st.integers(0, 19)) == 0:
        members.append(draw(st.sampled_from(members)))  # a key twice
    draw(st.randoms()).shuffle(members)
    return "{" + ", ".join(members) + "}"


# --- the property -----------------------------------------------------------------------------


def service_order(text: str) -> dict[str, Any] | None:
    try:
        data = strict_json.loads(text.encode())
        if not isinstance(data, dict):
            return None
        order = CreateOrderModel.model_validate(data)
    except (strict_json.JsonInputError, ValidationError):
        return None
    return {
        "type": order.type.value, "side": order.side.value, "instrument": order.instrument,
        "limit_price": order.limit_price, "quantity": order.quantity,
    }  # fmt: skip


@settings(
    max_examples=1500,
    derandomize=True,  # the same bodies on every run: CI's verdict does not depend on luck
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(bodies())
def test_the_validator_takes_exactly_what_the_spec_takes(text: str) -> None:
    expected = spec_order(text)
    got = service_order(text)
    assert (got is None) == (expected is None), (text, expected, got)
    if expected is not None:
        assert got == {**dict.fromkeys(FIELDS), **expected}, text


def test_the_model_knows_the_spec_examples() -> None:
    base = {"type": "limit", "side": "buy", "limit_price": "1.50", "quantity": 1}
    for isin in VALID_ISINS:
        assert isin_ok(isin)
        assert spec_order(json.dumps({**base, "instrument": isin}))
    for isin in BAD_ISINS:
        assert not isin_ok(isin)
    for price in ["1_000", " 1", "1e3", "+1", "\u0661", "1.005", "0"]:
        assert (
            spec_order(json.dumps({**base, "instrument": VALID_ISINS[0], "limit_price": price}))
            is None
        )
