"""A small shop of participants with counters, shared by the coordinator tests."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from saga import Participant, Rejected, RetryPolicy, Saga, Step, StepKind
from saga.participant import CommandContext

FAST = RetryPolicy(initial_interval=timedelta(milliseconds=5), max_attempts=3)


class Shop:
    """Three services; ``effects`` counts each (command, saga) that really ran."""

    def __init__(self) -> None:
        self.effects: Counter[tuple[str, str]] = Counter()
        self.order: list[str] = []
        self.reject: set[str] = set()
        self.fail: Counter[str] = Counter()
        self.participants = [Participant(name) for name in ("orders", "payments", "inventory")]
        for participant in self.participants:
            for command in ("create", "cancel", "reserve", "release", "approve", "ship"):
                participant.command(command)(self._handler(participant.name, command))

    def _handler(self, service: str, command: str) -> Any:
        name = f"{service}.{command}"

        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            if self.fail[name] > 0:
                self.fail[name] -= 1
                raise RuntimeError(f"{name} is down")
            if name in self.reject:
                raise Rejected(f"{name} says no", code="no")
            self.effects[(name, ctx.saga_id)] += 1
            self.order.append(name)
            return {"done": name, "request": request}

        return handle


def order_saga(version: int = 1, **step_kw: Any) -> Saga:
    return Saga(
        name="order",
        version=version,
        steps=(
            Step(
                name="create",
                service="orders",
                command="create",
                compensation="cancel",
                retry=FAST,
                compensation_retry=FAST,
                **step_kw,
            ),
            Step(
                name="credit",
                service="payments",
                command="reserve",
                compensation="release",
                retry=FAST,
                compensation_retry=FAST,
                **step_kw,
            ),
            Step(
                name="stock",
                service="inventory",
                command="reserve",
                compensation="release",
                retry=FAST,
                compensation_retry=FAST,
                **step_kw,
            ),
        ),
    )


def pivot_saga() -> Saga:
    return Saga(
        name="ship",
        steps=(
            Step(
                name="create", service="orders", command="create", compensation="cancel", retry=FAST
            ),
            Step(
                name="approve", service="orders", command="approve", kind=StepKind.PIVOT, retry=FAST
            ),
            Step(
                name="ship",
                service="inventory",
                command="ship",
                kind=StepKind.RETRIABLE,
                retry=RetryPolicy(initial_interval=timedelta(milliseconds=5), max_attempts=3),
            ),
        ),
    )
