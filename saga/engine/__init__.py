"""The pure state machine: (definition, log, time) -> events to append and commands to send."""

from saga.engine.actions import Action, Preview, on_action, preview, refusal
from saga.engine.decide import Decision, compensation_plan, decide, in_flight, on_reply
from saga.engine.health import health
from saga.engine.state import Phase, SagaState, StepPointer, StepProgress, apply, new_state, replay

__all__ = [
    "Action",
    "Decision",
    "Phase",
    "Preview",
    "SagaState",
    "StepPointer",
    "StepProgress",
    "apply",
    "compensation_plan",
    "decide",
    "health",
    "in_flight",
    "new_state",
    "on_action",
    "on_reply",
    "preview",
    "refusal",
    "replay",
]
