"""The saga list query: ``SagaLog.find`` filters as one indexed, keyset-paginated SELECT."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    tuple_,
)

from saga.events import Health
from saga.log.base import SagaQuery, TimeRange
from saga.log.sql.schema import sagas


def _in_range(column: Any, span: TimeRange) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if span.since_ms is not None:
        found.append(column >= span.since_ms)
    if span.before_ms is not None:
        found.append(column < span.before_ms)
    return found


def _health(
    healths: Collection[Health], stalled_before_ms: int | None, sqlite: bool
) -> list[ColumnElement[bool]]:
    wanted = sorted(h.value for h in healths)
    if stalled_before_ms is None:
        return [sagas.c.health.in_(wanted)]
    # Any unfinished saga may have stalled into "stuck": widen the indexed IN list, then
    # keep the rows whose effective health is wanted.
    stored = sorted(set(wanted) | {h.value for h in Health}) if "stuck" in wanted else wanted
    stalled = and_(sagas.c.health != Health.STUCK.value, sagas.c.updated_ms < stalled_before_ms)
    effective = case((stalled, literal(Health.STUCK.value)), else_=sagas.c.health)
    indexed: ColumnElement[bool] = sagas.c.health.in_(stored)
    if sqlite:
        # SQLite's statistics average over the NULLs of finished sagas and make a list of
        # every health look unselective; unlikely() keeps the term indexable and says it is.
        indexed = func.unlikely(indexed)
    return [indexed, effective.in_(wanted)]


def _input_equals(field: str, value: str, sqlite: bool) -> ColumnElement[bool]:
    """``input_matches`` in SQL: the input's top-level ``field`` is the string ``value`` or an
    integer written ``value``. ``field`` follows ``INPUT_FIELD`` (checked by the query)."""
    if sqlite:
        path = f'$."{field}"'
        kind = func.json_type(sagas.c.input, path)
        extracted: ColumnElement[str] = cast(func.json_extract(sagas.c.input, path), String)
        return and_(kind.in_(["text", "integer"]), extracted == value)
    # Typed operands: a JSON column's operator would encode the field name and the compared
    # value as JSON, and PostgreSQL has ``json -> integer`` too.
    key = cast(literal(field), String)
    element = sagas.c.input.op("->")(key)
    as_text = sagas.c.input.op("->>", return_type=String)(key)
    kind = func.json_typeof(element)
    integer = and_(kind == "number", as_text.op("~")(r"^-?[0-9]+$"))
    return and_(or_(kind == "string", integer), as_text == value)


def find_query(query: SagaQuery, *, sqlite: bool = False) -> Select[Any]:
    """The SELECT for one page of ``query``: ``limit + 1`` rows, newest first, after its cursor.

    The WHERE clause is ``SagaQuery.matches`` in SQL. Every filter has an index led by its
    column (status, name, health, current_step, waiting_for, created_ms, updated_ms), so the
    database never needs to scan the whole table. ``sqlite`` adapts the query to SQLite's planner.
    """
    conditions: list[ColumnElement[bool]] = []
    if query.statuses is not None:
        conditions.append(sagas.c.status.in_(sorted(s.value for s in query.statuses)))
    if query.name is not None:
        conditions.append(sagas.c.name == query.name)
    if query.healths is not None:
        conditions.extend(_health(query.healths, query.stalled_before_ms, sqlite))
    if query.current_step is not None:
        conditions.append(sagas.c.current_step == query.current_step)
    if query.waiting_for is not None:
        conditions.append(sagas.c.waiting_for == query.waiting_for)
    if query.created is not None:
        conditions.extend(_in_range(sagas.c.created_ms, query.created))
    if query.updated is not None:
        conditions.extend(_in_range(sagas.c.updated_ms, query.updated))
    if query.saga_id is not None:
        conditions.append(sagas.c.saga_id == query.saga_id)
    if query.saga_id_prefix is not None:
        # Ids are ASCII and compare bytewise (schema.saga_id_type), and every id character
        # sorts before DEL: a range on the primary key, not a LIKE with escapes.
        conditions.append(sagas.c.saga_id >= query.saga_id_prefix)
        conditions.append(sagas.c.saga_id < query.saga_id_prefix + "\x7f")
    conditions.extend(_input_equals(field, value, sqlite) for field, value in query.input_equals)
    after = query.after
    if after is not None:
        conditions.append(tuple_(sagas.c.created_ms, sagas.c.saga_id) < after)
    # One row more than asked tells whether another page exists, without a COUNT.
    newest: ColumnElement[Any] = sagas.c.created_ms
    if query.healths is not None and sqlite:
        # Only unfinished sagas have a health, a small part of a large log, but SQLite
        # would rather walk the whole created_ms index (to skip a sort) than seek the health
        # index. Ordering by an expression takes that option away (SQLAlchemy has no
        # INDEXED BY for SQLite); the few matches are sorted instead.
        newest = sagas.c.created_ms + 0
    return (
        select(sagas)
        .where(*conditions)
        .order_by(newest.desc(), sagas.c.saga_id.desc())
        .limit(query.limit + 1)
    )
