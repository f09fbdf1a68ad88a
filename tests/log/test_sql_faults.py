"""SqlSagaLog survives lost connections: every operation is tried again, and a write whose
COMMIT got through before the connection was lost is not appended twice."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Connection, event

from saga import PoolOptions
from saga.log.base import SagaQuery
from saga.log.sql import SqlSagaLog
from saga.testing.log_contract import T0, advance, new_saga, step_sent


async def kill_other_connections(url: str) -> int:
    """Terminate every server process of ``url``'s database but ours; how many there were."""
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(plain)
    try:
        killed = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            plain.rsplit("/", 1)[1],
        )
    finally:
        await admin.close()
    return len(killed)


@pytest.mark.postgres
@pytest.mark.parametrize("pre_ping", [True, False], ids=["pre-ping", "retry-only"])
async def test_every_operation_survives_killed_connections(
    postgres_url: str, pre_ping: bool
) -> None:
    log = SqlSagaLog(postgres_url, pool=PoolOptions(size=2, pre_ping=pre_ping))
    await log.open()
    try:
        await log.create(new_saga("a"))
        operations: list[tuple[str, Callable[[], Any]]] = [
            ("get", lambda: log.get("a")),
            ("events", lambda: log.events("a")),
            ("find", lambda: log.find(SagaQuery(limit=10))),
            ("unfinished", log.unfinished),
            ("append", lambda: log.append([advance("a", 1, step_sent("x", T0 + 1))])),
            ("create", lambda: log.create(new_saga("b"))),
            ("create_many", lambda: log.create_many([new_saga("c"), new_saga("d")])),
        ]
        for name, operation in operations:
            assert await kill_other_connections(postgres_url) >= 1, name
            await operation()  # the pooled connection was dead: no LogError
        assert [e.seq for e in await log.events("a")] == [1, 2]
        page = await log.find(SagaQuery(limit=10))
        assert [r.saga_id for r in page.sagas] == ["d", "c", "b", "a"]
    finally:
        await log.close()


@pytest.fixture
async def log(sql_url: str) -> AsyncIterator[SqlSagaLog]:
    saga_log = SqlSagaLog(sql_url)
    await saga_log.open()
    yield saga_log
    await saga_log.close()


def lose_the_next_commit_reply(saga_log: SqlSagaLog) -> list[int]:
    """On the next COMMIT, commit for real and then fail as if the answer never came (a lost
    connection on PostgreSQL, a transient error on SQLite): the outcome the caller sees is
    unknown, and it tries again. Counts the commits."""
    lost: list[int] = []
    writer = saga_log._sqlite  # SQLite: appends and creates go through the direct writer
    if writer is not None:
        assert writer._conn is not None
        writer._conn = _LoseCommitAnswer(writer._conn, lost)  # type: ignore[assignment]
        return lost

    def on_commit(conn: Connection) -> None:
        if lost:
            return
        lost.append(1)
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        dbapi.commit()
        raise ConnectionResetError("connection lost while waiting for COMMIT's answer")

    event.listen(saga_log.engine.sync_engine, "commit", on_commit)
    return lost


class _LoseCommitAnswer:
    """A sqlite3 connection whose first COMMIT commits, then raises a transient error."""

    def __init__(self, conn: sqlite3.Connection, lost: list[int]) -> None:
        self._conn = conn
        self._lost = lost

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self._conn.execute(sql, *args)
        if sql == "COMMIT" and not self._lost:
            self._lost.append(1)
            raise sqlite3.OperationalError("database is locked")
        return cursor


async def test_a_retried_append_whose_commit_landed_is_not_appended_twice(
    log: SqlSagaLog,
) -> None:
    await log.create_many([new_saga("a"), new_saga("b")])
    lost = lose_the_next_commit_reply(log)
    await log.append([advance("a", 1, step_sent("x", T0 + 1)), advance("b", 1)])
    assert lost == [1]
    events = await log.events("a")
    assert [(e.seq, e.data) for e in events] == [(1, events[0].data), (2, {"step": "x"})]
    record = await log.get("a")
    assert record is not None
    assert record.last_seq == 2


async def test_a_retried_create_whose_commit_landed_counts_as_created(log: SqlSagaLog) -> None:
    lost = lose_the_next_commit_reply(log)
    record, created = await log.create(new_saga("a", input={"n": 1}))
    assert lost == [1]
    assert created, "our own first try created it: the caller must drive it"
    assert record.saga_id == "a"
    assert [e.seq for e in await log.events("a")] == [1]
    # Someone else's saga with that id is still not ours.
    _, again = await log.create(new_saga("a", input={"n": 2}))
    assert not again


async def test_a_retried_create_many_whose_commit_landed_counts_as_created(
    log: SqlSagaLog,
) -> None:
    await log.create(new_saga("old", input={"n": 0}))
    lost = lose_the_next_commit_reply(log)
    answers = await log.create_many([new_saga("a"), new_saga("old", input={"n": 9})])
    assert lost == [1]
    assert [(r.saga_id, created) for r, created in answers] == [("a", True), ("old", False)]
    assert [e.seq for e in await log.events("a")] == [1]
