"""SagaResult: what a caller learns about a saga's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

from saga.engine import SagaState
from saga.events import Health, JsonObject, NewEvent, SagaStatus


@dataclass(frozen=True, kw_only=True)
class SagaResult:
    """A saga's status, the results of its steps, and what was compensated or why it is stuck."""

    saga_id: str
    name: str
    version: int
    status: SagaStatus
    results: dict[str, JsonObject] = field(default_factory=dict)
    compensated: list[str] = field(default_factory=list)
    """Steps compensated so far, in the order they were compensated."""
    compensation_reason: str | None = None
    stuck: JsonObject | None = None
    """For a stuck saga: code, reason, step, direction, attempts, last error."""
    needs_attention: bool = False
    """Past its pivot and a step keeps failing: it is retried, never compensated
    (``SagaState.needs_attention``, the same rule as the ``needs_attention`` health)."""

    @property
    def ok(self) -> bool:
        return self.status is SagaStatus.COMPLETED


def result_of(state: SagaState) -> SagaResult:
    """What a caller learns about ``state``: status, results, compensations, stuck reason."""
    compensated = [name for name in state.compensated_order if name in state.plan]
    return SagaResult(
        saga_id=state.saga_id,
        name=state.name,
        version=state.version,
        status=state.status,
        results=state.results(),
        compensated=compensated,
        compensation_reason=state.compensation_reason,
        stuck=state.stuck,
        needs_attention=state.needs_attention,
    )


@dataclass(frozen=True, kw_only=True)
class SignalResult:
    """What delivering an outside event to a saga did (``Coordinator.signal``)."""

    saga_id: str
    event: str
    id: str
    recorded: bool
    """False for a repeat of an id already received: nothing changed."""
    step: str | None
    """The wait step that took it, or None while it is kept for a step not reached yet."""
    status: SagaStatus
    """The saga's status after it was recorded."""


@dataclass(frozen=True, kw_only=True)
class SagaChange:
    """What a coordinator's listeners hear after each change is recorded in the log."""

    saga_id: str
    name: str
    version: int
    status: SagaStatus
    health: Health | None
    current_step: str | None
    started_ms: int
    seq: int
    events: tuple[NewEvent, ...]
