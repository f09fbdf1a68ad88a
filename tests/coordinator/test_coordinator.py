"""The coordinator with in-memory parts: start, outcomes, retries, timers, recovery, versions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest

from saga import (
    Coordinator,
    ProtocolError,
    RetryPolicy,
    Saga,
    SagaNotFoundError,
    SagaStatus,
    StateError,
    Step,
    UnknownSagaError,
)
from saga.coordinator import SagaChange
from saga.errors import LogError, SagaConflictError
from saga.events import EventType, Health
from saga.log.base import Append
from saga.protocol import Command, Direction
from saga.testing import FakeClock, Fault, InMemorySagaLog, InMemoryTransport
from tests.coordinator.shop import FAST, Shop, order_saga, pivot_saga


async def test_three_steps_complete_and_each_effect_happens_once() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {"sku": "A"}), 10)
    assert result.status is SagaStatus.COMPLETED
    assert set(result.results) == {"create", "credit", "stock"}
    assert shop.order == ["orders.create", "payments.reserve", "inventory.reserve"]
    assert all(n == 1 for n in shop.effects.values())


async def test_third_step_rejected_compensates_step_two_then_one() -> None:
    shop, log = Shop(), InMemorySagaLog()
    shop.reject.add("inventory.reserve")
    saga = order_saga()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {"sku": "A"}), 10)
        events = await log.events(result.saga_id)
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated == ["credit", "create"]
    assert shop.order == ["orders.create", "payments.reserve", "payments.release", "orders.cancel"]
    compensations = [
        e.data["step"]
        for e in events
        if e.type is EventType.STEP_SUCCEEDED and e.data["direction"] == "compensate"
    ]
    assert compensations == ["credit", "create"]
    assert events[-1].type is EventType.SAGA_COMPENSATED


async def test_start_with_same_id_twice_runs_once() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        first = await coord.start(saga, {"n": 1}, saga_id="order-42")
        second = await coord.start(saga, {"n": 1}, saga_id="order-42")
        assert first.created
        assert not second.created
        result = await asyncio.wait_for(second.result(), 10)
        assert result.status is SagaStatus.COMPLETED
        again = await coord.start(saga.name, {"n": 1}, saga_id="order-42")
        assert not again.created
    assert shop.effects[("orders.create", "order-42")] == 1
    assert len(shop.order) == 3


async def test_a_used_id_with_another_input_or_saga_is_a_conflict() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga, other = order_saga(), Saga(name="other", steps=order_saga().steps)
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga, other]) as coord:
        await coord.start(saga, {"n": 1, "items": ["a"]}, saga_id="order-42")
        # The same input, keys in another order and a tuple for a list: the same JSON.
        assert not (await coord.start(saga, {"items": ("a",), "n": 1}, saga_id="order-42")).created
        with pytest.raises(SagaConflictError, match="input") as by_input:
            await coord.start(saga, {"n": 2, "items": ["a"]}, saga_id="order-42")
        assert by_input.value.differences == ("input",)
        assert by_input.value.saga_id == "order-42"
        with pytest.raises(SagaConflictError, match="name") as by_name:
            await coord.start(other, {"n": 1, "items": ["a"]}, saga_id="order-42")
        assert by_name.value.differences == ("name",)
        with pytest.raises(SagaConflictError) as both:
            await coord.start(other, {}, saga_id="order-42")
        assert both.value.differences == ("name", "input")
        events = await log.events("order-42")
        assert events[0].data["input"] == {"n": 1, "items": ["a"]}, "the first input stays"
        assert len((await log.find()).sagas) == 1


@pytest.mark.parametrize(
    "saga_id",
    [" victim", "victim ", "vic tim", "line\nbreak", "a/b", "..", ".hidden", "a?b", "a#b",
     "50%", "ünï", "", "x" * 201, "tab\t"],
)  # fmt: skip
async def test_saga_ids_outside_the_grammar_are_refused_and_nothing_is_written(
    saga_id: str,
) -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        with pytest.raises(ProtocolError, match="saga id"):
            await coord.start(saga, {}, saga_id=saga_id)
        assert (await log.find()).sagas == []
    assert shop.order == []


async def test_bad_input_is_refused_and_nothing_is_written() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    async with Coordinator(
        log, InMemoryTransport(shop.participants), sagas=[saga], max_input_bytes=1000
    ) as coord:
        with pytest.raises(ProtocolError, match="JSON object"):
            await coord.start(saga, ["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(ProtocolError, match="not JSON-serialisable"):
            await coord.start(saga, {"when": object()})
        with pytest.raises(ProtocolError, match="over the 1000 byte limit"):
            await coord.start(saga, {"blob": "x" * 2000})
        with pytest.raises(UnknownSagaError):
            await coord.start("no-such-saga", {})
        with pytest.raises(SagaNotFoundError):
            await coord.get("missing")
        page = await log.find()
        assert page.sagas == []


async def test_transient_failures_are_retried_with_the_same_key() -> None:
    shop, log = Shop(), InMemorySagaLog()
    shop.fail["payments.reserve"] = 2
    saga = order_saga()
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[saga]) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {}), 10)
    assert result.status is SagaStatus.COMPLETED
    credit = [c for c in transport.sent if c.step == "credit"]
    assert [c.attempt for c in credit] == [1, 2, 3]
    assert len({c.idempotency_key for c in credit}) == 1


async def test_lost_reply_times_out_and_resend_is_deduplicated() -> None:
    shop, log, clock = Shop(), InMemorySagaLog(), FakeClock()
    saga = order_saga(timeout=timedelta(seconds=30))
    lost = {"done": False}

    def intercept(command: Command) -> Fault:
        if command.step == "credit" and not lost["done"]:
            lost["done"] = True
            return Fault.LOSE_REPLY
        return Fault.DELIVER

    transport = InMemoryTransport(shop.participants, intercept=intercept)
    async with Coordinator(log, transport, sagas=[saga], clock=clock) as coord:
        handle = await coord.start(saga, {})
        await transport.settle()
        await asyncio.sleep(0.05)
        assert (await coord.get(handle.saga_id)).status is SagaStatus.RUNNING
        await clock.advance(timedelta(seconds=30))  # the durable timeout fires
        await clock.advance(timedelta(seconds=1))  # the retry's back-off passes
        result = await asyncio.wait_for(handle.result(), 10)
    assert result.status is SagaStatus.COMPLETED
    assert shop.effects[("payments.reserve", handle.saga_id)] == 1
    credit = [c.attempt for c in transport.sent if c.step == "credit"]
    assert credit == [1, 2]


async def test_restart_resends_in_flight_command_and_finishes_once() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    blackhole = InMemoryTransport(
        shop.participants,
        intercept=lambda c: Fault.LOSE_REPLY if c.step == "credit" else Fault.DELIVER,
    )
    first = Coordinator(log, blackhole, sagas=[saga])
    await first.open()
    handle = await first.start(saga, {})
    await blackhole.settle()
    await asyncio.sleep(0.05)
    await first.close()  # "crash": the credit step acted but its reply never arrived
    assert shop.effects[("payments.reserve", handle.saga_id)] == 1

    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[saga]) as second:
        result = await asyncio.wait_for(second.wait(handle.saga_id), 10)
    assert result.status is SagaStatus.COMPLETED
    assert transport.sent[0].step == "credit"  # re-sent on recovery, same key
    assert transport.sent[0].attempt == 1
    assert shop.effects[("payments.reserve", handle.saga_id)] == 1


async def test_saga_finishes_on_the_version_it_started_with() -> None:
    shop, log = Shop(), InMemorySagaLog()
    v1 = order_saga(version=1)
    lose = InMemoryTransport(
        shop.participants,
        intercept=lambda c: Fault.LOSE_COMMAND if c.step == "credit" else Fault.DELIVER,
    )
    async with Coordinator(log, lose, sagas=[v1]) as first:
        handle = await first.start(v1, {})
        await lose.settle()

    v2 = Saga(
        name="order",
        version=2,
        steps=(Step(name="only", service="orders", command="create", compensation="cancel"),),
    )
    # Only v2 registered: the v1 saga cannot go on, and says so.
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[v2]) as second:
        stuck = await second.get(handle.saga_id)
    assert stuck.status is SagaStatus.STUCK
    assert stuck.stuck is not None
    assert stuck.stuck["code"] == "unknown_version"

    # Both registered: it resumes, and finishes on v1's steps.
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[v1, v2]) as third:
        result = await asyncio.wait_for(third.wait(handle.saga_id), 10)
        fresh = await third.execute("order", {})
    assert result.status is SagaStatus.COMPLETED
    assert result.version == 1
    assert set(result.results) == {"create", "credit", "stock"}
    assert fresh.version == 2
    assert set(fresh.results) == {"only"}


async def test_cancel_compensates_and_refuses_when_finished() -> None:
    shop, log, clock = Shop(), InMemorySagaLog(), FakeClock()
    saga = order_saga()
    transport = InMemoryTransport(
        shop.participants,
        intercept=lambda c: (
            Fault.LOSE_REPLY
            if (c.step, c.direction) == ("credit", Direction.FORWARD)
            else Fault.DELIVER
        ),
    )
    async with Coordinator(log, transport, sagas=[saga], clock=clock) as coord:
        handle = await coord.start(saga, {})
        await transport.settle()
        await coord.cancel(handle.saga_id, "customer asked")
        result = await asyncio.wait_for(handle.result(), 10)
        assert result.status is SagaStatus.COMPENSATED
        assert result.compensated == ["credit", "create"]
        assert "customer asked" in (result.compensation_reason or "")
        with pytest.raises(StateError, match="already compensated"):
            await coord.cancel(handle.saga_id, "again")
        with pytest.raises(SagaNotFoundError):
            await coord.cancel("nope", "x")


async def test_stuck_compensation_is_visible_and_resumable() -> None:
    shop, log = Shop(), InMemorySagaLog()
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 3  # exhausts FAST's three attempts
    saga = order_saga()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {}), 10)
        assert result.status is SagaStatus.STUCK
        assert result.stuck is not None
        assert result.stuck["code"] == "compensation_failed"
        assert result.stuck["step"] == "credit"
        assert result.stuck["attempts"] == 3
        assert "payments.release is down" in result.stuck["error"]["message"]
        record = await log.get(result.saga_id)
        assert record is not None
        assert record.status is SagaStatus.STUCK
        await coord.resume(result.saga_id, "payments fixed")
        final = await asyncio.wait_for(coord.wait(result.saga_id), 10)
    assert final.status is SagaStatus.COMPENSATED
    assert final.compensated == ["credit", "create"]


async def test_post_pivot_step_retries_then_sticks_never_compensates() -> None:
    shop, log = Shop(), InMemorySagaLog()
    shop.fail["inventory.ship"] = 10
    saga = pivot_saga()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {}), 10)
        assert result.status is SagaStatus.STUCK
        assert result.stuck is not None
        assert result.stuck["code"] == "retries_exhausted"
        with pytest.raises(StateError, match="pivot"):
            await coord.cancel(result.saga_id, "no")
    assert "orders.cancel" not in shop.order


async def test_many_sagas_share_commits() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    coord = Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga])
    async with coord:
        results = await asyncio.wait_for(
            asyncio.gather(*(coord.execute(saga, {"i": i}) for i in range(100))), 30
        )
        writer = coord._writer
        assert writer.appends >= 300
        assert writer.commits < writer.appends  # group commit: several sagas per transaction
    assert all(r.status is SagaStatus.COMPLETED for r in results)
    assert coord.active_count == 0


async def test_duplicate_replies_and_commands_do_not_double_effects() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    transport = InMemoryTransport(
        shop.participants,
        intercept=lambda c: (
            Fault.DUPLICATE_REPLY if c.step == "create" else Fault.DUPLICATE_COMMAND
        ),
    )
    async with Coordinator(log, transport, sagas=[saga]) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {}), 10)
    assert result.status is SagaStatus.COMPLETED
    assert all(n == 1 for n in shop.effects.values())
    assert len(shop.effects) == 3


async def test_compensation_for_a_never_run_step_is_fenced() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    transport = InMemoryTransport(
        shop.participants,
        intercept=lambda c: (
            Fault.LOSE_COMMAND
            if c.step == "credit" and c.direction is Direction.FORWARD
            else Fault.DELIVER
        ),
    )
    async with Coordinator(log, transport, sagas=[saga]) as coord:
        handle = await coord.start(saga, {})
        await transport.settle()
        await coord.cancel(handle.saga_id, "stop")
        result = await asyncio.wait_for(handle.result(), 10)
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated == ["credit", "create"]
    # The credit reservation never ran, so its release did not run either (fenced).
    assert "payments.reserve" not in shop.order
    assert "payments.release" not in shop.order
    assert shop.order == ["orders.create", "orders.cancel"]


def test_retry_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        FAST.max_attempts = 9  # type: ignore[misc]
    assert RetryPolicy().max_attempts == 3


async def test_post_pivot_failures_are_reported_as_needing_attention() -> None:
    shop, log, clock = Shop(), InMemorySagaLog(), FakeClock()
    shop.fail["inventory.ship"] = 1
    saga = pivot_saga()
    async with Coordinator(
        log, InMemoryTransport(shop.participants), sagas=[saga], clock=clock
    ) as coord:
        handle = await coord.start(saga, {})
        for _ in range(50):
            await asyncio.sleep(0.01)
            status = await coord.get(handle.saga_id)
            if status.needs_attention:
                break
        assert status.needs_attention
        assert status.status is SagaStatus.RUNNING
        await clock.advance(timedelta(seconds=1))
        result = await asyncio.wait_for(handle.result(), 10)
    assert result.status is SagaStatus.COMPLETED
    assert not result.needs_attention
    assert "orders.cancel" not in shop.order


async def test_operator_resolves_stuck_compensation_with_audit_and_dry_run() -> None:
    shop, log = Shop(), InMemorySagaLog()
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 100
    saga = order_saga()
    changes: list[SagaChange] = []
    coord = Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga])
    coord.add_listener(changes.append)
    async with coord:
        stuck = await asyncio.wait_for(coord.execute(saga, {}), 10)
        assert stuck.status is SagaStatus.STUCK
        preview = await coord.act(
            stuck.saga_id, "resolve", actor="ana", reason="refunded by hand", dry_run=True
        )
        assert preview.compensations == ["create"]
        assert (await coord.get(stuck.saga_id)).status is SagaStatus.STUCK  # nothing changed
        with pytest.raises(StateError, match="cannot cancel"):
            await coord.act(stuck.saga_id, "cancel", actor="ana", reason="x")
        with pytest.raises(StateError, match="unknown action"):
            await coord.act(stuck.saga_id, "explode", actor="ana", reason="x")
        await coord.act(stuck.saga_id, "resolve", actor="ana", reason="refunded by hand")
        final = await asyncio.wait_for(coord.wait(stuck.saga_id), 10)
        events = await log.events(stuck.saga_id)
        record = await log.get(stuck.saga_id)
    assert final.status is SagaStatus.COMPENSATED
    assert final.compensated == ["credit", "create"]
    audit = [e for e in events if e.type is EventType.OPERATOR_ACTION]
    assert len(audit) == 1
    assert audit[0].data["actor"] == "ana"
    assert audit[0].data["reason"] == "refunded by hand"
    assert audit[0].data["step"] == "credit"
    assert "payments.release" not in shop.order  # resolved by hand, never ran
    assert record is not None
    assert changes[-1].status is SagaStatus.COMPENSATED
    assert changes[-1].seq == record.last_seq
    assert {c.health for c in changes} >= {Health.PROGRESSING, Health.STUCK}


class FlakyLog(InMemorySagaLog):
    """Fails the first ``failures`` appends, as a database restart would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def append(self, batch: Sequence[Append]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise LogError("database is restarting")
        await super().append(batch)


async def test_decisions_that_cannot_be_recorded_are_not_kept_and_the_saga_goes_on() -> None:
    shop, log = Shop(), FlakyLog(failures=2)
    saga = order_saga(timeout=timedelta(milliseconds=300))
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {}), 20)
        events = await log.events(result.saga_id)
    assert result.status is SagaStatus.COMPLETED
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(n == 1 for n in shop.effects.values())
    # Nothing was sent that the log does not show as sent.
    sent = [e for e in events if e.type is EventType.STEP_SENT]
    assert {e.data["step"] for e in sent} == {"create", "credit", "stock"}


