"""Sagas started before migration 0006 still finish: a log at revision 0005 holding a running
saga with format-1 events is upgraded when a coordinator opens it, and the coordinator takes
the saga over and completes it.

The rows below are written the way the release at revision 0005 wrote them (its columns, no
owner yet: the saga's coordinator had left), with the events verbatim as its engine wrote them.
"""

from __future__ import annotations

import asyncio
import json

from alembic import command
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    select,
)

from saga.coordinator import Coordinator
from saga.events import EventType, SagaStatus
from saga.log.sql import SqlSagaLog
from saga.log.sql.engine import make_engine
from saga.log.sql.migrate import alembic_config, current_revision, head_revision
from saga.log.sql.schema import sagas
from saga.testing import InMemoryTransport
from tests.testing.shop import Shop, pivot_saga

T0 = 1_700_000_000_000
ORDER = '{"customer": "alice", "sku": "widget", "qty": 2, "price": 30}'


def _sent(step: str, kind: str, service: str) -> str:
    return (
        f'{{"step": "{step}", "direction": "forward", "attempt": 1, "kind": "{kind}",'
        f' "service": "{service}", "command": "{step}", "payload": {ORDER},'
        f' "timeout_at_ms": {T0 + 10_000}}}'
    )


# The checkout saga had created its order; its charge timed out and a retry was scheduled.
OLD_EVENTS = [
    (
        "saga_started",
        f'{{"name": "checkout", "version": 1, "input": {ORDER}, "deadline_at_ms": null}}',
    ),
    ("step_sent", _sent("create", "compensatable", "orders")),
    (
        "step_succeeded",
        '{"step": "create", "direction": "forward", "attempt": 1, "result": {"order_id": "o-1"}}',
    ),
    ("step_sent", _sent("charge", "pivot", "payments")),
    (
        "step_failed",
        '{"step": "charge", "direction": "forward", "attempt": 1, "error": {"code": "timeout",'
        ' "message": "no reply within 0:00:10", "details": {}}}',
    ),
    (
        "retry_scheduled",
        f'{{"step": "charge", "direction": "forward", "attempt": 2, "retry_at_ms": {T0 + 10_100}}}',
    ),
]

# The two tables as revision 0005 had them.
_old = MetaData()
SAGAS_0005 = Table(
    "sagas", _old,
    Column("saga_id", String), Column("name", String), Column("version", Integer),
    Column("status", String), Column("input", JSON), Column("created_ms", BigInteger),
    Column("updated_ms", BigInteger), Column("last_seq", Integer),
    Column("current_step", String), Column("attempt", Integer), Column("health", String),
    Column("owner", String), Column("epoch", Integer),
)  # fmt: skip
EVENTS_0005 = Table(
    "saga_events", _old,
    Column("saga_id", String), Column("seq", Integer), Column("type", String),
    Column("data", JSON), Column("at_ms", BigInteger), Column("format", Integer),
    Column("epoch", Integer),
)  # fmt: skip


async def _write_log_at_0005(url: str) -> None:
    def to_0005(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "0005")

    db = make_engine(url)
    try:
        async with db.begin() as conn:
            await conn.run_sync(to_0005)
            await conn.execute(
                SAGAS_0005.insert().values(
                    saga_id="old", name="checkout", version=1, status="running",
                    input=json.loads(ORDER), created_ms=T0, updated_ms=T0 + 6, last_seq=6,
                    current_step="charge", attempt=1, health="waiting", owner=None, epoch=2,
                )
            )  # fmt: skip
            await conn.execute(
                EVENTS_0005.insert(),
                [
                    {"saga_id": "old", "seq": seq, "type": kind, "data": json.loads(data),
                     "at_ms": T0 + seq, "format": 1, "epoch": 1}
                    for seq, (kind, data) in enumerate(OLD_EVENTS, start=1)
                ],
            )  # fmt: skip
    finally:
        await db.dispose()


async def test_a_saga_from_revision_0005_is_upgraded_and_finished(sql_url: str) -> None:
    await _write_log_at_0005(sql_url)

    # Opening upgrades the schema; the old row has neither new column.
    reader = SqlSagaLog(sql_url)
    await reader.open()
    try:
        async with reader.engine.connect() as conn:
            revision = await conn.run_sync(current_revision)
            row = (await conn.execute(select(sagas).where(sagas.c.saga_id == "old"))).one()
        assert revision == head_revision() == "0006"
        assert (row.status, row.waiting_for, row.due_ms) == ("running", None, None)
    finally:
        await reader.close()

    shop = Shop()
    log = SqlSagaLog(sql_url)
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[pivot_saga()]) as coord:
        result = await asyncio.wait_for(coord.wait("old"), 30)
        assert result.status is SagaStatus.COMPLETED
        record = await log.get("old")
        assert record is not None
        assert (record.status, record.waiting_for, record.due_ms) == (
            SagaStatus.COMPLETED, None, None,
        )  # fmt: skip
        assert record.epoch == 3  # claimed once more, by this coordinator
        events = await log.events("old")
    # The old events read back as they were; what came after is the current format.
    assert [e.format for e in events[:6]] == [1] * 6
    assert [(e.type.value, json.loads(json.dumps(e.data))) for e in events[:6]] == [
        (kind, json.loads(data)) for kind, data in OLD_EVENTS
    ]
    assert events[-1].type is EventType.SAGA_COMPLETED
    # The charge was retried (attempt 2, as scheduled), and the saga shipped.
    assert [(c.step, c.attempt) for c in transport.sent] == [("charge", 2), ("ship", 1)]
    assert shop.charged == {"old": 30}
    assert shop.shipped == ["old"]
