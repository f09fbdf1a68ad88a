"""Query-string and body parsing for the API: every bad value is a 400 or 422 with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping

from saga.api.problems import ApiError, bad_request, invalid
from saga.errors import QueryError
from saga.events import Health, SagaStatus
from saga.log.base import SagaQuery, TimeRange
from saga.log.paging import MAX_PAGE_SIZE

E = TypeVar("E", bound=StrEnum)


def enum_list(query: MultiMapping[str], key: str, kind: type[E]) -> list[E] | None:
    """``?key=a&key=b`` or ``?key=a,b`` as enum members; None when absent."""
    raw = [part.strip() for value in query.getall(key, []) for part in value.split(",")]
    raw = [part for part in raw if part]
    if not raw:
        return None
    try:
        return [kind(part) for part in raw]
    except ValueError as exc:
        allowed = ", ".join(m.value for m in kind)
        raise bad_request(f"{key} must be one of {allowed}") from exc


def time_ms(query: MultiMapping[str], key: str) -> int | None:
    """Epoch milliseconds, or an ISO 8601 time (UTC unless it names a zone)."""
    value = query.get(key)
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.lstrip("-").isdigit():
        number = int(value)
        if abs(number) > 2**62:
            raise bad_request(f"{key} is out of range")
        return number
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(f"{key} must be epoch milliseconds or an ISO 8601 time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def limit(query: MultiMapping[str], default: int = 50) -> int:
    value = query.get("limit")
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise bad_request("limit must be an integer") from exc
    if not 1 <= number <= MAX_PAGE_SIZE:
        raise bad_request(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    return number


def text(query: MultiMapping[str], key: str, *, max_len: int = 200) -> str | None:
    value = query.get(key)
    if value is None or value == "":
        return None
    if len(value) > max_len:
        raise bad_request(f"{key} is longer than {max_len} characters")
    return value


def saga_query(query: MultiMapping[str], stalled_before_ms: int | None) -> SagaQuery:
    """The ``SagaQuery`` of GET /api/sagas's query string (a QueryError becomes a 400)."""
    try:
        return SagaQuery(
            statuses=enum_list(query, "status", SagaStatus),
            name=text(query, "name"),
            healths=enum_list(query, "health", Health),
            current_step=text(query, "step"),
            waiting_for=text(query, "waiting_for"),
            created=TimeRange(
                since_ms=time_ms(query, "created_after"),
                before_ms=time_ms(query, "created_before"),
            ),
            updated=TimeRange(
                since_ms=time_ms(query, "updated_after"),
                before_ms=time_ms(query, "updated_before"),
            ),
            stalled_before_ms=stalled_before_ms,
            saga_id=text(query, "saga_id"),
            saga_id_prefix=text(query, "saga_id_prefix"),
            input_equals=input_fields(query),
            limit=limit(query),
            cursor=text(query, "cursor", max_len=2000),
        )
    except QueryError as exc:
        raise bad_request(exc.message) from exc


INPUT_PREFIX = "input."


def input_fields(query: MultiMapping[str]) -> list[tuple[str, str]]:
    """``?input.order_id=42``: (field, value) pairs the saga input's top-level fields must
    have; the log checks the field names (a QueryError, so a 400)."""
    return [
        (key[len(INPUT_PREFIX) :], value)
        for key, value in query.items()
        if key.startswith(INPUT_PREFIX)
    ]


def flag(query: MultiMapping[str], key: str) -> bool:
    value = query.get(key, "0").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise bad_request(f"{key} must be 1 or 0 (true or false)")


async def json_object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    """The body as a JSON object with only ``allowed`` keys (an empty body is ``{}``)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"the body is over the {request.client_max_size} byte limit") from exc
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(
            f"unknown fields: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return body
