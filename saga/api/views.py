"""JSON views of sagas, timelines, previews and definitions, with configured fields redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from saga.api.story import human_error, human_text, story_json
from saga.definition import Saga, Step, Wait
from saga.engine import Action, Phase, Preview, SagaState, health, refusal
from saga.engine.timeline import WAIT_KIND, Entry, Timeline, compensation_after
from saga.events import Health
from saga.log.base import SagaRecord, effective_health
from saga.protocol import Direction

REDACTED = "***"


def redact(value: Any, fields: frozenset[str]) -> Any:
    """A copy of ``value`` with every dict key in ``fields`` (lower case) masked, at any depth."""
    if not fields:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in fields else redact(v, fields) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, fields) for v in value]
    return value


def summary(record: SagaRecord, stalled_before_ms: int | None) -> dict[str, Any]:
    """One row of the saga list."""
    found = effective_health(record, stalled_before_ms)
    return {
        "saga_id": record.saga_id,
        "name": record.name,
        "version": record.version,
        "status": record.status.value,
        "health": None if found is None else found.value,
        "current_step": record.current_step,
        "attempt": record.attempt,
        "waiting_for": record.waiting_for,
        "due_ms": record.due_ms,
        "created_ms": record.created_ms,
        "updated_ms": record.updated_ms,
        "owner": record.owner,
        "epoch": record.epoch,
    }


def health_detail(
    state: SagaState, updated_ms: int, stalled_before_ms: int | None
) -> dict[str, Any] | None:
    """Health with its why: the step, direction and attempt, the retry time, the reason."""
    found = health(state)
    if found is None:
        return None
    pointer = state.pointer
    detail: dict[str, Any] = {
        "state": found.value,
        "step": None if pointer is None else pointer.step,
        "direction": None if pointer is None else pointer.direction.value,
        "attempt": None if pointer is None else pointer.attempts,
        "retry_at_ms": None if pointer is None else pointer.retry_at_ms,
        "last_error": None if pointer is None else pointer.last_error,
        "reason": None,
        "since_ms": updated_ms,
    }
    if detail["last_error"] is not None:
        detail["last_error"] = human_error(detail["last_error"])
    if state.stuck is not None:
        detail["reason"] = human_text(str(state.stuck.get("reason") or ""))
    elif stalled_before_ms is not None and updated_ms < stalled_before_ms:
        detail["state"] = Health.STUCK.value
        detail["reason"] = "no progress for longer than the configured stall limit"
    return detail


def active_json(state: SagaState) -> list[dict[str, Any]]:
    """Every step or compensation in progress, in the order started (several: branches).

    An accepted step has its completion ``deadline_ms`` and heartbeats; an awaiting wait
    what it is ``waiting_for`` and when it gives up (``timeout_at_ms``); an attempt in flight
    its reply timeout; a failed one its next try (``retry_at_ms``) and last error.
    """
    found = []
    for pointer in state.pointers.values():
        if pointer.phase is Phase.SUCCEEDED:
            continue  # done; its pointer goes when the engine next decides
        accepted = pointer.phase is Phase.ACCEPTED
        found.append(
            {
                "step": pointer.step,
                "direction": pointer.direction.value,
                "phase": pointer.phase.value,
                "attempt": pointer.attempts,
                "service": None if pointer.is_wait else pointer.service,
                "command": None if pointer.is_wait else pointer.command,
                "deadline_ms": pointer.timeout_at_ms if accepted else None,
                "heartbeats": pointer.heartbeats,
                "waiting_for": pointer.event,
                "timeout_at_ms": None if accepted else pointer.timeout_at_ms,
                "retry_at_ms": pointer.retry_at_ms,
                "last_error": None
                if pointer.last_error is None
                else human_error(pointer.last_error),
            }
        )
    return found


def signals_json(state: SagaState) -> list[dict[str, Any]]:
    """The outside events received, in order, with the wait step that took each (None:
    kept for a step not reached yet)."""
    return [
        {
            "event": signal.event,
            "id": signal.id,
            "sender": signal.sender,
            "at_ms": signal.at_ms,
            "step": signal.step,
            "payload": signal.payload,
        }
        for signal in state.signals
    ]


def _entry(entry: Entry) -> dict[str, Any]:
    found = asdict(entry)
    del found["started_seq"], found["ended_seq"]
    found["direction"] = entry.direction.value
    found["state"] = entry.state
    found["started_ms"] = entry.started_ms
    found["ended_ms"] = entry.ended_ms
    if entry.kind == WAIT_KIND:
        found["service"] = found["command"] = None
    found["duration_ms"] = _span(entry.started_ms, entry.ended_ms)
    for attempt in found["attempts"]:
        attempt["outcome"] = str(attempt["outcome"])
        attempt["duration_ms"] = _span(attempt["sent_ms"], attempt["finished_ms"])
        if attempt["error"] is not None:
            attempt["error"] = human_error(attempt["error"])
    return found


def _span(start_ms: int | None, end_ms: int | None) -> int | None:
    return None if start_ms is None or end_ms is None else max(0, end_ms - start_ms)


def _pending(step: Step | Wait, direction: Direction, after: list[str]) -> dict[str, Any]:
    """A step or compensation the saga has not reached yet, from its definition."""
    if isinstance(step, Wait):
        service, command, kind, event = None, None, WAIT_KIND, step.event
    else:
        forward = direction is Direction.FORWARD
        command = step.command if forward else step.compensation
        service, kind, event = step.service, step.kind.value, None
    return {
        "step": step.name, "direction": direction.value, "service": service, "command": command,
        "kind": kind, "attempts": [], "by_hand": None, "stuck": False,
        "event": event, "signal": None, "after": after, "lane": None, "started_ms": None,
        "ended_ms": None, "state": "pending",
    }  # fmt: skip


def timeline_json(found: Timeline, state: SagaState, defn: Saga | None) -> dict[str, Any]:
    """The timeline, with the steps not yet run (from the definition) shown as pending.

    Pending entries have no lane (``null``); every entry has ``after``, the entries of its
    direction it comes after, so a view can draw branches side by side.
    """
    steps = [_entry(e) for e in found.steps]
    seen = {e.step for e in found.steps}
    if defn is not None and not state.compensating and not state.is_final:
        for step in defn.steps:
            if step.name not in seen:
                steps.append(_pending(step, Direction.FORWARD, list(defn.after(step.name))))
    compensations = [_entry(e) for e in found.compensations]
    done = {e.step for e in found.compensations}
    if defn is not None:
        known = {step.name for step in defn.steps}
        planned = [n for n in state.plan if n in known and n not in done]
        every = [*done, *planned]
        for entry in compensations:
            if entry["step"] in known:
                entry["after"] = compensation_after(defn, entry["step"], every)
        for name in planned:
            after = compensation_after(defn, name, every)
            compensations.append(_pending(defn.step(name), Direction.COMPENSATE, after))
    return {
        "steps": steps,
        "compensations": compensations,
        "operator_actions": [asdict(a) for a in found.operator_actions],
        "marks": [asdict(m) for m in found.marks],
        "signals": [asdict(s) for s in found.signals],
        "story": story_json(found, state, defn),
    }


def actions(defn: Saga | None, state: SagaState) -> dict[str, dict[str, Any]]:
    """Each operator action: whether it fits the saga now, and if not, why."""
    answer: dict[str, dict[str, Any]] = {}
    for action in Action:
        if defn is None:
            why: str | None = f"definition {state.name!r} v{state.version} is not registered"
        else:
            why = refusal(defn, state, action)
        answer[action.value] = {"allowed": why is None, "reason": why}
    return answer


def definition_json(defn: Saga) -> dict[str, Any]:
    """A definition as a graph: each step with the steps it comes ``after`` (resolved) and
    its ``depth`` (the longest chain of steps before it), to draw it in layers."""
    depth: dict[str, int] = {}
    for step in defn.steps:  # declared order need not be topological: resolve by need
        _depth(defn, step.name, depth)
    return {
        "name": defn.name,
        "version": defn.version,
        "sequence": defn.is_sequence,
        "events": list(defn.events),
        "steps": [_definition_step(defn, s, depth[s.name]) for s in defn.steps],
    }


def _depth(defn: Saga, name: str, depth: dict[str, int]) -> int:
    if name not in depth:
        # The definition refuses cycles, so this recursion ends; its depth is the graph's.
        depth[name] = 1 + max((_depth(defn, a, depth) for a in defn.after(name)), default=-1)
    return depth[name]


def _definition_step(defn: Saga, step: Step | Wait, depth: int) -> dict[str, Any]:
    common = {"name": step.name, "after": list(defn.after(step.name)), "depth": depth}
    if isinstance(step, Wait):
        return common | {
            "kind": WAIT_KIND,
            "service": None,
            "command": None,
            "compensation": None,
            "event": step.event,
            "timeout_ms": step.timeout_ms,
            "long_running": False,
            "completion_timeout_ms": None,
            "poll_every_ms": None,
        }
    return common | {
        "kind": step.kind.value,
        "service": step.service,
        "command": step.command,
        "compensation": step.compensation,
        "event": None,
        "timeout_ms": step.timeout_ms,
        "long_running": step.long_running,
        "completion_timeout_ms": step.completion_timeout_ms if step.long_running else None,
        "poll_every_ms": step.poll_every_ms if step.long_running else None,
    }


def preview_json(
    saga_id: str, preview: Preview, *, dry_run: bool, fields: frozenset[str]
) -> dict[str, Any]:
    return {
        "saga_id": saga_id,
        "action": preview.action.value,
        "dry_run": dry_run,
        "status": preview.status.value,
        "health": None if preview.health is None else preview.health.value,
        "compensations": list(preview.compensations),
        "commands": [
            {
                "step": c.step,
                "direction": c.direction.value,
                "service": c.service,
                "command": c.command,
                "attempt": c.attempt,
            }
            for c in preview.commands
        ],
        "events": [
            {"type": e.type.value, "at_ms": e.at_ms, "data": redact(e.data, fields)}
            for e in preview.events
        ],
    }
