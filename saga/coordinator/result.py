"""SagaResult: what a caller learns about a saga's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

from saga.engine import Phase, SagaState
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
    """Past its pivot and a step keeps failing: it is retried, never compensated."""

    @property
    def ok(self) -> bool:
        return self.status is SagaStatus.COMPLETED


def result_of(state: SagaState) -> SagaResult:
    compensated = [name for name in state.plan if state.steps[name].compensated]
    return SagaResult(
        saga_id=state.saga_id,
        name=state.name,
        version=state.version,
        status=state.status,
        results=state.results(),
        compensated=compensated,
        compensation_reason=state.compensation_reason,
        stuck=state.stuck,
        needs_attention=needs_attention(state),
    )


def needs_attention(state: SagaState) -> bool:
    cursor = state.cursor
    return (
        state.status is SagaStatus.RUNNING
        and state.pivot_passed
        and cursor is not None
        and cursor.phase in (Phase.FAILED, Phase.WAITING)
    )


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
