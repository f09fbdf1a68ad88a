"""Every list query is served by an index: EXPLAIN on SQLite and PostgreSQL, and migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from saga.events import Health, SagaStatus
from saga.log.base import SagaQuery, TimeRange
from saga.log.paging import encode_cursor
from saga.log.sql import SqlSagaLog
from saga.log.sql.query import find_query
from saga.log.sql.schema import sagas
from saga.testing.log_contract import T0

FILTERS: list[tuple[dict[str, Any], str | None]] = [
    ({}, "ix_sagas_created_ms_saga_id"),
    ({"statuses": [SagaStatus.STUCK]}, "ix_sagas_status_created_ms_saga_id"),
    ({"name": "order"}, "ix_sagas_name_created_ms_saga_id"),
    ({"healths": [Health.RETRYING]}, "ix_sagas_health_created_ms_saga_id"),
    ({"healths": [Health.STUCK], "stalled_before_ms": T0}, "ix_sagas_health_created_ms_saga_id"),
    ({"current_step": "credit"}, "ix_sagas_current_step_created_ms_saga_id"),
    ({"waiting_for": "approved"}, "ix_sagas_waiting_for_created_ms_saga_id"),
    (
        {"waiting_for": "approved", "cursor": encode_cursor(T0 + 500, "s-500")},
        "ix_sagas_waiting_for_created_ms_saga_id",
    ),
    ({"created": TimeRange(since_ms=T0, before_ms=T0 + 10)}, "ix_sagas_created_ms_saga_id"),
    ({"updated": TimeRange(since_ms=T0, before_ms=T0 + 10)}, None),
    (
        {"statuses": [SagaStatus.RUNNING], "cursor": encode_cursor(T0 + 5, "s-5")},
        "ix_sagas_status_created_ms_saga_id",
    ),
]
"""Each filter, and the index that should serve it (None: any index will do)."""


@pytest.fixture
async def log(sql_url: str) -> AsyncIterator[SqlSagaLog]:
    """A SQL log holding 3000 sagas, one in ten of them stuck, half of those waiting for an
    event, with fresh statistics."""
    log = SqlSagaLog(sql_url)
    await log.open()
    rows = [
        {
            "saga_id": f"s-{i}",
            "name": "travel" if i % 10 else "order",
            "version": 1,
            "status": "completed" if i % 10 else "stuck",
            "input": {},
            "created_ms": T0 + i,
            "updated_ms": T0 + i + 5,
            "last_seq": 1,
            "current_step": None if i % 10 else "credit",
            "health": None if i % 10 else "stuck",
            "waiting_for": None if i % 20 else "approved",
        }
        for i in range(3000)
    ]
    async with log.engine.begin() as conn:
        await conn.execute(sagas.insert(), rows)
        await conn.execute(text("ANALYZE"))
    yield log
    await log.close()


@pytest.mark.parametrize(("filters", "index"), FILTERS)
async def test_every_list_query_uses_an_index(
    log: SqlSagaLog, filters: dict[str, Any], index: str | None
) -> None:
    engine = log.engine
    query = SagaQuery(limit=50, **filters)
    select_page = find_query(query, sqlite=engine.dialect.name == "sqlite")
    sql = str(select_page.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # Tiny tables make a sequential scan cheapest; forbid it to see whether an index
            # can serve the query at all (it still runs sequentially when none can).
            await conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(row[0] for row in await conn.execute(text(f"EXPLAIN {sql}")))
            assert "Seq Scan" not in plan, plan
        else:
            found = await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
            plan = "\n".join(str(row[-1]) for row in found)
            scans = [line for line in plan.splitlines() if "sagas" in line]
            assert scans, plan
            assert all("INDEX" in line for line in scans), plan
    assert "ix_sagas_" in plan, plan
    if index is not None:
        assert index in plan, plan
    page = await log.find(query)
    assert len(page.sagas) <= 50


async def test_upgrade_from_0001_backfills_health(sqlite_url: str) -> None:
    from alembic import command
    from sqlalchemy import Connection

    from saga.log.sql.engine import make_engine
    from saga.log.sql.migrate import alembic_config

    engine = make_engine(sqlite_url)

    def to_0001(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "0001")

    async with engine.begin() as conn:
        await conn.run_sync(to_0001)
        for saga_id, status in (("a", "running"), ("b", "stuck"), ("c", "completed")):
            await conn.execute(
                text(
                    "INSERT INTO sagas (saga_id, name, version, status, input, created_ms,"
                    " updated_ms, last_seq) VALUES (:id, 'order', 1, :status, '{}', 1, 1, 1)"
                ),
                {"id": saga_id, "status": status},
            )
    await engine.dispose()
    log = SqlSagaLog(sqlite_url)
    await log.open()
    try:
        healths = {s: (await log.get(s)).health for s in "abc"}  # type: ignore[union-attr]
        assert healths == {"a": Health.PROGRESSING, "b": Health.STUCK, "c": None}
    finally:
        await log.close()
