"""Request parsing for the API: the models of ``saga.api.models`` checked against a query
string, a path or a JSON body; every bad value is a 400 or 422 naming the field and why."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from saga.api.models import LIST, Request, SagaListQuery
from saga.api.problems import ApiError, bad_request, invalid
from saga.errors import QueryError
from saga.log.base import SagaQuery, TimeRange

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=Request)

_EXPECTED = {
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "float_type": "a number",
}


def _json_kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _field(loc: tuple[int | str, ...]) -> str:
    """A field's path (``filter.status``): list indexes, union branches (class names) and
    pydantic's ``[key]`` marker left out."""
    if not loc:
        return ""
    nested = [p for p in loc[1:] if isinstance(p, str) and not p[:1].isupper() and p != "[key]"]
    return ".".join([str(loc[0]), *nested])[:80]


def _why(error: ErrorDetails) -> str:
    """One validation error as a sentence that names the field."""
    field = _field(error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return f"{field} is required"
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        return f"{field} {message}" if field else message
    if kind in _EXPECTED:
        if kind in ("int_parsing", "bool_parsing"):  # a query string: no JSON type to name
            return f"{field} must be {_EXPECTED[kind]}"
        return f"{field} must be {_EXPECTED[kind]}, not {_json_kind(error['input'])}"
    if kind == "enum":
        return f"{field} must be one of {ctx.get('expected', '')}".replace("'", "")
    if kind == "literal_error":
        return f"{field} must be one of {ctx.get('expected', '')}"
    if kind == "string_too_long":
        return f"{field} is longer than {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"{field} is shorter than {ctx.get('min_length')} characters"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == r"\S":
        return f"{field} is required: not only spaces"
    if kind == "string_pattern_mismatch":
        return f"{field} does not match {ctx.get('pattern')}"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = f"at least {ctx['ge']}" if "ge" in ctx else f"at most {ctx.get('le')}"
        return f"{field} must be {bound}"
    return f"{field}: {error['msg']}" if field else error["msg"]


def explain(exc: ValidationError, model: type[BaseModel]) -> str:
    """A ValidationError as one message: unknown fields together, then each other error."""
    errors = exc.errors(include_url=False)
    if any(e["type"] != "none_required" for e in errors):
        # An optional object's None branch: the other branch's errors say what is wrong.
        errors = [e for e in errors if e["type"] != "none_required"]
    unknown = sorted(_field(e["loc"]) for e in errors if e["type"] == "extra_forbidden")
    found = [_why(e) for e in errors if e["type"] != "extra_forbidden"]
    if unknown:
        said = f"unknown fields: {', '.join(k[:40] for k in unknown[:5])}"
        if all("." not in k for k in unknown):
            said += f"; allowed: {', '.join(sorted(model.model_fields))}"
        found.insert(0, said)
    return "; ".join(dict.fromkeys(found[:5]))


def _is_text(model: type[BaseModel], name: str) -> bool:
    """Whether the field holds text (an empty one is no filter), once Annotated and None go."""
    annotation: Any = model.model_fields[name].annotation
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, UnionType):
            kinds = [kind for kind in get_args(annotation) if kind is not type(None)]
            if len(kinds) != 1:
                return False
            annotation = kinds[0]
        else:
            return annotation is str


def _strings(
    model: type[BaseModel], values: MultiMapping[str] | Mapping[str, str]
) -> dict[str, Any]:
    """The model's fields from a query string or path: lists split, empty text left out."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if LIST in field.metadata:
            raw: Sequence[str] = (
                values.getall(name, []) if isinstance(values, MultiMapping) else
                [values[name]] if name in values else []
            )  # fmt: skip
            if raw:
                found[name] = [part.strip() for value in raw for part in value.split(",")]
        elif name in values:
            value = values[name]
            if value == "" and _is_text(model, name):
                continue  # an empty text filter is no filter
            found[name] = value
    return found


def query(model: type[M], values: MultiMapping[str] | Mapping[str, str]) -> M:
    """``model`` from a query string (or a route's path values); a bad value is a 400."""
    try:
        return model.model_validate(_strings(model, values))
    except ValidationError as exc:
        raise bad_request(explain(exc, model)) from exc


def decode(model: type[R], raw: bytes) -> R:
    """``model`` from a JSON body (empty: ``{}``); ApiError 400 for bad JSON or a bad field of
    ``model.BAD_REQUEST_FIELDS``, 422 for any other bad field."""
    if not raw.strip():
        document: object = {}
    else:
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise invalid("the body must be a JSON object")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        fields = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        status = 400 if fields & model.BAD_REQUEST_FIELDS else 422
        raise ApiError(status, explain(exc, model)) from exc


async def read(request: web.Request) -> bytes:
    """The raw body; 413 over the configured limit."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"the body is over the {request.client_max_size} byte limit") from exc


async def body(model: type[R], request: web.Request) -> R:
    """``model`` from the request's JSON body (see ``decode``); 413 over the size limit."""
    return decode(model, await read(request))


def saga_query(query_string: MultiMapping[str], stalled_before_ms: int | None) -> SagaQuery:
    """The ``SagaQuery`` of GET /api/sagas's query string (a QueryError becomes a 400)."""
    found = query(SagaListQuery, query_string)
    try:
        return SagaQuery(
            statuses=found.status,
            name=found.name,
            healths=found.health,
            current_step=found.step,
            waiting_for=found.waiting_for,
            created=TimeRange(since_ms=found.created_after, before_ms=found.created_before),
            updated=TimeRange(since_ms=found.updated_after, before_ms=found.updated_before),
            stalled_before_ms=stalled_before_ms,
            saga_id=found.saga_id,
            saga_id_prefix=found.saga_id_prefix,
            input_equals=input_fields(query_string),
            limit=found.limit,
            cursor=found.cursor,
        )
    except QueryError as exc:
        raise bad_request(exc.message) from exc


INPUT_PREFIX = "input."


def input_fields(query_string: MultiMapping[str]) -> list[tuple[str, str]]:
    """``?input.order_id=42``: (field, value) pairs the saga input's top-level fields must
    have (a family of parameters no model can name); the log checks the field names (a
    QueryError, so a 400)."""
    return [
        (key[len(INPUT_PREFIX) :], value)
        for key, value in query_string.items()
        if key.startswith(INPUT_PREFIX)
    ]