async def test_every_recorded_event_reaches_listeners_in_order() -> None:
    shop, log = Shop(), InMemorySagaLog()
    shop.reject.add("inventory.reserve")
    saga = order_saga()
    changes: list[SagaChange] = []
    coord = Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga])
    coord.add_listener(changes.append)
    async with coord:
        done = await asyncio.wait_for(coord.execute(saga, {}, saga_id="listened"), 10)
        recorded = await log.events("listened")
    assert done.status is SagaStatus.COMPENSATED
    heard = [e for c in changes if c.saga_id == "listened" for e in c.events]
    assert [e.type for e in heard] == [e.type for e in recorded]
    assert heard[0].type is EventType.SAGA_STARTED
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert changes[-1].seq == len(recorded)


async def test_the_stuck_event_of_an_unregistered_version_reaches_listeners() -> None:
    shop, log = Shop(), InMemorySagaLog()
    v1 = order_saga()
    v2 = Saga(name=v1.name, version=2, steps=v1.steps)
    shop.fail["payments.reserve"] = 1000  # keeps v1 unfinished
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[v1]) as coord:
        await coord.start(v1, {}, saga_id="old-version")
    changes: list[SagaChange] = []
    coord = Coordinator(log, InMemoryTransport(shop.participants), sagas=[v2])
    coord.add_listener(changes.append)
    async with coord:
        recorded = await log.events("old-version")
    stuck = [e for c in changes for e in c.events if e.type is EventType.SAGA_STUCK]
    assert len(stuck) == 1
    assert stuck[0].data["code"] == "unknown_version"
    assert changes[-1].status is SagaStatus.STUCK
    assert recorded[-1].type is EventType.SAGA_STUCK
    assert changes[-1].seq == len(recorded)
