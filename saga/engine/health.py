"""A saga's health, from its state: progressing, retrying, waiting, needs attention, stuck."""

from __future__ import annotations

from saga.engine.state import Phase, SagaState
from saga.events import Health


def health(state: SagaState) -> Health | None:
    """None for a finished saga; otherwise how it is doing right now.

    The rules themselves live on the state (``failing``, ``needs_attention``), so the
    stored health, ``SagaResult`` and the operator actions cannot disagree.
    """
    if state.is_final:
        return None
    if state.stuck is not None:
        return Health.STUCK
    pointer = state.pointer
    if pointer is None or not pointer.failing:
        return Health.PROGRESSING
    if state.needs_attention:
        return Health.NEEDS_ATTENTION
    return Health.WAITING if pointer.phase is Phase.WAITING else Health.RETRYING
