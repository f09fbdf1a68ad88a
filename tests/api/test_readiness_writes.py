"""Readiness follows whether the saga log accepts writes; a run of refused writes is logged
sparingly (once with its traceback, then with a count at a slowing pace)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event

from saga import Coordinator, Participant, Saga, SagaStatus, SqlSagaLog, Step
from saga.api import create_app
from saga.participant import CommandContext
from saga.testing import InMemoryTransport

SAGAS = 8


def job_saga() -> Saga:
    return Saga(
        name="job",
        steps=(Step(name="work", service="svc", command="work", compensation="undo"),),
    )


def gated_service(gate: asyncio.Event) -> Participant:
    """One service whose ``work`` answers only once ``gate`` is set."""
    svc = Participant("svc")

    @svc.command("work")
    async def work(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        return {"done": True}

    @svc.command("undo")
    async def undo(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        return {}

    return svc


def refuse_writes(saga_log: SqlSagaLog) -> list[bool]:
    """Make the real SQLite file refuse writes (``PRAGMA query_only``) while the returned flag
    is True, as a full disk would; reads still work. On every connection checked out of the
    engine, and before each transaction of the log's own writer (``saga_log._sqlite``)."""
    refusing = [True]

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA query_only = {int(refusing[0])}")
        cursor.close()

    event.listen(saga_log.engine.sync_engine, "checkout", on_checkout)
    writer = saga_log._sqlite
    assert writer is not None
    assert writer._conn is not None
    writer._conn = _QueryOnlyWhile(writer._conn, refusing)  # type: ignore[assignment]
    return refusing


class _QueryOnlyWhile:
    """A sqlite3 connection that sets ``query_only`` from a flag at each BEGIN."""

    def __init__(self, conn: sqlite3.Connection, refusing: list[bool]) -> None:
        self._conn = conn
        self._refusing = refusing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("BEGIN"):
            self._conn.execute(f"PRAGMA query_only = {int(self._refusing[0])}")
        return self._conn.execute(sql, *args)


async def eventually(condition: Callable[[], bool], within_s: float = 60) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    async with asyncio.timeout(within_s):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0.05)


async def ready(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_readiness_is_503_while_writes_fail_and_the_failures_are_logged_sparingly(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="saga")
    gate = asyncio.Event()
    saga_log = SqlSagaLog(sqlite_url)
    transport = InMemoryTransport([gated_service(gate)])
    coordinator = Coordinator(saga_log, transport, sagas=[job_saga()])
    async with coordinator, TestClient(TestServer(create_app(coordinator))) as client:
        assert (await ready(client))[0] == 200
        handles = [await coordinator.start("job", {"i": i}) for i in range(SAGAS)]
        refusing = refuse_writes(saga_log)
        caplog.clear()
        gate.set()  # every reply now needs a write, which the log refuses
        await eventually(lambda: coordinator.log_writes.failures >= 1)
        # Each saga tries again every second: let a few rounds of refusals pile up.
        await eventually(lambda: coordinator.log_writes.failures >= 3 * SAGAS)
        status, body = await ready(client)
        assert status == 503
        assert body["checks"]["database"] == {"ok": True}  # reads still work
        writes = body["checks"]["writes"]
        assert writes["ok"] is False
        assert "readonly" in writes["error"]
        assert writes["failures"] >= 3 * SAGAS
        failures = coordinator.log_writes.failures

        refusing[0] = False  # the disk has room again
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 60)
        assert [r.status for r in results] == [SagaStatus.COMPLETED] * SAGAS  # nothing lost
        status, body = await ready(client)
        assert status == 200
        assert body["checks"]["writes"] == {"ok": True}

    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum(1 for r in loud if r.exc_info) <= 1, "one traceback at most"
    # Reports at the 1st, 2nd, 4th, 8th ... failure, and one when writes work again.
    assert len(loud) <= failures.bit_length() + 3, [r.getMessage() for r in loud]
    assert any("accepts writes again" in r.getMessage() for r in loud)
