"""The pure state machine: (definition, log, time) -> events to append and commands to send."""

from saga.engine.decide import (
    Decision,
    can_cancel,
    compensation_plan,
    decide,
    in_flight,
    on_cancel,
    on_reply,
    on_resume,
)
from saga.engine.state import Cursor, Phase, SagaState, StepProgress, apply, new_state, replay

__all__ = [
    "Cursor",
    "Decision",
    "Phase",
    "SagaState",
    "StepProgress",
    "apply",
    "can_cancel",
    "compensation_plan",
    "decide",
    "in_flight",
    "new_state",
    "on_cancel",
    "on_reply",
    "on_resume",
    "replay",
]
