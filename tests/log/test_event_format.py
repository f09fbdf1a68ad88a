"""A log written before event formats existed (migration 0004) still replays, and goes on.

The events below are verbatim what the engine wrote before typed payloads, into a database at
revision 0003 (no ``format`` column): opening it upgrades the schema, every old event reads as
format 1, the saga replays, and what it decides next is stored in the current format.
"""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import JSON, BigInteger, Column, Connection, Integer, MetaData, String, Table

from saga import engine
from saga.events import EVENT_FORMAT, EventType, Health, SagaStatus
from saga.log.base import Append
from saga.log.sql import SqlSagaLog
from saga.log.sql.engine import make_engine
from saga.log.sql.migrate import alembic_config
from saga.protocol import Direction
from tests.testing.shop import pivot_saga

T0 = 1700000000000
ORDER = '{"customer": "alice", "sku": "widget", "qty": 2, "price": 30}'


def _sent(step: str, kind: str, service: str) -> str:
    return (
        f'{{"step": "{step}", "direction": "forward", "attempt": 1, "kind": "{kind}",'
        f' "service": "{service}", "command": "{step}", "payload": {ORDER},'
        ' "timeout_at_ms": 1700000010000}'
    )


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
        '{"step": "charge", "direction": "forward", "attempt": 2, "retry_at_ms": 1700000010100}',
    ),
]

# The two tables as revision 0003 had them, to write rows the way the old SqlSagaLog did.
_old = MetaData()
OLD_SAGAS = Table(
    "sagas", _old,
    Column("saga_id", String), Column("name", String), Column("version", Integer),
    Column("status", String), Column("input", JSON), Column("created_ms", BigInteger),
    Column("updated_ms", BigInteger), Column("last_seq", Integer),
    Column("current_step", String), Column("health", String),
)  # fmt: skip
OLD_EVENTS_TABLE = Table(
    "saga_events", _old,
    Column("saga_id", String), Column("seq", Integer), Column("type", String),
    Column("data", JSON), Column("at_ms", BigInteger),
)  # fmt: skip


async def _write_old_log(url: str) -> None:
    def to_0003(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "0003")

    db = make_engine(url)
    try:
        async with db.begin() as conn:
            await conn.run_sync(to_0003)
            await conn.execute(
                OLD_SAGAS.insert().values(
                    saga_id="old", name="checkout", version=1, status="running",
                    input=json.loads(ORDER), created_ms=T0, updated_ms=T0 + 5, last_seq=6,
                    current_step="charge", health="waiting",
                )
            )  # fmt: skip
            await conn.execute(
                OLD_EVENTS_TABLE.insert(),
                [
                    {"saga_id": "old", "seq": seq, "type": kind, "data": json.loads(data),
                     "at_ms": T0 + seq}
                    for seq, (kind, data) in enumerate(OLD_EVENTS, start=1)
                ],
            )  # fmt: skip
    finally:
        await db.dispose()


async def test_a_log_from_before_formats_replays_and_goes_on(sql_url: str) -> None:
    await _write_old_log(sql_url)
    log = SqlSagaLog(sql_url)
    await log.open()  # upgrades 0003 -> head
    try:
        events = await log.events("old")
        assert [e.format for e in events] == [1] * len(OLD_EVENTS)
        assert [(e.type.value, json.dumps(e.data)) for e in events] == OLD_EVENTS

        state = engine.replay(events)
        assert state.pointer is not None
        assert (state.pointer.step, state.pointer.attempts, state.pointer.phase) == (
            "charge",
            1,
            engine.Phase.WAITING,
        )
        assert state.results() == {"create": {"order_id": "o-1"}}

        decision = engine.decide(pivot_saga(), state, T0 + 10_100)
        [resent] = decision.commands
        assert (resent.step, resent.direction, resent.attempt) == ("charge", Direction.FORWARD, 2)
        await log.append([
            Append(
                saga_id="old", expected_seq=6, events=decision.events,
                status=SagaStatus.RUNNING, current_step="charge", health=Health.RETRYING,
            )
        ])  # fmt: skip

        events = await log.events("old")
        assert (events[-1].type, events[-1].format) == (EventType.STEP_SENT, EVENT_FORMAT)
        again = engine.replay(events)
        assert again.pointer is not None
        assert (again.pointer.attempts, again.pointer.phase) == (2, engine.Phase.IN_FLIGHT)
    finally:
        await log.close()
