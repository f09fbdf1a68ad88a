"""The pure state machine: (definition, log, time) -> events to append and commands to send."""

from saga.engine.actions import Preview, on_action, preview, refusal
from saga.engine.decide import (
    Decision,
    compensation_plan,
    decide,
    dispatched,
    hold,
    in_flight,
    on_reply,
    on_signal,
    poll_now,
    wake_at,
)
from saga.engine.health import health
from saga.engine.payloads import Action, Payload, new_event, payload_of
from saga.engine.state import (
    Phase,
    SagaState,
    Signal,
    StepPointer,
    StepProgress,
    apply,
    new_state,
    replay,
)

__all__ = [
    "Action",
    "Decision",
    "Payload",
    "Phase",
    "Preview",
    "SagaState",
    "Signal",
    "StepPointer",
    "StepProgress",
    "apply",
    "compensation_plan",
    "decide",
    "dispatched",
    "health",
    "hold",
    "in_flight",
    "new_event",
    "new_state",
    "on_action",
    "on_reply",
    "on_signal",
    "payload_of",
    "poll_now",
    "preview",
    "refusal",
    "replay",
    "wake_at",
]
