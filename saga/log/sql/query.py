"""The saga list query: ``SagaLog.find`` filters as one indexed, keyset-paginated SELECT."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, select, tuple_

from saga.events import Health, SagaStatus
from saga.log.base import TimeRange
from saga.log.paging import decode_cursor
from saga.log.sql.schema import sagas


def _in_range(column: Any, span: TimeRange) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if span.since_ms is not None:
        found.append(column >= span.since_ms)
    if span.before_ms is not None:
        found.append(column < span.before_ms)
    return found


def _health(
    healths: Sequence[Health], stalled_before_ms: int | None, sqlite: bool
) -> list[ColumnElement[bool]]:
    wanted = sorted({Health(h).value for h in healths})
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


def find_query(
    *,
    statuses: Sequence[SagaStatus] | None = None,
    name: str | None = None,
    healths: Sequence[Health] | None = None,
    current_step: str | None = None,
    created: TimeRange | None = None,
    updated: TimeRange | None = None,
    stalled_before_ms: int | None = None,
    limit: int = 100,
    cursor: str | None = None,
    sqlite: bool = False,
) -> Select[Any]:
    """The SELECT for one page: ``limit + 1`` rows, newest first, after ``cursor``.

    Every filter has an index led by its column (status, name, health, current_step,
    created_ms, updated_ms), so the database never needs to scan the whole table.
    ``sqlite`` adapts the query to SQLite's planner.
    """
    conditions: list[ColumnElement[bool]] = []
    if statuses is not None:
        conditions.append(sagas.c.status.in_([SagaStatus(s).value for s in statuses]))
    if name is not None:
        conditions.append(sagas.c.name == name)
    if healths is not None:
        conditions.extend(_health(healths, stalled_before_ms, sqlite))
    if current_step is not None:
        conditions.append(sagas.c.current_step == current_step)
    if created is not None:
        conditions.extend(_in_range(sagas.c.created_ms, created))
    if updated is not None:
        conditions.extend(_in_range(sagas.c.updated_ms, updated))
    if cursor is not None:
        created_ms, saga_id = decode_cursor(cursor)
        conditions.append(tuple_(sagas.c.created_ms, sagas.c.saga_id) < (created_ms, saga_id))
    # One row more than asked tells whether another page exists, without a COUNT.
    newest: ColumnElement[Any] = sagas.c.created_ms
    if healths is not None and sqlite:
        # Only unfinished sagas have a health, a small part of a large log, but SQLite
        # would rather walk the whole created_ms index (to skip a sort) than seek the health
        # index. Ordering by an expression takes that option away (SQLAlchemy has no
        # INDEXED BY for SQLite); the few matches are sorted instead.
        newest = sagas.c.created_ms + 0
    return (
        select(sagas)
        .where(*conditions)
        .order_by(newest.desc(), sagas.c.saga_id.desc())
        .limit(limit + 1)
    )
