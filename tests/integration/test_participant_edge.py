"""The participant edge over a real nats-server: effects kept once or undone, never left behind.

Each test runs a coordinator (SQLite log, NatsTransport) against participants served as
``nats.micro`` services, with the in-memory and the SQL idempotency stores.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from saga import (
    CommandContext,
    Coordinator,
    NatsTransport,
    Participant,
    Rejected,
    RetryPolicy,
    Saga,
    SagaStatus,
    SqlIdempotencyStore,
    SqlSagaLog,
    Step,
)
from saga.engine.timeline import timeline
from saga.participant import IdempotencyStore, InMemoryIdempotencyStore
from saga.transport.nats_server import NatsServer

pytestmark = pytest.mark.nats

JsonObject = dict[str, Any]
TIMEOUT_S = 60.0
QUICK = RetryPolicy(initial_interval=timedelta(milliseconds=20), max_attempts=3)

BOOK_THEN_CHECK = Saga(
    name="booking",
    steps=(
        Step(name="book", service="hotel", command="book", compensation="unbook", retry=QUICK,
             timeout=timedelta(seconds=10)),
        Step(name="check", service="hotel", command="check", compensation="uncheck",
             retry=QUICK, timeout=timedelta(seconds=10)),
    ),
)  # fmt: skip
"""Book a room, then a check that the test can make say no (so ``book`` is compensated)."""

STORES = ["memory", "sql"]


@pytest.fixture
async def make_store(tmp_path: Path) -> AsyncIterator[Callable[[str], IdempotencyStore]]:
    made: list[IdempotencyStore] = []

    def make(kind: str) -> IdempotencyStore:
        store: IdempotencyStore = (
            InMemoryIdempotencyStore()
            if kind == "memory"
            else SqlIdempotencyStore(f"sqlite:///{tmp_path / f'idem-{len(made)}.db'}")
        )
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def coordinator(
    nats_server: NatsServer, sqlite_url: str
) -> AsyncIterator[Callable[..., Coordinator]]:
    opened: list[Coordinator] = []

    def make(*sagas: Saga, max_payload_bytes: int | None = None) -> Coordinator:
        transport = (
            NatsTransport(nats_server.url)
            if max_payload_bytes is None
            else NatsTransport(nats_server.url, max_payload_bytes=max_payload_bytes)
        )
        coord = Coordinator(
            SqlSagaLog(sqlite_url), transport, sagas=list(sagas or [BOOK_THEN_CHECK])
        )
        opened.append(coord)
        return coord

    yield make
    for coord in opened:
        await coord.close()


class Hotel:
    """Rooms booked by saga id, in a dict (memory) or, transactionally, in a SQL table."""

    def __init__(self, store: IdempotencyStore, **options: Any) -> None:
        self.participant = Participant("hotel", store=store, **options)
        self.rooms: dict[str, int] = {}
        """saga id -> rooms held; an effect applied twice shows as 2."""
        self.book_calls = 0
        self.unbook_calls: list[JsonObject | None] = []
        self.raise_after_booking = 0
        """How many ``book`` calls apply their effect and then raise (a downstream failure)."""
        self.reject_check = False
        self.blob = ""
        """Added to ``book``'s result when set: a result as large as the test needs."""

        @self.participant.command("book")
        async def book(ctx: CommandContext, request: JsonObject) -> JsonObject:
            self.book_calls += 1
            # Idempotent by business key (as a real service is): a retry does not book twice.
            self.rooms[ctx.saga_id] = 1
            if self.raise_after_booking:
                self.raise_after_booking -= 1
                raise ConnectionError("the channel manager is down (after our commit)")
            return {"room": 101, **request, **({"blob": self.blob} if self.blob else {})}

        @self.participant.command("unbook")
        async def unbook(ctx: CommandContext, request: JsonObject) -> JsonObject:
            self.unbook_calls.append(ctx.forward_result)
            # Nothing to undo is success: the forward attempt may not have taken effect.
            self.rooms.pop(ctx.saga_id, None)
            return {}

        self._add_check()

    def _add_check(self) -> None:
        @self.participant.command("check")
        async def check(ctx: CommandContext, request: JsonObject) -> JsonObject:
            if self.reject_check:
                raise Rejected("the guest is on a blocklist", code="blocked")
            return {}

        @self.participant.command("uncheck")
        async def uncheck(ctx: CommandContext, request: JsonObject) -> JsonObject:
            return {}


