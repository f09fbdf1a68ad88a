"""A saga with a wait step, and a stand-in for ``Coordinator.signal`` (issue 13's design) to test
the HTTP and NATS edges against until the engine takes events itself.

The stand-in follows the design's contract: SagaNotFoundError for an unknown saga, StateError
for a finished one or a wait step that took another event, ``recorded=False`` for a repeated
event id; otherwise it records the event in memory (not in the saga log).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from saga import Coordinator, Saga, SagaStatus, Step
from saga.definition import Wait
from saga.errors import SagaNotFoundError, StateError
from saga.protocol import Command
from saga.testing import Fault

APPROVAL = "manager_approved"


def approval_saga() -> Saga:
    """Hold stock, wait for a manager's approval, ship."""
    return Saga(
        name="approve",
        steps=(
            Step(
                name="hold",
                service="orders",
                command="reserve",
                compensation="release",
                timeout=timedelta(hours=1),
            ),
            Wait(name="approval", event=APPROVAL, timeout=timedelta(days=2)),
            Step(name="ship", service="orders", command="ship", compensation="cancel"),
        ),
    )


def hold_forever(command: Command) -> Fault:
    """An interceptor that loses the ``hold`` command: the saga stays running before its wait."""
    return Fault.LOSE_COMMAND if command.step == "hold" else Fault.DELIVER


@dataclass(frozen=True, kw_only=True)
class FakeResult:
    saga_id: str
    event: str
    id: str
    recorded: bool
    step: str | None
    status: SagaStatus


@dataclass(frozen=True, kw_only=True)
class Call:
    saga_id: str
    event: str
    event_id: str
    payload: dict[str, Any]
    sender: str


class FakeSignals:
    """``Coordinator.signal`` as the design specifies it, installed on one coordinator."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.calls: list[Call] = []
        self.taken: dict[tuple[str, str], str] = {}
        """(saga id, event) -> the id of the event its wait step took."""
        self.ids: set[tuple[str, str]] = set()
        """(saga id, event id) received."""
        self.finished: set[str] = set()
        """Sagas to treat as finished (besides those whose row says so): today's engine
        cannot finish a saga with a wait step."""
        coordinator.signal = self.signal  # type: ignore[attr-defined]

    async def signal(
        self, saga_id: str, event: str, *, event_id: str, payload: dict[str, Any], sender: str
    ) -> FakeResult:
        record = await self.coordinator.log.get(saga_id)
        if record is None:
            raise SagaNotFoundError(f"no saga {saga_id!r}", saga_id=saga_id)
        if record.status.is_final or saga_id in self.finished:
            status = "compensated" if saga_id in self.finished else record.status.value
            raise StateError(f"saga {saga_id!r} is {status}", saga_id=saga_id)
        if (saga_id, event_id) in self.ids:
            return FakeResult(saga_id=saga_id, event=event, id=event_id, recorded=False,
                              step=None, status=record.status)  # fmt: skip
        taken = self.taken.get((saga_id, event))
        if taken is not None:
            raise StateError(
                f"the wait step of saga {saga_id!r} took the event {taken!r}", saga_id=saga_id
            )
        self.calls.append(Call(saga_id=saga_id, event=event, event_id=event_id,
                               payload=payload, sender=sender))  # fmt: skip
        self.ids.add((saga_id, event_id))
        self.taken[(saga_id, event)] = event_id
        return FakeResult(saga_id=saga_id, event=event, id=event_id, recorded=True,
                          step="approval", status=record.status)  # fmt: skip
