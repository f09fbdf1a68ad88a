"""The saga log's vocabulary: saga statuses and event types. Stored values never change."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

JsonObject = dict[str, Any]

EVENT_FORMAT = 2
"""The format new events' data is written in (``Event.format``). The typed payloads in
``saga.engine.payloads`` encode it and decode every format listed there, so a later format
can be added (with a migration) while sagas stored in an older one still replay.

Format 2 (graphs, long-running steps, outside events) adds the event types
``step_accepted``, ``step_waiting`` and ``signal_received``; the types of format 1 keep
their keys. A coordinator that reads only format 1 refuses format 2 with a clear error
rather than misreading it."""


class SagaStatus(StrEnum):
    """A saga's current status, as stored in the saga table."""

    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    STUCK = "stuck"
    """Cannot progress without an operator; the reason is in the log. Resumable."""

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED})


class Health(StrEnum):
    """How an unfinished saga is doing; stored beside its status so lists can filter on it."""

    PROGRESSING = "progressing"
    """Its current command is on its first attempt (or it is between steps)."""
    RETRYING = "retrying"
    """The current step or compensation failed and is being tried again."""
    WAITING = "waiting"
    """Waiting on a durable timer: a retry's back-off."""
    NEEDS_ATTENTION = "needs_attention"
    """Past its pivot and a step keeps failing: retried, never compensated."""
    STUCK = "stuck"
    """Cannot progress without an operator."""


class EventType(StrEnum):
    """The kinds of entry in a saga's append-only log.

    Each has one typed payload in ``saga.engine.payloads``, which owns its stored keys.
    """

    SAGA_STARTED = "saga_started"
    """Payload ``SagaStarted``: name, version, input, deadline_at_ms (or null)."""
    STEP_SENT = "step_sent"
    """Payload ``StepSent``: step, direction, attempt, kind, service, command, payload,
    timeout_at_ms. Written before the command is sent (write-ahead)."""
    STEP_SUCCEEDED = "step_succeeded"
    """Payload ``StepSucceeded``: step, direction, attempt, result."""
    STEP_REJECTED = "step_rejected"
    """Payload ``StepRejected``: step, direction, attempt, error {code, message, details}."""
    STEP_FAILED = "step_failed"
    """Payload ``StepFailed``: step, direction, attempt, error, final (stored only when
    true). Outcome unknown (timeout, transient)."""
    RETRY_SCHEDULED = "retry_scheduled"
    """Payload ``RetryScheduled``: step, direction, attempt (the next one), retry_at_ms."""
    COMPENSATION_STARTED = "compensation_started"
    """Payload ``CompensationStarted``: reason, steps (names to compensate, in order)."""
    OPERATOR_ACTION = "operator_action"
    """Payload ``OperatorAction``: action (retry, cancel, resolve, skip, force_forward),
    actor, reason, step, direction, and for skip a result. An audit entry that also takes
    effect."""
    SAGA_STUCK = "saga_stuck"
    """Payload ``SagaStuck``: code, reason, and step, direction, attempts, error."""
    SAGA_RESUMED = "saga_resumed"
    """Payload ``SagaResumed``: reason. Clears stuck; the current step gets a fresh attempt
    budget."""
    SAGA_COMPLETED = "saga_completed"
    """Payload ``SagaCompleted``: results."""
    SAGA_COMPENSATED = "saga_compensated"
    """Payload ``SagaCompensated``: compensated (step names, in the order compensated)."""
    STEP_ACCEPTED = "step_accepted"
    """Payload ``StepAccepted``: step, direction, attempt, token, heartbeats,
    deadline_at_ms. A long-running step's participant took the command and will complete it
    later; written again, with a later deadline, for each new heartbeat. Format 2."""
    STEP_WAITING = "step_waiting"
    """Payload ``StepWaiting``: step, event, attempt, timeout_at_ms. A wait step began
    waiting for an outside event. Format 2."""
    SIGNAL_RECEIVED = "signal_received"
    """Payload ``SignalReceived``: event, id, payload, sender. An outside event arrived for
    the saga (kept until a wait step takes it). Format 2."""


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event about to be appended; the log assigns nothing, the caller numbers it.

    ``saga.engine.payloads.new_event`` builds one from a typed payload; building one from a
    ``data`` dict directly is the low-level form (the log stores any JSON object).
    """

    type: EventType
    """What happened."""
    data: JsonObject = field(default_factory=dict)
    """The payload's stored JSON, in format ``format``."""
    at_ms: int
    """When it happened."""
    format: int = EVENT_FORMAT
    """The format ``data`` is encoded in; the log stores it beside the data."""


@dataclass(frozen=True, kw_only=True)
class Event:
    """An event as stored: ``seq`` is 1-based and contiguous per saga.

    ``saga.engine.payloads.payload_of`` reads ``data`` as its typed payload.
    """

    saga_id: str
    """The saga it belongs to."""
    seq: int
    """Its place in the saga's log, from 1."""
    type: EventType
    """What happened."""
    data: JsonObject
    """The payload's stored JSON, in format ``format``."""
    at_ms: int
    """When it happened."""
    format: int = 1
    """The format ``data`` was stored in; events stored before formats existed are format 1."""
