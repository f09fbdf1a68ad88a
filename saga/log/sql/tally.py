"""``SagaLog.tally`` and ``done_by_hand`` in SQL: aggregates on SQLite and PostgreSQL.

The meaning is ``saga.log.tally.tally_of``'s. Counts group the saga table on its indexed
columns; figures over the window read the sagas created or updated in it (the created_ms and
updated_ms indexes) and, for events, only the events of sagas updated in the window: a
saga's ``updated_ms`` is its last event's time, so no event in the window belongs to a saga
last updated before it, and the events are reached by their primary key (saga_id, seq).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from saga.events import EventType, Health, SagaStatus
from saga.log.sql.schema import saga_events, sagas
from saga.log.tally import (
    BY_HAND_ACTIONS,
    FAILURES,
    MINUTE_MS,
    NameFigures,
    Tally,
    check_window,
    series,
    top_failures,
)

_FINAL = [SagaStatus.COMPLETED.value, SagaStatus.COMPENSATED.value]


def _minute(column: ColumnElement[int]) -> ColumnElement[int]:
    return column - column % MINUTE_MS


def _json_text(column: ColumnElement[Any], key: str, sqlite: bool) -> ColumnElement[str]:
    """A top-level key of a JSON column as text."""
    if sqlite:
        return cast(func.json_extract(column, f'$."{key}"'), String)
    found: ColumnElement[str] = column.op("->>", return_type=String)(cast(literal(key), String))
    return found


def _effective_health(stalled_before_ms: int | None) -> ColumnElement[Any]:
    """``effective_health`` in SQL (the health list filter's expression in query.py)."""
    if stalled_before_ms is None:
        return sagas.c.health
    stalled = and_(sagas.c.health != Health.STUCK.value, sagas.c.updated_ms < stalled_before_ms)
    return case((stalled, literal(Health.STUCK.value)), else_=sagas.c.health)


async def tally(
    conn: AsyncConnection, since_ms: int, until_ms: int, stalled_before_ms: int | None
) -> Tally:
    """The tally, read in one connection (one snapshot on PostgreSQL when in a transaction)."""
    check_window(since_ms, until_ms)
    sqlite = conn.dialect.name == "sqlite"
    statuses = Counter[SagaStatus]()
    for row in await conn.execute(select(sagas.c.status, func.count()).group_by(sagas.c.status)):
        statuses[SagaStatus(row[0])] = row[1]
    healths = Counter[Health]()
    effective = _effective_health(stalled_before_ms).label("effective")
    by_health = (
        select(effective, func.count()).where(sagas.c.health.is_not(None)).group_by(effective)
    )
    for row in await conn.execute(by_health):
        healths[Health(row[0])] = row[1]

    counts: Counter[tuple[int, str]] = Counter()
    started = (
        select(_minute(sagas.c.created_ms).label("minute"), func.count())
        .where(sagas.c.created_ms >= since_ms, sagas.c.created_ms < until_ms)
        .group_by("minute")
    )
    for row in await conn.execute(started):
        counts[(int(row[0]), "started")] = row[1]
    in_window = and_(
        sagas.c.updated_ms >= since_ms,
        sagas.c.updated_ms < until_ms,
        sagas.c.status.in_(_FINAL),
    )
    ended = (
        select(_minute(sagas.c.updated_ms).label("minute"), sagas.c.status, func.count())
        .where(in_window)
        .group_by("minute", sagas.c.status)
    )
    for row in await conn.execute(ended):
        counts[(int(row[0]), row[1])] = row[2]

    # Durations per name: nearest-rank percentiles by numbering each name's durations.
    duration = (sagas.c.updated_ms - sagas.c.created_ms).label("duration")
    numbered = (
        select(
            sagas.c.name,
            duration,
            func.row_number().over(partition_by=sagas.c.name, order_by=duration).label("n"),
            func.count().over(partition_by=sagas.c.name).label("total"),
            func.sum(case((sagas.c.status == SagaStatus.COMPENSATED.value, 1), else_=0))
            .over(partition_by=sagas.c.name)
            .label("compensated"),
        )
        .where(in_window)
        .subquery()
    )
    # The nearest ranks ceil(p * total / 100), in integer arithmetic.
    r50 = (50 * numbered.c.total + 99) // 100
    r99 = (99 * numbered.c.total + 99) // 100
    picks = (
        select(
            numbered.c.name,
            numbered.c.total,
            numbered.c.compensated,
            func.max(case((numbered.c.n == r50, numbered.c.duration))),
            func.max(case((numbered.c.n == r99, numbered.c.duration))),
        )
        .where((numbered.c.n == r50) | (numbered.c.n == r99))
        .group_by(numbered.c.name, numbered.c.total, numbered.c.compensated)
        .order_by(numbered.c.name)
    )
    names = [
        NameFigures(
            name=row[0],
            completed=int(row[1]) - int(row[2]),
            compensated=int(row[2]),
            p50_ms=int(row[3]),
            p99_ms=int(row[4]),
        )
        for row in await conn.execute(picks)
    ]

    recent = and_(
        sagas.c.updated_ms >= since_ms,
        saga_events.c.saga_id == sagas.c.saga_id,
        saga_events.c.at_ms >= since_ms,
        saga_events.c.at_ms < until_ms,
    )
    stuck = (
        select(_minute(saga_events.c.at_ms).label("minute"), func.count())
        .select_from(sagas.join(saga_events, saga_events.c.saga_id == sagas.c.saga_id))
        .where(recent, saga_events.c.type == EventType.SAGA_STUCK.value)
        .group_by("minute")
    )
    for row in await conn.execute(stuck):
        counts[(int(row[0]), "stuck")] = row[1]
    step = _json_text(saga_events.c.data, "step", sqlite).label("step")
    direction = func.coalesce(_json_text(saga_events.c.data, "direction", sqlite), "forward").label(
        "direction"
    )
    failing = (
        select(sagas.c.name, step, direction, func.count())
        .select_from(sagas.join(saga_events, saga_events.c.saga_id == sagas.c.saga_id))
        .where(recent, saga_events.c.type.in_(FAILURES))
        .group_by(sagas.c.name, step, direction)
    )
    failures = {
        (row[0], str(row[1]), str(row[2])): int(row[3]) for row in await conn.execute(failing)
    }
    return Tally(
        since_ms=since_ms,
        until_ms=until_ms,
        statuses={status: statuses[status] for status in SagaStatus},
        healths={health: healths[health] for health in Health},
        minutes=series(since_ms, until_ms, counts),
        names=names,
        failing_steps=top_failures(failures),
    )


async def done_by_hand(conn: AsyncConnection, saga_ids: Sequence[str]) -> set[str]:
    """Which of ``saga_ids`` have an ``operator_action`` event marking a step done by hand."""
    sqlite = conn.dialect.name == "sqlite"
    action = _json_text(saga_events.c.data, "action", sqlite)
    found: set[str] = set()
    unique = list(dict.fromkeys(saga_ids))
    for start in range(0, len(unique), 500):
        query = (
            select(saga_events.c.saga_id)
            .where(
                saga_events.c.saga_id.in_(unique[start : start + 500]),
                saga_events.c.type == EventType.OPERATOR_ACTION.value,
                action.in_(sorted(BY_HAND_ACTIONS)),
            )
            .distinct()
        )
        found.update(row[0] for row in await conn.execute(query))
    return found
