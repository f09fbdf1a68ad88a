"""Take-over on PostgreSQL: a coordinator dies with sagas mid-way, another finishes them, and
the timers the dead one had set (retry back-off) fire on the new owner."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from saga import Coordinator, Participant, RetryPolicy, Saga, SagaStatus, Step
from saga.events import EventType
from saga.log.sql import SqlSagaLog
from saga.participant import CommandContext
from saga.testing import InMemoryTransport

pytestmark = pytest.mark.postgres

BACK_OFF = RetryPolicy(initial_interval=timedelta(seconds=2), max_attempts=5)


class Flaky:
    """``charge`` fails its first attempt for every saga; ``ship`` works."""

    def __init__(self) -> None:
        self.effects: Counter[tuple[str, str]] = Counter()
        self.tries: Counter[str] = Counter()
        self.participant = Participant("shop")
        for command in ("charge", "refund", "ship", "unship"):
            self.participant.command(command)(self._handler(command))

    def _handler(self, command: str) -> Any:
        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            if command == "charge":
                self.tries[ctx.saga_id] += 1
                if self.tries[ctx.saga_id] == 1:
                    raise RuntimeError("the bank is down")
            self.effects[(command, ctx.saga_id)] += 1
            return {}

        return handle


def order() -> Saga:
    return Saga(
        name="order",
        steps=(
            Step(name="charge", service="shop", command="charge", compensation="refund",
                 retry=BACK_OFF),
            Step(name="ship", service="shop", command="ship", compensation="unship"),
        ),
    )  # fmt: skip


async def crash(coordinator: Coordinator) -> None:
    """Stop a coordinator as SIGKILL would: no renewal, no timers, no NATS, no hand-back."""
    assert coordinator._lease_task is not None
    coordinator._lease_task.cancel()
    await coordinator._timers.stop()
    await coordinator.transport.close()


async def test_a_dead_coordinators_sagas_finish_on_another_with_their_timers(
    postgres_url: str,
) -> None:
    shop = Flaky()
    dead = Coordinator(
        SqlSagaLog(postgres_url), InMemoryTransport([shop.participant]), sagas=[order()],
        name="dead", lease_ms=1000,
    )  # fmt: skip
    await dead.open()
    ids = [(await dead.start("order", {"n": i})).saga_id for i in range(20)]
    # Each first charge failed and its retry waits 2 s: the timer is the dead one's.
    async with asyncio.timeout(30):
        while sum(shop.tries.values()) < 20:  # noqa: ASYNC110 (polls a counter)
            await asyncio.sleep(0.05)
    await crash(dead)
    survivor = Coordinator(
        SqlSagaLog(postgres_url), InMemoryTransport([shop.participant]), sagas=[order()],
        name="survivor", lease_ms=1000,
    )  # fmt: skip
    async with survivor:
        results = [await asyncio.wait_for(survivor.wait(saga_id), 60) for saga_id in ids]
        audit = await survivor.log.ownership.audit()
        events = await survivor.log.events(ids[0])
        record = await survivor.log.get(ids[0])
    await dead._writer.stop()
    await dead.log.close()
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    assert all(shop.tries[saga_id] == 2 for saga_id in ids)  # the retry, once, by the survivor
    assert set(shop.effects.values()) == {1}
    assert audit.taken_over == 20
    assert audit.driven_by_two == 0
    assert record is not None
    assert record.owner == survivor.coordinator_id
    assert record.epoch == 2
    failed = [e for e in events if e.type is EventType.STEP_FAILED]
    assert len(failed) == 1  # the dead one's; the survivor's retry succeeded
