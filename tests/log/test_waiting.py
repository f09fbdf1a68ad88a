"""The saga row says what the saga waits for and when it is next due (migration 0006): the
coordinator fills both from the state, every log stores them, the list filters on them."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from saga import engine
from saga.coordinator import Coordinator
from saga.coordinator.coordinator import _row_of
from saga.definition import Saga, Step, StepKind
from saga.definition.saga import Wait
from saga.engine.payloads import (
    Payload,
    SagaStarted,
    StepAccepted,
    StepSent,
    StepSucceeded,
    StepWaiting,
    new_event,
)
from saga.events import Event, SagaStatus
from saga.log.base import SagaLog, SagaQuery, SagaRecord
from saga.protocol import Direction
from saga.testing import InMemoryTransport
from tests.testing.shop import FAST, Shop

T0 = 1_700_000_000_000
DAY_MS = 86_400_000


def _events(*payloads: Payload) -> list[Event]:
    """The events that record ``payloads``, as a log reads them back (seq 1, 2, ...)."""
    found = []
    for seq, payload in enumerate(payloads, start=1):
        new = new_event(payload, T0 + seq)
        found.append(
            Event(
                saga_id="s",
                seq=seq,
                type=new.type,
                data=new.data,
                at_ms=new.at_ms,
                format=new.format,
            )
        )
    return found


def _sent(step: str) -> StepSent:
    return StepSent(
        step=step, direction=Direction.FORWARD, attempt=1, service="svc", command=step,
        payload={}, timeout_at_ms=T0 + 10_000,
    )  # fmt: skip


def test_the_row_names_the_first_wait_and_the_earliest_deadline() -> None:
    started = SagaStarted(name="n", version=1)
    # Three branches: a long-running step accepted (due in 3 days), a wait (due in 2 days),
    # a plain step in flight (its reply timeout is no deadline the row shows).
    accepted = StepAccepted(
        step="build", direction=Direction.FORWARD, attempt=1, token="s/build/forward",
        deadline_at_ms=T0 + 3 * DAY_MS,
    )  # fmt: skip
    waiting = StepWaiting(step="approval", event="manager_approved", timeout_at_ms=T0 + 2 * DAY_MS)
    later_wait = StepWaiting(step="payment", event="paid", timeout_at_ms=T0 + 5 * DAY_MS)
    state = engine.replay(
        _events(started, _sent("build"), accepted, waiting, later_wait, _sent("mail"))
    )
    row = _row_of(state)
    assert (row["waiting_for"], row["due_ms"]) == ("manager_approved", T0 + 2 * DAY_MS)

    # The approval came: the saga waits for the payment now; the build is due first.
    approved = StepSucceeded(step="approval", direction=Direction.FORWARD, attempt=1)
    state = engine.replay(
        _events(started, _sent("build"), accepted, waiting, later_wait, _sent("mail"), approved)
    )
    row = _row_of(state)
    assert (row["waiting_for"], row["due_ms"]) == ("paid", T0 + 3 * DAY_MS)


def test_nothing_accepted_or_waiting_is_no_wait_and_no_deadline() -> None:
    state = engine.replay(_events(SagaStarted(name="n", version=1), _sent("a")))
    row = _row_of(state)
    assert (row["waiting_for"], row["due_ms"]) == (None, None)
    accepted = StepAccepted(
        step="a", direction=Direction.FORWARD, attempt=1, token="s/a/forward", heartbeats=2,
        deadline_at_ms=T0 + 7,
    )  # fmt: skip
    state = engine.replay(_events(SagaStarted(name="n", version=1), _sent("a"), accepted))
    row = _row_of(state)
    assert (row["waiting_for"], row["due_ms"]) == (None, T0 + 7)


def approval_saga() -> Saga:
    return Saga(
        name="approval",
        steps=(
            Step(name="create", service="orders", command="create", compensation="cancel",
                 retry=FAST, compensation_retry=FAST),
            Wait(name="approval", event="manager_approved", timeout=timedelta(days=2)),
            Step(name="charge", service="payments", command="charge", kind=StepKind.PIVOT,
                 retry=FAST),
        ),
    )  # fmt: skip


async def _row_when(log: SagaLog, saga_id: str, waiting_for: str | None) -> SagaRecord:
    """The saga's row once it waits for ``waiting_for`` (generous: the coordinator's writes
    are asynchronous)."""
    for _ in range(1000):
        record = await log.get(saga_id)
        if record is not None and record.waiting_for == waiting_for:
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"saga {saga_id!r} never waited for {waiting_for!r}: {record}")


async def test_a_coordinator_records_the_wait_and_the_list_finds_it(any_log: SagaLog) -> None:
    shop, defn = Shop(), approval_saga()
    async with Coordinator(any_log, InMemoryTransport(shop.participants), sagas=[defn]) as coord:
        before_ms = time.time_ns() // 1_000_000
        handle = await coord.start(defn, {"customer": "alice", "price": 30})
        waiting = await _row_when(any_log, handle.saga_id, "manager_approved")
        after_ms = time.time_ns() // 1_000_000
        assert waiting.status is SagaStatus.RUNNING
        assert waiting.due_ms is not None
        assert before_ms + 2 * DAY_MS <= waiting.due_ms <= after_ms + 2 * DAY_MS
        found = await any_log.find(SagaQuery(waiting_for="manager_approved"))
        assert [r.saga_id for r in found.sagas] == [handle.saga_id]
        assert (await any_log.find(SagaQuery(waiting_for="paid"))).sagas == []

        await coord.signal(handle.saga_id, "manager_approved", event_id="e-1", payload={})
        result = await asyncio.wait_for(coord.wait(handle.saga_id), 30)
        assert result.status is SagaStatus.COMPLETED
        record = await any_log.get(handle.saga_id)
        assert record is not None
        assert (record.status, record.waiting_for, record.due_ms) == (
            SagaStatus.COMPLETED, None, None,
        )  # fmt: skip
        assert (await any_log.find(SagaQuery(waiting_for="manager_approved"))).sagas == []
    assert shop.charged == {handle.saga_id: 30}
