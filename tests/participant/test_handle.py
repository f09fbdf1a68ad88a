"""Participant.handle: idempotency, rejections, transient errors, fencing, concurrency."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest

from saga.errors import DefinitionError, Rejected
from saga.participant import (
    CommandContext,
    IdempotencyRecord,
    InMemoryIdempotencyStore,
    Participant,
)
from saga.participant.locks import KeyedLocks
from saga.participant.store import Claim
from saga.protocol import Command, Direction, Outcome, Reply
from saga.testing.clock import FakeClock

JsonObject = dict[str, Any]


def cmd(
    name: str = "reserve",
    *,
    saga_id: str = "saga-1",
    step: str = "reserve_stock",
    direction: Direction = Direction.FORWARD,
    attempt: int = 1,
    payload: JsonObject | None = None,
    service: str = "inventory",
) -> Command:
    return Command(
        saga_id=saga_id,
        saga_name="order",
        step=step,
        direction=direction,
        attempt=attempt,
        service=service,
        command=name,
        payload=payload if payload is not None else {"sku": "A-1", "qty": 2},
    )


def compensation(**kwargs: Any) -> Command:
    return cmd("release", direction=Direction.COMPENSATE, **kwargs)


class Inventory:
    """A participant with reserve/release and a call log."""

    def __init__(self, store: InMemoryIdempotencyStore | None = None, **kwargs: Any) -> None:
        self.store = store if store is not None else InMemoryIdempotencyStore()
        self.participant = Participant("inventory", store=self.store, **kwargs)
        self.calls: list[tuple[str, CommandContext, JsonObject]] = []
        self.reserve_gate: asyncio.Event | None = None
        self.reserve_started = asyncio.Event()
        self.fail_next: list[BaseException] = []
        self.result_override: JsonObject | None = None

        @self.participant.command("reserve")
        async def reserve(ctx: CommandContext, request: JsonObject) -> JsonObject:
            self.calls.append(("reserve", ctx, request))
            self.reserve_started.set()
            if self.reserve_gate is not None:
                await self.reserve_gate.wait()
            if self.fail_next:
                raise self.fail_next.pop(0)
            if self.result_override is not None:
                return self.result_override
            return {"reservation": f"r-{ctx.saga_id}", "qty": request["qty"]}

        @self.participant.command("release")
        async def release(ctx: CommandContext, request: JsonObject) -> JsonObject:
            self.calls.append(("release", ctx, request))
            return {"released": True, "saw": ctx.forward_result}

    def count(self, name: str) -> int:
        return sum(1 for call in self.calls if call[0] == name)


async def test_a_repeated_command_returns_the_recorded_reply_without_running_again() -> None:
    inv = Inventory()
    first = await inv.participant.handle(cmd())
    again = await inv.participant.handle(cmd(attempt=2))
    assert first == Reply.succeeded({"reservation": "r-saga-1", "qty": 2})
    assert again == first
    assert inv.count("reserve") == 1
    assert inv.participant.replayed == 1
    ctx = inv.calls[0][1]
    assert (ctx.saga_id, ctx.step, ctx.direction, ctx.attempt) == (
        "saga-1",
        "reserve_stock",
        Direction.FORWARD,
        1,
    )
    assert ctx.idempotency_key == "saga-1/reserve_stock/forward"
    assert ctx.forward_result is None


async def test_different_sagas_are_independent() -> None:
    inv = Inventory()
    await inv.participant.handle(cmd(saga_id="a"))
    await inv.participant.handle(cmd(saga_id="b"))
    assert inv.count("reserve") == 2


async def test_a_rejection_is_recorded_and_repeated() -> None:
    inv = Inventory()
    inv.fail_next = [Rejected("out of stock", code="out_of_stock", details={"left": 1})]
    first = await inv.participant.handle(cmd())
    again = await inv.participant.handle(cmd(attempt=2))
    assert first == Reply.rejected("out_of_stock", "out of stock", {"left": 1})
    assert again == first
    assert inv.count("reserve") == 1


async def test_a_rejection_with_unserialisable_details_still_rejects() -> None:
    inv = Inventory()
    inv.fail_next = [Rejected("no", code="nope", details={"obj": object()})]
    reply = await inv.participant.handle(cmd())
    assert reply.outcome is Outcome.REJECTED
    assert reply.error is not None
    assert reply.error.code == "nope"
    assert "details_error" in reply.error.details
    assert await inv.participant.handle(cmd(attempt=2)) == reply


async def test_a_transient_error_is_not_recorded_and_the_retry_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inv = Inventory()
    inv.fail_next = [ConnectionError("db down")]
    with caplog.at_level(logging.ERROR, logger="saga.participant"):
        first = await inv.participant.handle(cmd())
    assert first.outcome is Outcome.FAILED
    assert first.error is not None
    assert first.error.code == "handler_error"
    assert "ConnectionError" in first.error.message
    assert "db down" in first.error.message
    assert any(r.exc_info for r in caplog.records), "the handler's exception is logged"

    retry = await inv.participant.handle(cmd(attempt=2))
    assert retry == Reply.succeeded({"reservation": "r-saga-1", "qty": 2})
    assert inv.count("reserve") == 2
    assert await inv.participant.handle(cmd(attempt=3)) == retry
    assert inv.count("reserve") == 2


async def test_a_cancelled_handler_releases_its_claim() -> None:
    inv = Inventory()
    inv.reserve_gate = asyncio.Event()
    task = asyncio.create_task(inv.participant.handle(cmd()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    inv.reserve_gate.set()
    assert (await inv.participant.handle(cmd(attempt=2))).outcome is Outcome.SUCCEEDED
    assert inv.count("reserve") == 2


@pytest.mark.parametrize(
    ("result", "fragment"),
    [
        (["a", "list"], "list"),
        ("text", "str"),
        ({"when": object()}, "not JSON-serialisable"),
        ({"nan": float("nan")}, "not JSON-serialisable"),
    ],
)
async def test_a_bad_result_is_a_final_failure_recorded_once(result: object, fragment: str) -> None:
    participant = Participant("svc", max_payload_bytes=1000)
    calls = 0

    @participant.command("do")
    async def do(ctx: CommandContext, request: JsonObject) -> Any:
        nonlocal calls
        calls += 1
        return result

    command = cmd("do", service="svc")
    reply = await participant.handle(command)
    assert reply.outcome is Outcome.FAILED
    assert reply.final, "the handler returned: its effect was taken, a retry must not run it"
    assert reply.error is not None
    assert reply.error.code == "bad_result"
    assert fragment in reply.error.message
    assert await participant.handle(cmd("do", service="svc", attempt=2)) == reply
    assert calls == 1, "a bad result is recorded: the handler never runs twice"


async def test_a_result_too_large_to_send_is_recorded_and_answered_with_a_final_error() -> None:
    participant = Participant("svc", max_payload_bytes=1000)
    big = {"blob": "x" * 2000}
    seen: list[JsonObject | None] = []

    @participant.command("do")
    async def do(ctx: CommandContext, request: JsonObject) -> JsonObject:
        seen.append(ctx.forward_result)
        return big

    @participant.command("undo")
    async def undo(ctx: CommandContext, request: JsonObject) -> JsonObject:
        seen.append(ctx.forward_result)
        return {}

    reply = await participant.handle(cmd("do", service="svc"))
    assert reply.outcome is Outcome.FAILED
    assert reply.final
    assert reply.error is not None
    assert reply.error.code == "result_too_large"
    assert "effect was taken" in reply.error.message
    assert reply.error.details["limit"] == 1000
    assert len(reply.encode(1000)) <= 1000
    assert await participant.handle(cmd("do", service="svc", attempt=2)) == reply
    assert len(seen) == 1, "the handler succeeded once and is never run again"
    # The compensation handler receives the forward result that could not be sent.
    comp = await participant.handle(cmd("undo", service="svc", direction=Direction.COMPENSATE))
    assert comp == Reply.succeeded({})
    assert seen == [None, big]


async def test_none_result_is_an_empty_success() -> None:
    participant = Participant("svc")

    @participant.command("noop")
    async def noop(ctx: CommandContext, request: JsonObject) -> None:
        return None

    assert await participant.handle(cmd("noop", service="svc")) == Reply.succeeded({})


async def test_unknown_command_is_rejected_without_touching_the_store() -> None:
    inv = Inventory()
    reply = await inv.participant.handle(cmd("teleport"))
    assert reply.outcome is Outcome.REJECTED
    assert reply.error is not None
    assert reply.error.code == "unknown_command"
    assert reply.error.details["known_commands"] == ["reserve", "release"]
    wrong_service = await inv.participant.handle(cmd(service="payments"))
    assert wrong_service.error is not None
    assert wrong_service.error.code == "unknown_command"
    assert len(inv.store) == 0


# -- fencing -------------------------------------------------------------------------------


async def test_compensation_before_forward_is_fenced_and_the_forward_never_runs() -> None:
    inv = Inventory()
    comp = await inv.participant.handle(compensation())
    assert comp == Reply.succeeded({"fenced": True})
    assert inv.count("release") == 0

    late_forward = await inv.participant.handle(cmd())
    assert late_forward.outcome is Outcome.REJECTED
    assert late_forward.error is not None
    assert late_forward.error.code == "fenced"
    assert inv.count("reserve") == 0
    assert await inv.participant.handle(compensation(attempt=2)) == comp
    assert await inv.participant.handle(cmd(attempt=2)) == late_forward


async def test_compensation_after_forward_runs_with_the_forward_result() -> None:
    inv = Inventory()
    forward = await inv.participant.handle(cmd())
    comp = await inv.participant.handle(compensation())
    assert comp == Reply.succeeded({"released": True, "saw": forward.result})
    ctx = inv.calls[-1][1]
    assert ctx.is_compensation
    assert ctx.forward_result == {"reservation": "r-saga-1", "qty": 2}
    assert ctx.idempotency_key == "saga-1/reserve_stock/compensate"
    assert await inv.participant.handle(compensation(attempt=2)) == comp
    assert inv.count("release") == 1


async def test_compensation_of_a_rejected_forward_has_nothing_to_undo() -> None:
    inv = Inventory()
    inv.fail_next = [Rejected("no stock")]
    await inv.participant.handle(cmd())
    comp = await inv.participant.handle(compensation())
    assert comp == Reply.succeeded({"forward_rejected": True})
    assert inv.count("release") == 0


async def test_compensation_after_a_failed_forward_runs_the_compensation_handler() -> None:
    # The handler may have committed its effect and then raised: the compensation must run.
    inv = Inventory()
    inv.fail_next = [RuntimeError("raised after its commit")]
    assert (await inv.participant.handle(cmd())).outcome is Outcome.FAILED
    comp = await inv.participant.handle(compensation())
    assert comp.outcome is Outcome.SUCCEEDED
    assert comp != Reply.succeeded({"fenced": True})
    assert inv.count("release") == 1
    assert inv.calls[-1][1].forward_result is None, "no result was recorded for the forward"
    late = await inv.participant.handle(cmd(attempt=2))
    assert late.outcome is Outcome.FAILED
    assert late.error is not None
    assert late.error.code == "forward_abandoned"
    assert inv.count("reserve") == 1, "a forward retry after the compensation never runs"


async def test_compensation_after_a_failed_and_retried_forward_gets_the_result() -> None:
    inv = Inventory()
    inv.fail_next = [RuntimeError("flaky")]
    assert (await inv.participant.handle(cmd())).outcome is Outcome.FAILED
    ok = await inv.participant.handle(cmd(attempt=2))
    assert ok.outcome is Outcome.SUCCEEDED
    await inv.participant.handle(compensation())
    assert inv.calls[-1][1].forward_result == ok.result


async def test_compensation_while_the_forward_runs_is_retried_later() -> None:
    inv = Inventory()
    inv.reserve_gate = asyncio.Event()
    forward = asyncio.create_task(inv.participant.handle(cmd()))
    await inv.reserve_started.wait()

    early = await inv.participant.handle(compensation())
    assert early.outcome is Outcome.FAILED
    assert early.error is not None
    assert early.error.code == "forward_in_progress"
    assert inv.count("release") == 0

    inv.reserve_gate.set()
    assert (await forward).outcome is Outcome.SUCCEEDED
    later = await inv.participant.handle(compensation(attempt=2))
    assert later.outcome is Outcome.SUCCEEDED
    assert inv.calls[-1][1].forward_result == {"reservation": "r-saga-1", "qty": 2}


# -- concurrency and replicas --------------------------------------------------------------


async def test_concurrent_duplicates_run_the_handler_once() -> None:
    inv = Inventory()
    inv.reserve_gate = asyncio.Event()
    tasks = [asyncio.create_task(inv.participant.handle(cmd(attempt=n))) for n in range(1, 11)]
    await asyncio.sleep(0.01)
    inv.reserve_gate.set()
    replies = await asyncio.gather(*tasks)
    assert inv.count("reserve") == 1
    assert inv.participant.replayed == 9
    assert all(r == replies[0] for r in replies)
    assert replies[0].outcome is Outcome.SUCCEEDED


async def test_a_replica_sees_a_command_in_progress_elsewhere() -> None:
    store = InMemoryIdempotencyStore()
    one, two = Inventory(store), Inventory(store)
    one.reserve_gate = asyncio.Event()
    running = asyncio.create_task(one.participant.handle(cmd()))
    await one.reserve_started.wait()
    busy = await two.participant.handle(cmd(attempt=2))
    assert busy.outcome is Outcome.FAILED
    assert busy.error is not None
    assert busy.error.code == "in_progress"
    one.reserve_gate.set()
    done = await running
    assert await two.participant.handle(cmd(attempt=3)) == done
    assert two.count("reserve") == 0
    assert (one.participant.replayed, two.participant.replayed) == (0, 1)  # not "in progress"


async def test_a_stale_claim_is_taken_over() -> None:
    clock = FakeClock()
    store = InMemoryIdempotencyStore()
    # A replica claimed the key and died mid-handler.
    key = "inventory:saga-1/reserve_stock/forward"
    await store.claim(key, owner="dead", now_ms=clock.now_ms(), stale_before_ms=0)
    inv = Inventory(store, clock=clock, stale_claim_after=timedelta(minutes=5))

    await clock.advance(timedelta(minutes=4))
    busy = await inv.participant.handle(cmd(attempt=2))
    assert busy.error is not None
    assert busy.error.code == "in_progress"
    await clock.advance(timedelta(minutes=2))
    assert (await inv.participant.handle(cmd(attempt=3))).outcome is Outcome.SUCCEEDED
    assert inv.count("reserve") == 1


async def test_compensation_over_an_abandoned_forward_compensates_and_fences_it() -> None:
    clock = FakeClock()
    store = InMemoryIdempotencyStore()
    key = "inventory:saga-1/reserve_stock/forward"
    await store.claim(key, owner="dead", now_ms=clock.now_ms(), stale_before_ms=0)
    inv = Inventory(store, clock=clock)
    await clock.advance(timedelta(minutes=6))

    comp = await inv.participant.handle(compensation())
    assert comp == Reply.succeeded({"released": True, "saw": None})
    assert inv.count("release") == 1
    forward = await inv.participant.handle(cmd(attempt=2))
    assert forward.outcome is Outcome.FAILED
    assert forward.error is not None
    assert forward.error.code == "forward_abandoned"
    assert inv.count("reserve") == 0


class BrokenStore(InMemoryIdempotencyStore):
    async def claim(self, key: str, *, owner: str, now_ms: int, stale_before_ms: int) -> Claim:
        raise OSError("database unreachable")


async def test_a_store_failure_is_a_retriable_failure() -> None:
    inv = Inventory(BrokenStore())
    reply = await inv.participant.handle(cmd())
    assert reply.outcome is Outcome.FAILED
    assert reply.error is not None
    assert reply.error.code == "store_error"
    assert inv.count("reserve") == 0


async def test_records_are_namespaced_by_participant() -> None:
    inv = Inventory()
    await inv.participant.handle(cmd())
    record = await inv.store.get("inventory:saga-1/reserve_stock/forward")
    assert isinstance(record, IdempotencyRecord)
    assert record.reply == Reply.succeeded({"reservation": "r-saga-1", "qty": 2})


async def test_keyed_locks_are_dropped_when_idle() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def work(name: str) -> None:
        async with locks.hold("k"):
            order.append(f"{name}+")
            await asyncio.sleep(0.001)
            order.append(f"{name}-")

    await asyncio.gather(work("a"), work("b"))
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
    assert len(locks) == 0


# -- definition-time checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "with space", "dot.ted", "star*", "ünï", "payments\n", "x" * 201]
)
def test_bad_participant_names_are_refused(name: str) -> None:
    with pytest.raises(DefinitionError, match="participant name"):
        Participant(name)


def test_bad_version_and_limits_are_refused() -> None:
    with pytest.raises(DefinitionError, match="semantic version"):
        Participant("svc", version="one")
    with pytest.raises(DefinitionError, match="max_concurrency"):
        Participant("svc", max_concurrency=0)
    with pytest.raises(DefinitionError, match="stale_claim_after"):
        Participant("svc", stale_claim_after=timedelta(0))


def test_bad_command_names_duplicates_and_sync_handlers_are_refused() -> None:
    participant = Participant("svc")
    with pytest.raises(DefinitionError, match="command name"):
        participant.command("has.dot")

    @participant.command("ok")
    async def ok(ctx: CommandContext, request: JsonObject) -> JsonObject:
        return {}

    with pytest.raises(DefinitionError, match="already registered"):

        @participant.command("ok")
        async def again(ctx: CommandContext, request: JsonObject) -> JsonObject:
            return {}

    def sync(ctx: CommandContext, request: JsonObject) -> JsonObject:
        return {}

    with pytest.raises(DefinitionError, match="async def"):
        participant.command("sync")(sync)  # type: ignore[type-var]
    assert participant.commands == ("ok",)
