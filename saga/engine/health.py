"""A saga's health, from its state: progressing, retrying, waiting, needs attention, stuck."""

from __future__ import annotations

from saga.engine.state import Phase, SagaState
from saga.events import Health


def health(state: SagaState) -> Health | None:
    """None for a finished saga; otherwise how it is doing right now."""
    if state.is_final:
        return None
    if state.stuck is not None:
        return Health.STUCK
    cursor = state.cursor
    if cursor is None:
        return Health.PROGRESSING
    failing = cursor.phase in (Phase.FAILED, Phase.WAITING) or (
        cursor.phase is Phase.IN_FLIGHT and cursor.attempts_in_budget > 1
    )
    if not failing:
        return Health.PROGRESSING
    if state.pivot_passed and not state.compensating:
        return Health.NEEDS_ATTENTION
    return Health.WAITING if cursor.phase is Phase.WAITING else Health.RETRYING
