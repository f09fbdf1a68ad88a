"""JSON views of sagas, timelines, previews and definitions, with configured fields redacted."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from saga.definition import Saga, Step, StepKind, Wait
from saga.engine import Action, Phase, Preview, SagaState, health, refusal
from saga.engine.timeline import WAIT_KIND, Entry, Timeline, compensation_after
from saga.events import Health, SagaStatus
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


# -- the compensation story, in human words ------------------------------------------------

_TIMEDELTA = re.compile(r"\b(?:(\d+) days?, )?(\d+):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\b")
_EXCEPTION_REPR = re.compile(r"\b([A-Z]\w*(?:Error|Exception))\((['\"])(.*?)\2\)")
_QUOTED_NAME = re.compile(r"'([\w.:-]+)'")


def human_duration(ms: int) -> str:
    """A duration as a person says it: "250 ms", "1.2 s", "42 s", "3 min 4 s", "2 h 5 min"."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 10_000:
        return f"{ms / 1000:.1f}".removesuffix(".0") + " s"
    seconds = round(ms / 1000)
    if seconds < 60:
        return f"{seconds} s"
    for big, big_unit, small, small_unit in (
        (86_400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 1, "s"),
    ):  # fmt: skip
        if seconds >= big:
            whole, rest = divmod(seconds, big)
            part = rest // small
            return f"{whole} {big_unit}" + (f" {part} {small_unit}" if part else "")
    return f"{seconds} s"  # pragma: no cover - the loop ends at a minute


def _timedelta_words(match: re.Match[str]) -> str:
    days, hours, minutes, seconds, fraction = match.groups()
    ms = ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60_000 + int(seconds) * 1000
    ms += int((fraction or "0").ljust(6, "0")[:3])
    return human_duration(ms)


def human_text(text: str) -> str:
    """A recorded message in human words: ``0:00:05`` becomes "5 s", ``ValueError('x')``
    becomes "ValueError: x", and ``'name'`` quotes (Python reprs) go. Messages are stored by
    older code too, so they are rewritten when shown, not when written."""
    text = _TIMEDELTA.sub(_timedelta_words, text)
    text = _EXCEPTION_REPR.sub(lambda m: f"{m.group(1)}: {m.group(3)}", text)
    return _QUOTED_NAME.sub(r"\1", text)


def human_error(error: dict[str, Any]) -> dict[str, Any]:
    """The error with its message in human words (``text``); its fields are kept as recorded."""
    message = str(error.get("message") or error.get("code") or "error")
    return {**error, "text": human_text(message)}


def _label(entry: Entry | None, step: Step | Wait | None, name: str) -> str:
    """What a person calls the step: ``service.command``, or ``wait for event``."""
    if isinstance(step, Wait) or (entry is not None and entry.kind == WAIT_KIND):
        event = step.event if isinstance(step, Wait) else (entry.event if entry else None)
        return f"the wait for {event}" if event else f"the wait {name}"
    if entry is not None and entry.service:
        return f"{entry.service}.{entry.command}"
    if isinstance(step, Step):
        return f"{step.service}.{step.command}"
    return name


def _step_of(defn: Saga | None, name: str) -> Step | Wait | None:
    try:
        return None if defn is None else defn.step(name)
    except KeyError:  # a step of a saga recorded by another version of its definition
        return None


def _limit_ms(step: Step | Wait | None, code: str) -> int | None:
    """The time limit behind a timeout error, from the definition."""
    if isinstance(step, Wait):
        return step.timeout_ms
    if isinstance(step, Step):
        return step.completion_timeout_ms if code == "completion_timeout" else step.timeout_ms
    return None


def _cause(found: Timeline, state: SagaState, defn: Saga | None) -> dict[str, Any]:
    """Why the saga compensates: a refusal, a timeout, a failure, a cancel or its deadline."""
    reason = state.compensation_reason or ""
    cause: dict[str, Any] = {"kind": "other", "step": None, "text": human_text(reason)}
    if reason.startswith("cancelled: "):
        cancels = [a for a in found.operator_actions if a.action == "cancel"]
        actor = cancels[-1].actor if cancels else None
        why = human_text(reason.removeprefix("cancelled: "))
        by = f" by {actor}" if actor else ""
        return {"kind": "cancelled", "step": None, "actor": actor,
                "text": f"it was cancelled{by}: {why}"}  # fmt: skip
    if reason == "saga deadline passed":
        return {"kind": "deadline", "step": None, "text": "its deadline passed"}
    for entry in reversed(found.steps):  # the forward step that ended it
        last = entry.attempts[-1] if entry.attempts else None
        if last is None or entry.state not in ("rejected", "failed", "stuck"):
            continue
        step = _step_of(defn, entry.step)
        label = _label(entry, step, entry.step)
        error = last.error or {}
        message = human_text(str(error.get("message") or error.get("code") or ""))
        tries = f" ({len(entry.attempts)} attempts)" if len(entry.attempts) > 1 else ""
        cause["step"] = entry.step
        if entry.state == "rejected":
            cause["kind"] = "refused"
            cause["text"] = f"{label} was refused" + (f": {message}" if message else "")
        elif error.get("code") in ("timeout", "event_timeout", "completion_timeout"):
            cause["kind"] = "timed_out"
            after = _limit_ms(step, str(error.get("code")))
            if after is None and last.finished_ms is not None:
                after = last.finished_ms - last.sent_ms
            cause["text"] = (
                f"{label} timed out"
                + (f" after {human_duration(after)}" if after is not None else "")
                + tries
            )
        else:
            cause["kind"] = "failed"
            cause["text"] = f"{label} kept failing{tries}" + (f": {message}" if message else "")
        return cause
    return cause


def story_json(found: Timeline, state: SagaState, defn: Saga | None) -> dict[str, Any]:
    """The saga's story for a picture: one sentence (past tense once finished, present while
    it runs), the pivot, the forward steps undone, the steps never run, and why it
    compensated (``because``)."""
    pivot = None
    if defn is not None:
        pivot = next(
            (s.name for s in defn.steps if isinstance(s, Step) and s.kind is StepKind.PIVOT), None
        )
    undone = [e.step for e in found.compensations if e.state in ("succeeded", "done_by_hand")]
    ran = {e.step for e in found.steps}
    skipped: list[str] = []
    if defn is not None and (state.compensating or state.is_final):
        skipped = [s.name for s in defn.steps if s.name not in ran]
    because = None
    status = state.status
    if state.compensation_reason is not None:
        because = _cause(found, state, defn)
        if status is SagaStatus.COMPENSATED:
            sentence = f"Compensated because {because['text']}."
        elif status is SagaStatus.STUCK:
            sentence = f"Stuck while compensating because {because['text']}."
        else:
            sentence = f"Compensating because {because['text']}."
    elif status is SagaStatus.COMPLETED:
        sentence = f"Completed: all {len(found.steps)} steps done."
    elif status is SagaStatus.STUCK:
        sentence = "Stuck: it waits for an operator."
    else:
        going = [p.step for p in state.pointers.values() if p.phase is not Phase.SUCCEEDED]
        sentence = f"Running: {', '.join(going)} in progress." if going else "Running."
    if status is SagaStatus.STUCK and state.stuck is not None:
        why = human_text(str(state.stuck.get("reason") or "")).rstrip(".")
        sentence += f" {why[:1].upper()}{why[1:]}." if why else ""
    return {
        "sentence": sentence,
        "tense": "past" if state.is_final else "present",
        "because": because,
        "pivot": pivot,
        "pivot_passed": state.pivot_passed,
        "undone": undone,
        "skipped": skipped,
    }
