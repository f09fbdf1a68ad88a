"""Long-running commands on the SQL store: the inboxes (an acceptance committed with the handler's
effect, a completion committed with its own effect), the store's conditional writes, and the
migration that adds the heartbeat count and the accepted attempt. SQLite files and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from saga.errors import CompletionRefused, IdempotencyStoreError
from saga.participant import (
    Accepted,
    CommandContext,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    Participant,
    RecordState,
    SqlIdempotencyStore,
)
from saga.participant.migrate import VERSION_TABLE, head_revision
from saga.participant.sql import async_database_url
from saga.protocol import COMPLETIONS_SUBJECT, HEADER_IDEMPOTENCY_KEY, Command, Direction, Reply
from saga.testing.store_contract import NEVER_STALE, T0
from saga.transport.nats_server import NatsServer

JsonObject = dict[str, Any]
TIMEOUT_S = 30.0
TOKEN = "saga-1/ship/forward"
KEY = f"shipping:{TOKEN}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "postgres_url"
    )
    return value


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    made = create_async_engine(async_database_url(url))
    async with made.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE shipments (saga VARCHAR(40), what VARCHAR(40))"))
    yield made
    await made.dispose()


async def shipments(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT saga, what FROM shipments ORDER BY what"))
        return [(row[0], row[1]) for row in rows]


def command(saga_id: str = "saga-1", *, direction: Direction = Direction.FORWARD) -> Command:
    return Command(
        saga_id=saga_id,
        saga_name="order",
        step="ship",
        direction=direction,
        attempt=1,
        service="shipping",
        command="unship" if direction is Direction.COMPENSATE else "ship",
    )


class Shipping:
    """``ship`` queues a job row in the same transaction as its acceptance (the inbox)."""

    def __init__(self, store: IdempotencyStore) -> None:
        self.participant = Participant("shipping", store=store)
        self.undone: list[JsonObject | None] = []

        @self.participant.command("ship", transactional=True)
        async def ship(ctx: CommandContext, request: JsonObject) -> Accepted:
            conn: AsyncConnection = ctx.connection
            await conn.execute(
                sa.text("INSERT INTO shipments VALUES (:saga, 'queued')"), {"saga": ctx.saga_id}
            )
            if request.get("explode"):
                raise RuntimeError("the carrier's API is down")
            return ctx.accept()

        @self.participant.command("unship")
        async def unship(ctx: CommandContext, request: JsonObject) -> JsonObject:
            self.undone.append(ctx.forward_result)
            return {}


@pytest.fixture
async def service(url: str, engine: AsyncEngine) -> AsyncIterator[Shipping]:
    made = Shipping(SqlIdempotencyStore(url))
    yield made
    await made.participant.store.close()


async def test_a_transactional_handler_commits_its_job_with_the_acceptance(
    service: Shipping, engine: AsyncEngine
) -> None:
    participant = service.participant
    assert await participant.handle(command()) == Reply.accepted(TOKEN)
    assert await shipments(engine) == [("saga-1", "queued")]
    record = await participant.store.get(KEY)
    assert record is not None
    assert record.state is RecordState.ACCEPTED
    assert record.attempt == 1

    failing = dataclasses.replace(command("saga-2"), payload={"explode": True})
    reply = await participant.handle(failing)
    assert reply.error is not None
    assert reply.error.code == "handler_error"
    assert await shipments(engine) == [("saga-1", "queued")], "the job rolled back"
    again = await participant.store.get("shipping:saga-2/ship/forward")
    assert again is not None
    assert again.state is RecordState.ATTEMPTED


async def test_a_completion_commits_its_effect_with_it_and_is_announced(
    service: Shipping, engine: AsyncEngine, nats_server: NatsServer
) -> None:
    participant = service.participant
    assert await participant.handle(command()) == Reply.accepted(TOKEN)
    async with await nats.connect(nats_server.url) as nc:
        sub = await nc.subscribe(COMPLETIONS_SUBJECT)
        await nc.flush()
        completer = participant.completer(nc)
        async with completer.completing(TOKEN) as tx:
            await tx.connection.execute(sa.text("INSERT INTO shipments VALUES ('saga-1', 'sent')"))
            await tx.complete({"tracking": "T-1"})
            assert tx.finished
        msg = await sub.next_msg(timeout=TIMEOUT_S)
        assert msg.headers is not None
        assert msg.headers[HEADER_IDEMPOTENCY_KEY] == TOKEN
    assert await shipments(engine) == [("saga-1", "queued"), ("saga-1", "sent")]
    assert await participant.handle(command()) == Reply.succeeded({"tracking": "T-1"})

    with pytest.raises(CompletionRefused, match="completed already"):
        async with participant.completing(TOKEN) as tx:
            await tx.connection.execute(sa.text("INSERT INTO shipments VALUES ('saga-1', 'x')"))
    assert len(await shipments(engine)) == 2, "a repeat never writes the effect twice"

    await participant.handle(command(direction=Direction.COMPENSATE))
    assert service.undone == [{"tracking": "T-1"}]


async def test_a_completion_whose_block_raises_leaves_the_command_accepted(
    service: Shipping, engine: AsyncEngine
) -> None:
    participant = service.participant
    await participant.handle(command())

    async def effect_then_raise() -> None:
        async with participant.completing(TOKEN) as tx:
            await tx.connection.execute(sa.text("INSERT INTO shipments VALUES ('saga-1', 'x')"))
            await tx.fail("label_error", "no label", final=True)
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        await effect_then_raise()
    assert await shipments(engine) == [("saga-1", "queued")]
    assert await participant.handle(command()) == Reply.accepted(TOKEN)
    async with participant.completing(TOKEN) as tx:
        await tx.reject("no_address", "no such address")
    assert await participant.handle(command()) == Reply.rejected("no_address", "no such address")


async def test_a_completion_after_the_compensation_writes_nothing(
    service: Shipping, engine: AsyncEngine
) -> None:
    participant = service.participant
    await participant.handle(command())
    assert await participant.handle(command(direction=Direction.COMPENSATE)) == Reply.succeeded()
    with pytest.raises(CompletionRefused, match="compensation has closed it") as refused:
        async with participant.completing(TOKEN) as tx:
            await tx.connection.execute(sa.text("INSERT INTO shipments VALUES ('saga-1', 'x')"))
    assert refused.value.compensated
    assert await shipments(engine) == [("saga-1", "queued")]
    assert service.undone == [None]


async def test_a_compensation_arriving_during_a_completion_waits_and_gets_its_result(
    service: Shipping, url: str
) -> None:
    # The worker is another process in effect: its own store (engine) on the same database.
    await service.participant.handle(command())
    worker = Participant("shipping", store=SqlIdempotencyStore(url))
    try:
        async with worker.completing(TOKEN) as tx:
            undo = asyncio.create_task(
                service.participant.handle(command(direction=Direction.COMPENSATE))
            )
            await asyncio.sleep(0.3)  # let it reach the locked record (it must wait, not win)
            assert not undo.done()
            await tx.complete({"tracking": "T-9"})
        assert await asyncio.wait_for(undo, TIMEOUT_S) == Reply.succeeded()
    finally:
        await worker.store.close()
    assert service.undone == [{"tracking": "T-9"}]


async def test_the_memory_store_has_no_completion_transactions() -> None:
    participant = Participant("shipping", store=InMemoryIdempotencyStore())
    with pytest.raises(IdempotencyStoreError, match="cannot join a completion's transaction"):
        async with participant.completing(TOKEN):
            pass


async def test_the_stores_conditional_writes(url: str, engine: AsyncEngine) -> None:
    done = Reply.succeeded({"tracking": "T"})
    for store in (InMemoryIdempotencyStore(), SqlIdempotencyStore(url)):
        async with store:
            assert await store.finish("k", reply=done, retry=False, now_ms=T0) is None
            assert await store.cancel("k", reply=done, now_ms=T0) is None
            assert await store.heartbeat("k", now_ms=T0) is None
            await store.claim("k", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
            assert not await store.accept("k", owner="b", attempt=3, now_ms=T0), "not b's claim"
            assert await store.accept("k", owner="a", attempt=3, now_ms=T0 + 1)
            beat = await store.heartbeat("k", now_ms=T0 + 2)
            assert beat is not None
            assert beat.won
            assert (beat.record.heartbeats, beat.record.attempt) == (1, 3)
            taken = await store.claim("k", owner="c", now_ms=T0 + 3, stale_before_ms=T0 + 3)
            assert not taken.won, "an accepted record never goes stale"
            assert await store.abandon(owner_prefix="a") == 0, "nor is it abandoned"
            cancelled = await store.cancel("k", reply=done, now_ms=T0 + 4)
            assert cancelled is not None
            assert cancelled.won
            assert cancelled.record.state is RecordState.DONE
            late = await store.finish("k", reply=done, retry=False, now_ms=T0 + 5)
            assert late is not None
            assert not late.won
            again = await store.cancel("k", reply=done, now_ms=T0 + 6)
            assert again is not None
            assert not again.won
            assert await store.heartbeat("k", now_ms=T0 + 7) == again

            failing = Reply.failed("busy", "try later")
            await store.claim("r", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
            assert await store.accept("r", owner="a", attempt=2, now_ms=T0)
            failed = await store.finish("r", reply=failing, retry=True, now_ms=T0 + 1)
            assert failed is not None
            assert failed.won
            assert (failed.record.state, failed.record.attempt) == (RecordState.RETRYABLE, 2)
            plain = await store.claim("r", owner="b", now_ms=T0 + 2, stale_before_ms=T0 + 9)
            assert not plain.won, "a plain claim never takes a completer's failure"
            same = await store.retake("r", owner="b", now_ms=T0 + 2, attempt=2)
            assert same is not None
            assert not same.won, "a re-send of the failed attempt does not run again"
            assert await store.retake("z", owner="b", now_ms=T0 + 2, attempt=3) is None
            retry = await store.retake("r", owner="b", now_ms=T0 + 2, attempt=3)
            assert retry is not None
            assert retry.won
            assert retry.replaced == failed.record
            assert (retry.record.state, retry.record.owner) == (RecordState.IN_PROGRESS, "b")
            assert (retry.record.reply, retry.record.attempt) == (None, None)
            again_retry = await store.retake("r", owner="c", now_ms=T0 + 3, attempt=4)
            assert again_retry is not None
            assert not again_retry.won, "one taker only"


async def test_a_store_at_revision_0002_is_upgraded_keeping_its_records(
    url: str, engine: AsyncEngine
) -> None:
    async with SqlIdempotencyStore(url):
        pass
    async with engine.begin() as conn:
        # Back to 0002's schema, holding a record, as an older release left it.
        if engine.dialect.name == "sqlite":
            await conn.execute(sa.text("ALTER TABLE saga_idempotency DROP COLUMN heartbeats"))
            await conn.execute(sa.text("ALTER TABLE saga_idempotency DROP COLUMN attempt"))
        else:
            await conn.execute(
                sa.text("ALTER TABLE saga_idempotency DROP COLUMN heartbeats, DROP COLUMN attempt")
            )
        await conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0002'"))
        await conn.execute(
            sa.text(
                "INSERT INTO saga_idempotency (key, state, owner, reply, claimed_at_ms,"
                " updated_ms) VALUES ('old', 'done', 'o', '{\"outcome\":\"succeeded\"}', 1, 1)"
            )
        )
    async with SqlIdempotencyStore(url) as store:
        old = await store.get("old")
        assert old is not None
        assert (old.state, old.heartbeats, old.attempt) == (RecordState.DONE, 0, None)
        await store.claim("new", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
        assert await store.accept("new", owner="a", attempt=1, now_ms=T0)
    async with engine.connect() as conn:
        version = (await conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))).all()
    assert [row[0] for row in version] == [head_revision()] == ["0003"]