@pytest.mark.parametrize("store_kind", STORES)
async def test_a_handler_that_commits_then_raises_is_compensated_by_its_handler(
    nats_server: NatsServer, coordinator: Callable[..., Coordinator],
    make_store: Callable[[str], IdempotencyStore], store_kind: str,
) -> None:  # fmt: skip
    hotel = Hotel(make_store(store_kind))
    hotel.raise_after_booking = 100  # every attempt books, then fails
    async with hotel.participant.serving(nats_server.url), coordinator() as coord:
        result = await asyncio.wait_for(coord.execute(BOOK_THEN_CHECK, {}, saga_id="s1"), TIMEOUT_S)
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated == ["book"]
    assert hotel.unbook_calls == [None], "the compensation handler ran (no result was recorded)"
    assert hotel.rooms == {}, "the booking made before the failure is undone"
    assert hotel.book_calls == QUICK.max_attempts


@pytest.mark.parametrize("store_kind", STORES)
async def test_a_failed_attempt_then_a_success_compensates_with_the_result(
    nats_server: NatsServer, coordinator: Callable[..., Coordinator],
    make_store: Callable[[str], IdempotencyStore], store_kind: str,
) -> None:  # fmt: skip
    hotel = Hotel(make_store(store_kind))
    hotel.raise_after_booking = 1
    hotel.reject_check = True
    async with hotel.participant.serving(nats_server.url), coordinator() as coord:
        result = await asyncio.wait_for(coord.execute(BOOK_THEN_CHECK, {"n": 1}), TIMEOUT_S)
    assert result.status is SagaStatus.COMPENSATED
    assert hotel.book_calls == 2
    assert hotel.unbook_calls == [{"room": 101, "n": 1}]
    assert hotel.rooms == {}


