"""Long-running steps through a coordinator on the in-memory transport (and through explore)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from saga import Coordinator, Participant, Saga, SagaStatus, Step, StepKind
from saga.log.base import SagaRecord
from saga.participant import CommandContext
from saga.testing import InMemorySagaLog, InMemoryTransport, explore


def shipping_saga(poll_every: timedelta) -> Saga:
    return Saga(
        name="ship",
        steps=(
            Step(name="carrier", service="shipping", command="hand_over", compensation="recall",
                 completion_timeout=timedelta(hours=8), poll_every=poll_every),
            Step(name="bill", service="billing", command="bill", kind=StepKind.PIVOT),
        ),
    )  # fmt: skip


class Carriers:
    """A shipping service whose hand-over is confirmed later, and a billing service."""

    def __init__(self, *, finish: bool = True) -> None:
        self.tokens: list[str] = []
        self.jobs: set[asyncio.Task[None]] = set()
        self.shipping = Participant("shipping")
        self.billing = Participant("billing")
        self.participants = [self.shipping, self.billing]
        self.handed = 0

        @self.shipping.command("hand_over")
        async def hand_over(ctx: CommandContext, request: dict[str, Any]) -> Any:
            self.handed += 1
            self.tokens.append(ctx.token)
            if finish:  # a background job confirms it a moment later
                job = asyncio.ensure_future(self.shipping.complete(ctx.token, {"tracking": "T1"}))
                self.jobs.add(job)
            return ctx.accept()

        @self.shipping.command("recall")
        async def recall(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            return {"recalled": ctx.forward_result is not None}

        @self.billing.command("bill")
        async def bill(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            return {"billed": True, "tracking": request}


async def until_accepted(coordinator: Coordinator, saga_id: str) -> SagaRecord:
    async with asyncio.timeout(10):
        while True:
            record = await coordinator.log.get(saga_id)
            if record is not None and record.due_ms is not None:
                return record
            await asyncio.sleep(0.01)


async def test_the_announcement_brings_the_outcome_without_waiting_for_a_poll() -> None:
    carriers = Carriers(finish=False)
    saga = shipping_saga(poll_every=timedelta(hours=1))
    transport = InMemoryTransport(carriers.participants)
    async with Coordinator(InMemorySagaLog(), transport, sagas=[saga]) as coordinator:
        handle = await coordinator.start(saga, {})
        record = await until_accepted(coordinator, handle.saga_id)
        assert record.due_ms is not None  # the completion deadline, in the saga row
        await carriers.shipping.complete(carriers.tokens[0], {"tracking": "Z9"})
        assert await transport.announce_completion(handle.saga_id, "carrier")
        result = await asyncio.wait_for(handle.result(), 10)
    assert result.status is SagaStatus.COMPLETED
    assert result.results["carrier"] == {"tracking": "Z9"}
    assert carriers.handed == 1


async def test_polls_find_a_completion_that_was_never_announced() -> None:
    carriers = Carriers()
    saga = shipping_saga(poll_every=timedelta(milliseconds=50))
    transport = InMemoryTransport(carriers.participants)
    async with Coordinator(InMemorySagaLog(), transport, sagas=[saga]) as coordinator:
        result = await asyncio.wait_for(coordinator.execute(saga, {}), 10)
    assert result.status is SagaStatus.COMPLETED
    assert result.results["carrier"] == {"tracking": "T1"}


async def test_explore_runs_a_long_running_step_under_faults() -> None:
    saga = shipping_saga(poll_every=timedelta(seconds=1))
    report = await explore(saga, lambda: Carriers().participants, max_faults=1)
    report.raise_on_failure()
    assert report.schedules_run > 5
    assert report.endings["completed"] > 0
