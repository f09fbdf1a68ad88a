"""Long-running commands: a handler accepts, and the command is completed later from anywhere.

Driven over a real nats-server with raw NATS requests built from ``saga.protocol.Command`` (no
coordinator yet), against the memory store, a SQLite file and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from saga.errors import CompletionRefused, ProtocolError
from saga.participant import (
    Accepted,
    CommandContext,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    Participant,
    RecordState,
    SqlIdempotencyStore,
)
from saga.protocol import (
    COMPLETIONS_SUBJECT,
    HEADER_DIRECTION,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_SAGA_ID,
    HEADER_STEP,
    Command,
    Direction,
    Outcome,
    Reply,
)
from saga.transport.nats_server import NatsServer

pytestmark = pytest.mark.nats

JsonObject = dict[str, Any]
TIMEOUT_S = 30.0


def command(
    saga_id: str = "saga-1",
    *,
    direction: Direction = Direction.FORWARD,
    attempt: int = 1,
    **payload: Any,
) -> Command:
    return Command(
        saga_id=saga_id,
        saga_name="order",
        step="ship",
        direction=direction,
        attempt=attempt,
        service="shipping",
        command="unship" if direction is Direction.COMPENSATE else "ship",
        payload=payload,
    )


def token_of(saga_id: str) -> str:
    return f"{saga_id}/ship/forward"


@dataclass
class Shipping:
    """A service whose ``ship`` hands the work to a carrier (accepts), and ``unship`` undoes it."""

    participant: Participant
    shipped: list[str] = field(default_factory=list)
    undone: list[JsonObject | None] = field(default_factory=list)


def shipping(store: IdempotencyStore) -> Shipping:
    service = Shipping(Participant("shipping", store=store))

    @service.participant.command("ship")
    async def ship(ctx: CommandContext, request: JsonObject) -> Accepted:
        service.shipped.append(ctx.saga_id)
        return ctx.accept()

    @service.participant.command("unship")
    async def unship(ctx: CommandContext, request: JsonObject) -> JsonObject:
        service.undone.append(ctx.forward_result)
        return {"undone": ctx.forward_result is not None}

    return service


StoreFactory = Callable[[], IdempotencyStore]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest) -> StoreFactory:
    """Makes stores that share their records: as replicas or workers of one service would."""
    if request.param == "memory":
        shared = InMemoryIdempotencyStore()
        return lambda: shared
    url: str = request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "postgres_url"
    )
    return lambda: SqlIdempotencyStore(url)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
async def announced(nc: Client) -> AsyncIterator[Subscription]:
    sub = await nc.subscribe(COMPLETIONS_SUBJECT)
    await nc.flush()
    yield sub
    await sub.unsubscribe()


@pytest.fixture
async def served(
    stores: StoreFactory, nats_server: NatsServer, announced: Subscription
) -> AsyncIterator[Shipping]:
    service = shipping(stores())
    async with service.participant.serving(nats_server.url):
        yield service
    await service.participant.store.close()


async def ask(nc: Client, cmd: Command) -> Reply:
    msg = await nc.request(cmd.subject, cmd.body(), timeout=TIMEOUT_S, headers=cmd.headers())
    return Reply.decode(headers=msg.headers, body=msg.data)


async def next_announcement(sub: Subscription) -> Msg:
    return await sub.next_msg(timeout=TIMEOUT_S)


def assert_announces(msg: Msg, saga_id: str) -> None:
    assert msg.subject == COMPLETIONS_SUBJECT
    assert msg.data == b""
    assert msg.headers is not None
    assert {
        k: msg.headers.get(k)
        for k in (HEADER_SAGA_ID, HEADER_STEP, HEADER_DIRECTION, HEADER_IDEMPOTENCY_KEY)
    } == {
        HEADER_SAGA_ID: saga_id,
        HEADER_STEP: "ship",
        HEADER_DIRECTION: "forward",
        HEADER_IDEMPOTENCY_KEY: token_of(saga_id),
    }


async def test_accepted_then_heartbeats_then_completed_each_answered_from_the_store(
    served: Shipping, nc: Client, announced: Subscription
) -> None:
    participant = served.participant
    token = token_of("saga-1")
    assert await ask(nc, command(parcel="p-1")) == Reply.accepted(token, 0)
    assert await ask(nc, command(parcel="p-1")) == Reply.accepted(token, 0)
    assert served.shipped == ["saga-1"], "a repeat is answered without running the handler"

    assert await participant.heartbeat(token) == 1
    assert_announces(await next_announcement(announced), "saga-1")
    assert await participant.heartbeat(token) == 2
    assert_announces(await next_announcement(announced), "saga-1")
    assert await ask(nc, command(parcel="p-1")) == Reply.accepted(token, 2)

    await participant.complete(token, {"tracking": "T-1"})
    assert_announces(await next_announcement(announced), "saga-1")
    assert await ask(nc, command(parcel="p-1")) == Reply.succeeded({"tracking": "T-1"})
    assert await ask(nc, command(attempt=2)) == Reply.succeeded({"tracking": "T-1"})
    assert served.shipped == ["saga-1"]

    await participant.complete(token, {"tracking": "T-1"})  # the same again: a no-op
    assert_announces(await next_announcement(announced), "saga-1")  # announced again
    with pytest.raises(CompletionRefused, match="completed already") as refused:
        await participant.complete(token, {"tracking": "T-2"})
    assert not refused.value.compensated
    assert refused.value.recorded == {"outcome": "succeeded", "result": {"tracking": "T-1"}}
    with pytest.raises(CompletionRefused, match="completed already"):
        await participant.reject(token, "lost", "the parcel is lost")
    with pytest.raises(CompletionRefused, match="completed already"):
        await participant.heartbeat(token)
    assert await ask(nc, command()) == Reply.succeeded({"tracking": "T-1"})


async def test_a_worker_sharing_the_store_completes_and_announces(
    served: Shipping, stores: StoreFactory, nats_server: NatsServer, announced: Subscription
) -> None:
    async with await nats.connect(nats_server.url) as worker_nc:
        assert (await ask(worker_nc, command("saga-w"))).outcome is Outcome.ACCEPTED
        # Another process of the service: no handlers, not serving, its own store object.
        worker = Participant("shipping", store=stores())
        try:
            completer = worker.completer(worker_nc)
            assert await completer.heartbeat(token_of("saga-w")) == 1
            assert_announces(await next_announcement(announced), "saga-w")
            await completer.complete(token_of("saga-w"), {"tracking": "W-1"})
            assert_announces(await next_announcement(announced), "saga-w")
        finally:
            await worker.store.close()
        assert await ask(worker_nc, command("saga-w")) == Reply.succeeded({"tracking": "W-1"})


async def test_a_completer_without_nats_records_only(
    served: Shipping, stores: StoreFactory, nc: Client
) -> None:
    assert (await ask(nc, command("saga-q"))).outcome is Outcome.ACCEPTED
    worker = Participant("shipping", store=stores())
    try:
        await worker.completer().reject(token_of("saga-q"), "no_carrier", "no carrier", {"n": 0})
    finally:
        await worker.store.close()
    assert await ask(nc, command("saga-q")) == Reply.rejected("no_carrier", "no carrier", {"n": 0})


async def test_compensation_before_completion_closes_the_command(
    served: Shipping, nc: Client, announced: Subscription
) -> None:
    participant, token = served.participant, token_of("saga-c")
    assert (await ask(nc, command("saga-c"))).outcome is Outcome.ACCEPTED
    undo = command("saga-c", direction=Direction.COMPENSATE)
    assert await ask(nc, undo) == Reply.succeeded({"undone": False})
    assert served.undone == [None], "nothing completed: the compensation gets no result"

    with pytest.raises(CompletionRefused, match="compensation has closed it") as refused:
        await participant.complete(token, {"tracking": "late"})
    assert refused.value.compensated
    assert refused.value.token == token
    assert refused.value.saga_id == "saga-c"
    assert refused.value.step == "ship"
    with pytest.raises(CompletionRefused) as beat:
        await participant.heartbeat(token)
    assert beat.value.compensated, "a heartbeat tells the worker to stop"
    with pytest.raises(CompletionRefused):
        await participant.fail(token, "carrier_down", "carrier down")

    forward = await ask(nc, command("saga-c"))
    assert forward.outcome is Outcome.FAILED
    assert forward.final
    assert forward.error is not None
    assert forward.error.code == "forward_compensated"
    assert await ask(nc, undo) == Reply.succeeded({"undone": False})
    assert served.undone == [None], "the compensation ran once"
    assert served.shipped == ["saga-c"]


async def test_completion_before_compensation_is_the_forward_result(
    served: Shipping, nc: Client
) -> None:
    assert (await ask(nc, command("saga-d"))).outcome is Outcome.ACCEPTED
    await served.participant.complete(token_of("saga-d"), {"tracking": "D-1"})
    undo = command("saga-d", direction=Direction.COMPENSATE)
    assert await ask(nc, undo) == Reply.succeeded({"undone": True})
    assert served.undone == [{"tracking": "D-1"}]


async def test_a_rejection_or_a_final_failure_is_the_answer_for_good(
    served: Shipping, nc: Client
) -> None:
    participant = served.participant
    for saga_id in ("saga-r", "saga-f"):
        assert (await ask(nc, command(saga_id))).outcome is Outcome.ACCEPTED
    await participant.reject(token_of("saga-r"), "no_address", "no such address")
    await participant.fail(token_of("saga-f"), "crushed", "the parcel was crushed", final=True)
    await participant.fail(token_of("saga-f"), "crushed", "the parcel was crushed", final=True)
    for attempt in (1, 2):
        assert await ask(nc, command("saga-r", attempt=attempt)) == Reply.rejected(
            "no_address", "no such address"
        )
        assert await ask(nc, command("saga-f", attempt=attempt)) == Reply.failed(
            "crushed", "the parcel was crushed", final=True
        )
    assert sorted(served.shipped) == ["saga-f", "saga-r"]
    undo = command("saga-r", direction=Direction.COMPENSATE)
    assert await ask(nc, undo) == Reply.succeeded({"forward_rejected": True})
    assert served.undone == [], "a rejected command had no effect to undo"


async def test_a_failure_for_a_retry_answers_its_attempt_and_a_retry_runs_again(
    served: Shipping, nc: Client
) -> None:
    participant, token = served.participant, token_of("saga-t")
    assert (await ask(nc, command("saga-t"))).outcome is Outcome.ACCEPTED
    await participant.heartbeat(token)
    await participant.fail(token, "carrier_busy", "try later", details={"wait_s": 60})
    busy = Reply.failed("carrier_busy", "try later", {"wait_s": 60})
    assert await ask(nc, command("saga-t")) == busy, "a re-send of attempt 1 learns of it"
    record = await participant.store.get(f"shipping:{token}")
    assert record is not None
    assert (record.state, record.attempt) == (RecordState.RETRYABLE, 1)
    await participant.fail(token, "carrier_busy", "try later", details={"wait_s": 60})  # no-op
    assert served.shipped == ["saga-t"]

    assert await ask(nc, command("saga-t", attempt=2)) == Reply.accepted(token, 0)
    assert served.shipped == ["saga-t", "saga-t"], "the retry ran the handler again"
    assert await ask(nc, command("saga-t", attempt=1)) == Reply.accepted(token, 0)
    await participant.complete(token, {"tracking": "T-2"})
    assert await ask(nc, command("saga-t", attempt=2)) == Reply.succeeded({"tracking": "T-2"})


async def test_a_failure_for_a_retry_then_compensation_runs_the_compensation(
    served: Shipping, nc: Client
) -> None:
    assert (await ask(nc, command("saga-u"))).outcome is Outcome.ACCEPTED
    await served.participant.fail(token_of("saga-u"), "carrier_busy", "try later")
    undo = command("saga-u", direction=Direction.COMPENSATE)
    assert await ask(nc, undo) == Reply.succeeded({"undone": False})
    assert served.undone == [None], "the attempt may have had an effect: it is compensated"
    forward = await ask(nc, command("saga-u", attempt=2))
    assert forward.error is not None
    assert forward.error.code == "forward_abandoned", "no retry runs after the compensation"


@pytest.mark.parametrize(
    "token",
    [
        "saga-1/ship/compensate",
        "saga-1/ship",
        "saga 1/ship/forward",
        "saga-1/sh ip/forward",
        "a/b/c/forward",
        "",
    ],
)
async def test_a_malformed_token_is_refused(served: Shipping, token: str) -> None:
    with pytest.raises(CompletionRefused, match="not a completion token") as refused:
        await served.participant.complete(token, {})
    assert refused.value.token == token


async def test_a_result_that_is_not_json_is_refused_and_changes_nothing(
    served: Shipping, nc: Client
) -> None:
    assert (await ask(nc, command("saga-j"))).outcome is Outcome.ACCEPTED
    with pytest.raises(ProtocolError):
        await served.participant.complete(token_of("saga-j"), {"when": object()})
    assert await ask(nc, command("saga-j")) == Reply.accepted(token_of("saga-j"))
    await served.participant.complete(token_of("saga-j"), {"when": "now"})
    assert await ask(nc, command("saga-j")) == Reply.succeeded({"when": "now"})


async def test_an_unknown_token_is_refused(served: Shipping, nc: Client) -> None:
    participant = served.participant
    for call in (
        participant.complete(token_of("saga-none"), {}),
        participant.reject(token_of("saga-none"), "no", "no"),
        participant.fail(token_of("saga-none"), "no", "no", final=True),
        participant.heartbeat(token_of("saga-none")),
    ):
        with pytest.raises(CompletionRefused, match="no command for token") as refused:
            await call
        assert refused.value.recorded is None
        assert not refused.value.compensated
    assert await served.participant.store.get("shipping:saga-none/ship/forward") is None


async def test_a_command_answered_at_once_is_not_completed_later(
    stores: StoreFactory, nats_server: NatsServer, nc: Client
) -> None:
    service = Participant("shipping", store=stores())

    @service.command("ship")
    async def ship(ctx: CommandContext, request: JsonObject) -> JsonObject:
        return {"tracking": "now"}

    try:
        async with service.serving(nats_server.url):
            assert await ask(nc, command("saga-n")) == Reply.succeeded({"tracking": "now"})
            with pytest.raises(CompletionRefused, match="completed already"):
                await service.complete(token_of("saga-n"), {"tracking": "later"})
            assert await ask(nc, command("saga-n")) == Reply.succeeded({"tracking": "now"})
    finally:
        await service.store.close()


async def test_a_job_that_finishes_before_its_acceptance_is_recorded_wins(
    stores: StoreFactory, nats_server: NatsServer, nc: Client, announced: Subscription
) -> None:
    service = Participant("shipping", store=stores())

    @service.command("ship")
    async def ship(ctx: CommandContext, request: JsonObject) -> Accepted:
        await service.complete(ctx.token, {"tracking": "fast"})  # the job was that quick
        return ctx.accept()

    try:
        async with service.serving(nats_server.url):
            assert await ask(nc, command("saga-x")) == Reply.succeeded({"tracking": "fast"})
            assert_announces(await next_announcement(announced), "saga-x")
            assert await ask(nc, command("saga-x")) == Reply.succeeded({"tracking": "fast"})
            record = await service.store.get("shipping:saga-x/ship/forward")
            assert record is not None
            assert record.state is RecordState.DONE
    finally:
        await service.store.close()


async def test_a_compensation_cannot_be_accepted(
    stores: StoreFactory, nats_server: NatsServer, nc: Client
) -> None:
    service = Participant("shipping", store=stores())

    @service.command("ship")
    async def ship(ctx: CommandContext, request: JsonObject) -> JsonObject:
        return {}

    @service.command("unship")
    async def unship(ctx: CommandContext, request: JsonObject) -> Accepted:
        return ctx.accept()

    try:
        async with service.serving(nats_server.url):
            await ask(nc, command("saga-y"))
            reply = await ask(nc, command("saga-y", direction=Direction.COMPENSATE))
            assert reply.outcome is Outcome.FAILED
            assert not reply.final
            assert reply.error is not None
            assert "cannot be accepted" in reply.error.message
    finally:
        await service.store.close()


async def test_a_completion_racing_the_compensation_has_one_winner(
    stores: StoreFactory,
) -> None:
    # Two objects on one store (for SQL, two engines: two processes, in effect) race per key.
    server, worker = shipping(stores()), Participant("shipping", store=stores())
    sagas = [f"race-{n}" for n in range(12)]
    try:
        for saga_id in sagas:
            assert (await server.participant.handle(command(saga_id))).outcome is Outcome.ACCEPTED

        refusals: list[CompletionRefused] = []

        async def complete(saga_id: str) -> bool:
            try:
                await worker.complete(token_of(saga_id), {"tracking": saga_id})
            except CompletionRefused as exc:
                refusals.append(exc)
                return False
            return True

        async def compensate(saga_id: str) -> Reply:
            undo = command(saga_id, direction=Direction.COMPENSATE)
            return await server.participant.handle(undo)

        async def race(n: int, saga_id: str) -> tuple[bool, Reply]:
            if n % 2:  # who starts first alternates, so both sides win some
                undone, completed = await asyncio.gather(compensate(saga_id), complete(saga_id))
                return completed, undone
            return await asyncio.gather(complete(saga_id), compensate(saga_id))

        results = await asyncio.gather(*(race(n, s) for n, s in enumerate(sagas)))
        assert all(refused.compensated for refused in refusals)
        expected_undone: list[JsonObject | None] = []
        for saga_id, (completed, undone) in zip(sagas, results, strict=True):
            assert undone == Reply.succeeded({"undone": completed}), saga_id
            expected_undone.append({"tracking": saga_id} if completed else None)
            record = await server.participant.store.get(f"shipping:{token_of(saga_id)}")
            assert record is not None
            assert record.reply is not None
            assert (record.reply.outcome is Outcome.SUCCEEDED) is completed, saga_id
        assert sorted(server.undone, key=str) == sorted(expected_undone, key=str)
    finally:
        await server.participant.store.close()
        await worker.store.close()