class SqlHotel:
    """The transactional inbox: a booking row and its idempotency record commit together."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.participant = Participant("hotel", store=SqlIdempotencyStore(engine))
        self.raise_after_booking = 0
        self.reject_check = False
        self.book_calls = 0

        @self.participant.command("book", transactional=True)
        async def book(ctx: CommandContext, request: JsonObject) -> JsonObject:
            self.book_calls += 1
            conn = ctx.connection
            await conn.execute(BOOKINGS.insert().values(saga_id=ctx.saga_id, kind="book"))
            if self.raise_after_booking:
                self.raise_after_booking -= 1
                raise ConnectionError("raised after writing the booking")
            return {"room": 7}

        @self.participant.command("unbook", transactional=True)
        async def unbook(ctx: CommandContext, request: JsonObject) -> JsonObject:
            await ctx.connection.execute(
                BOOKINGS.insert().values(saga_id=ctx.saga_id, kind="unbook")
            )
            return {"undid": ctx.forward_result}

        Hotel._add_check(self)  # type: ignore[arg-type]

    async def ledger(self) -> list[tuple[str, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(BOOKINGS.c.saga_id, BOOKINGS.c.kind))
            return sorted((r.saga_id, r.kind) for r in rows)


BOOKINGS = sa.Table(
    "bookings",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("saga_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),
)


@pytest.fixture
async def hotel_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'hotel.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(BOOKINGS.metadata.create_all)
    yield engine
    await engine.dispose()


async def test_the_transactional_inbox_keeps_an_effect_once_or_not_at_all(
    nats_server: NatsServer, coordinator: Callable[..., Coordinator], hotel_engine: AsyncEngine
) -> None:
    hotel = SqlHotel(hotel_engine)
    hotel.raise_after_booking = 1  # attempt 1 writes its booking, then raises: rolled back
    async with hotel.participant.serving(nats_server.url), coordinator() as coord:
        kept = await asyncio.wait_for(coord.execute(BOOK_THEN_CHECK, {}, saga_id="kept"), TIMEOUT_S)
        hotel.raise_after_booking = 1
        hotel.reject_check = True
        undone = await asyncio.wait_for(
            coord.execute(BOOK_THEN_CHECK, {}, saga_id="undone"), TIMEOUT_S
        )
        hotel.raise_after_booking = 100
        failed = await asyncio.wait_for(
            coord.execute(BOOK_THEN_CHECK, {}, saga_id="failed"), TIMEOUT_S
        )
    assert kept.status is SagaStatus.COMPLETED
    assert undone.status is SagaStatus.COMPENSATED
    assert failed.status is SagaStatus.COMPENSATED
    # One booking per saga that kept it, one undo per compensation; no rolled-back attempt.
    assert await hotel.ledger() == [
        ("failed", "unbook"),
        ("kept", "book"),
        ("undone", "book"),
        ("undone", "unbook"),
    ]
    record = await hotel.participant.store.get("hotel:undone/book/compensate")
    assert record is not None
    assert record.reply is not None
    assert record.reply.result == {"undid": {"room": 7}}


def test_a_transactional_command_needs_a_store_that_joins_transactions() -> None:
    from saga import DefinitionError

    participant = Participant("hotel")
    with pytest.raises(DefinitionError, match="cannot join"):
        participant.command("book", transactional=True)


@pytest.mark.parametrize("store_kind", STORES)
@pytest.mark.parametrize(
    ("result_bytes", "participant_limit", "coordinator_limit", "limit_shown"),
    [
        (600_000, None, None, 524_288),  # over the participant's own (default) limit
        (300_000, None, 100_000, 100_000),  # over the limit the coordinator announced
        (1_500_000, 4_000_000, 4_000_000, None),  # over the NATS server's max_payload (1 MiB)
    ],
)
async def test_a_result_too_large_is_compensated_with_the_reason_in_the_timeline(
    nats_server: NatsServer, coordinator: Callable[..., Coordinator],
    make_store: Callable[[str], IdempotencyStore], store_kind: str, result_bytes: int,
    participant_limit: int | None, coordinator_limit: int | None, limit_shown: int | None,
) -> None:  # fmt: skip
    options = {} if participant_limit is None else {"max_payload_bytes": participant_limit}
    hotel = Hotel(make_store(store_kind), **options)
    hotel.blob = big = "x" * result_bytes
    async with (
        hotel.participant.serving(nats_server.url),
        coordinator(max_payload_bytes=coordinator_limit) as coord,
    ):
        result = await asyncio.wait_for(
            coord.execute(BOOK_THEN_CHECK, {}, saga_id="big"), TIMEOUT_S
        )
        events = await coord.log.events("big")
    assert result.status is SagaStatus.COMPENSATED
    assert hotel.book_calls == 1, "the handler succeeded once and never ran again"
    assert hotel.rooms == {}
    assert len(hotel.unbook_calls) == 1
    forward = hotel.unbook_calls[0]
    assert forward is not None
    assert forward["blob"] == big, "the compensation handler got the forward result"
    book = next(s for s in timeline(events).steps if s.step == "book")
    errors = [a.error for a in book.attempts if a.error]
    assert [e["code"] for e in errors] == ["result_too_large"], "not a timeout, and no retry"
    if limit_shown is not None:
        assert errors[0]["details"]["limit"] == limit_shown
    assert "effect was taken" in errors[0]["message"]


async def test_replicas_with_separate_stores_are_reported(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def replica(store: IdempotencyStore) -> Participant:
        participant = Participant("twins", store=store)

        @participant.command("do")
        async def do(ctx: CommandContext, request: JsonObject) -> JsonObject:
            return {}

        return participant

    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    transport = NatsTransport(nats_server.url)
    transport.check_stores_every_s = None
    await transport.open(_ignore)
    one, two = SqlIdempotencyStore(shared), SqlIdempotencyStore(shared)
    try:
        async with (
            replica(one).serving(nats_server.url),
            replica(two).serving(nats_server.url),
        ):
            assert await transport.check_participant_stores() == {}
        first, second = InMemoryIdempotencyStore(), InMemoryIdempotencyStore()
        with caplog.at_level(logging.WARNING, logger="saga.transport"):
            async with (
                replica(first).serving(nats_server.url),
                replica(second).serving(nats_server.url),
            ):
                found = await transport.check_participant_stores()
                again = await transport.check_participant_stores()
    finally:
        await transport.close()
        await one.close()
        await two.close()
    assert found == {"twins": {first.identity, second.identity}}
    assert again == found
    warnings = [r for r in caplog.records if "different idempotency stores" in r.getMessage()]
    assert len(warnings) == 1, "each difference is warned about once"


async def _ignore(*_: object) -> None:
    return None
