"""Outside events through Coordinator.signal: a wait step takes one, early or on time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from saga import Coordinator, Saga, SagaStatus, Step, StepKind
from saga.definition import Wait
from saga.errors import ProtocolError, SagaNotFoundError, StateError
from saga.events import EventType
from saga.testing import FakeClock, InMemorySagaLog, InMemoryTransport
from tests.coordinator.shop import FAST, Shop


async def waiting(log: InMemorySagaLog, saga_id: str, step: str) -> None:
    """Until the saga waits at ``step`` (its wait's timeout is then set)."""
    async with asyncio.timeout(10):
        while True:
            record = await log.get(saga_id)
            if record is not None and record.current_step == step:
                return
            await asyncio.sleep(0.01)


def approval_saga(after_pivot: bool = False) -> Saga:
    create = Step(name="create", service="orders", command="create", compensation="cancel",
                  retry=FAST, compensation_retry=FAST)  # fmt: skip
    wait = Wait(name="approval", event="approved", timeout=timedelta(hours=1))
    ship = Step(
        name="ship",
        service="inventory",
        command="ship",
        kind=StepKind.PIVOT,
        request=lambda saga_input, results: {"approved_by": results["approval"]["by"]},
    )
    if after_pivot:
        pivot = Step(name="ship", service="inventory", command="ship", kind=StepKind.PIVOT)
        delivered = Wait(name="delivered", event="delivered", timeout=timedelta(hours=1))
        return Saga(name="late_ok", steps=(create, pivot, delivered))
    return Saga(name="approve", steps=(create, wait, ship))


async def test_a_waiting_saga_takes_the_event_and_its_payload_feeds_later_steps() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = approval_saga()
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[saga]) as coord:
        handle = await coord.start(saga, {})
        await waiting(log, handle.saga_id, "approval")
        first = await coord.signal(handle.saga_id, "approved", event_id="mail-1",
                                   payload={"by": "ana"}, sender="ops")  # fmt: skip
        assert (first.recorded, first.step) == (True, "approval")
        result = await asyncio.wait_for(handle.result(), 10)
        again = await coord.signal(handle.saga_id, "approved", event_id="mail-1",
                                   payload={"by": "ana"}, sender="ops")  # fmt: skip
        events = await log.events(handle.saga_id)
    assert result.status is SagaStatus.COMPLETED
    assert result.results["approval"] == {"by": "ana"}
    assert result.results["ship"]["request"] == {"approved_by": "ana"}
    assert (again.recorded, again.step, again.status) == (False, "approval", SagaStatus.COMPLETED)
    received = [e for e in events if e.type is EventType.SIGNAL_RECEIVED]
    assert len(received) == 1
    assert received[0].data["sender"] == "ops"


async def test_an_early_event_is_kept_until_the_saga_reaches_its_wait() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = approval_saga()
    shop.fail["orders.create"] = 1  # the first step takes a retry: the event comes first
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[saga]) as coord:
        handle = await coord.start(saga, {})
        early = await coord.signal(handle.saga_id, "approved", event_id="e-1",
                                   payload={"by": "bo"})  # fmt: skip
        assert (early.recorded, early.step) == (True, None)
        result = await asyncio.wait_for(handle.result(), 10)
    assert result.status is SagaStatus.COMPLETED
    assert result.results["approval"] == {"by": "bo"}


async def test_bad_events_are_refused_and_change_nothing() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = approval_saga()
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[saga]) as coord:
        handle = await coord.start(saga, {})
        await waiting(log, handle.saga_id, "approval")
        before = await log.events(handle.saga_id)
        with pytest.raises(StateError, match="waits for event 'nope'"):
            await coord.signal(handle.saga_id, "nope", event_id="1")
        with pytest.raises(ProtocolError, match="event id"):
            await coord.signal(handle.saga_id, "approved", event_id="bad id/1")
        with pytest.raises(ProtocolError, match="event name"):
            await coord.signal(handle.saga_id, "bad name", event_id="1")
        with pytest.raises(ProtocolError, match="JSON object"):
            await coord.signal(handle.saga_id, "approved", event_id="1", payload=[1])  # type: ignore[arg-type]
        with pytest.raises(ProtocolError):
            await coord.signal(handle.saga_id, "approved", event_id="1",
                               payload={"x": "y" * 600_000})  # fmt: skip
        with pytest.raises(SagaNotFoundError):
            await coord.signal("no-such-saga", "approved", event_id="1")
        assert await log.events(handle.saga_id) == before
        await coord.signal(handle.saga_id, "approved", event_id="1", payload={"by": "x"})
        with pytest.raises(StateError, match="already received"):
            await coord.signal(handle.saga_id, "approved", event_id="2", payload={"by": "y"})
        await asyncio.wait_for(handle.result(), 10)
        with pytest.raises(StateError, match="already completed"):
            await coord.signal(handle.saga_id, "approved", event_id="3")


async def test_no_event_in_time_compensates_before_the_pivot_and_sticks_after() -> None:
    shop, log, clock = Shop(), InMemorySagaLog(), FakeClock()
    early, late = approval_saga(), approval_saga(after_pivot=True)
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[early, late], clock=clock) as coord:
        first = await coord.start(early, {})
        second = await coord.start(late, {})
        await waiting(log, first.saga_id, "approval")
        await waiting(log, second.saga_id, "delivered")
        await clock.advance(3_600_000)
        compensated = await asyncio.wait_for(first.result(), 10)
        stuck = await asyncio.wait_for(second.result(), 10)
    assert compensated.status is SagaStatus.COMPENSATED
    assert compensated.compensated == ["create"]
    assert "did not arrive" in (compensated.compensation_reason or "")
    assert stuck.status is SagaStatus.STUCK
    assert (stuck.stuck or {}).get("code") == "event_timeout"
