"""Request parameters (path, query, headers), parsed by pydantic models that also describe them.

A handler declares what it takes in its signature, `async def h(request, query: OrdersQuery)`;
`typed(h)` parses each declared source with its model before calling it (a bad value: 400 with
`errors`), and `parameters(h)` gives the OpenAPI parameters of the same models, so the document
cannot drift from the parsing. The paging every listing shares (page size, cursor) is `PageQuery`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar, get_type_hints
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from orders_core import cursor
from orders_core.errors import BadRequest, validation_errors

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID_RE = re.compile(UUID_PATTERN)
MAX_PAGE = 1000
DEFAULT_PAGE = 100
# Where each source of parameters is, in a handler's signature and in OpenAPI.
SOURCES = {"path": "path", "query": "query", "headers": "header"}

TypedHandler = Callable[..., Awaitable[web.StreamResponse]]
P = TypeVar("P", bound="Params")
R = TypeVar("R", bound="Row")


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


class Params(BaseModel):
    """Parameters of one source. Unknown query parameters are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_DIGITS = 18  # below 2**63: any such number fits a bigint, and no int() refuses it


def whole_number(text: str) -> int:
    """The one parser of integers a client writes (query parameters, path segments): plain ASCII
    digits only. No sign, spaces, `_`, other scripts' digits (`str.isdigit` takes those, and
    superscripts that `int` then refuses), and at most MAX_DIGITS of them. ValueError otherwise."""
    if not (0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()):
        raise ValueError(f"must be a whole number of at most {MAX_DIGITS} digits 0-9")
    return int(text)


def _whole_number(value: object) -> object:
    return whole_number(value) if isinstance(value, str) else value


def _instant(value: object) -> object:
    """ISO 8601 with a UTC offset, as UTC; a time that is no instant in UTC is refused."""
    if isinstance(value, str):
        if len(value) > 64 or not value.isascii():
            raise ValueError("must be an ISO 8601 timestamp with a UTC offset")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 timestamp with a UTC offset") from None
        if parsed.tzinfo is None:
            raise ValueError("must be an ISO 8601 timestamp with a UTC offset")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range") from None
    return value


def _position(value: object) -> object:
    if isinstance(value, str):
        try:
            return cursor.decode(value)
        except cursor.CursorError as exc:
            raise ValueError(str(exc)) from None
    return value


def _uuid(value: object) -> object:
    """Only the hyphenated form: `{...}`, `urn:uuid:` and bare hex are other spellings."""
    if isinstance(value, str) and not UUID_RE.fullmatch(value):
        raise ValueError("must be a UUID: 8-4-4-4-12 hexadecimal digits")
    return value


QueryInt = Annotated[int, BeforeValidator(_whole_number)]
Instant = Annotated[
    datetime, BeforeValidator(_instant), WithJsonSchema({"type": "string", "format": "date-time"})
]
Cursor = Annotated[
    cursor.Position,
    BeforeValidator(_position),
    WithJsonSchema({"type": "string", "pattern": cursor.PATTERN, "maxLength": cursor.MAX_LENGTH}),
]
Uuid = Annotated[
    UUID,
    BeforeValidator(_uuid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]


class PageQuery(Params):
    """Keyset paging, newest first: every listing of the system takes these two."""

    limit: QueryInt = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="page size")
    after: Cursor | None = Field(default=None, description="the `next` cursor of the previous page")

    @property
    def before(self) -> cursor.Position:
        """Rows strictly before this position make the page."""
        return self.after or cursor.FIRST_PAGE

    @property
    def fetch(self) -> int:
        """How many rows to read: one more than the page, to know whether another follows."""
        return self.limit + 1

    def cut(self, rows: Sequence[R], at: str) -> tuple[Sequence[R], str | None]:
        """The page, and the cursor of the next one (None on the last): rows were read with
        `fetch`, newest first, and `at` names the timestamp column of their keyset (at, id)."""
        if len(rows) <= self.limit:
            return rows, None
        rows = rows[: self.limit]
        return rows, cursor.encode(rows[-1][at], rows[-1]["id"])


def _values(request: web.Request, source: str, model: type[Params]) -> dict[str, str]:
    """The raw values; a parameter given twice is refused rather than one copy picked."""
    if source == "path":
        return dict(request.match_info)
    given: Mapping[str, str] = request.query if source == "query" else request.headers
    names = [f.alias or n for n, f in model.model_fields.items()] if source == "headers" else given
    values: dict[str, str] = {}
    for name in names:
        found = given.getall(name, [])  # type: ignore[attr-defined]
        if len(found) > 1:
            raise BadRequest(f"{SOURCES[source]} parameter {name} given more than once")
        if found:
            values[name] = found[0]
    return values


def parse(request: web.Request, source: str, model: type[P]) -> P:
    try:
        return model.model_validate(_values(request, source, model))
    except ValidationError as exc:
        errors = validation_errors(exc)
        for error in errors:
            error["loc"] = [SOURCES[source], *error["loc"]]
        summary = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in errors[:3])
        raise BadRequest(f"Invalid {SOURCES[source]} parameter: {summary}", errors=errors) from None


def declared(handler: TypedHandler) -> dict[str, type[Params]]:
    """The parameter models a handler's signature declares, by source."""
    hints = get_type_hints(handler)
    return {source: hints[source] for source in SOURCES if source in hints}


def typed(handler: TypedHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler: parses each declared source, then calls `handler` with them."""
    models = declared(handler)

    @functools.wraps(handler)
    async def parsed(request: web.Request) -> web.StreamResponse:
        kwargs = {source: parse(request, source, model) for source, model in models.items()}
        return await handler(request, **kwargs)

    parsed.__dict__["parameter_models"] = models
    return parsed


def parameters(models: Mapping[str, type[Params]]) -> list[dict[str, Any]]:
    """OpenAPI 3.1 parameter objects for these models (schemas inlined, `null` left out)."""
    result: list[dict[str, Any]] = []
    for source, model in models.items():
        schema = model.model_json_schema(by_alias=True)
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            prop = _without_null(_inline(prop, defs))
            if "default" in prop and prop["default"] is None:
                del prop["default"]  # left out is not "null": there is no null in a query
            description = prop.pop("description", "")
            prop.pop("title", None)
            result.append(
                {
                    "name": name,
                    "in": SOURCES[source],
                    "required": source == "path" or name in required,
                    "description": description,
                    "schema": prop,
                }
            )
    return result


def _inline(schema: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(schema, dict):
        if "$ref" in schema:
            target = defs[schema["$ref"].rsplit("/", 1)[-1]]
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return _inline({**target, **rest}, defs)
        return {k: _inline(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, null]` -> X: an optional parameter is one that may be left out."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1:
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**kept[0], **rest}
    return schema
