"""The compensation story in human words: durations, messages without timedeltas or Python
reprs, and one sentence saying why a saga compensated (past tense once finished)."""

from __future__ import annotations

import re
from typing import Any

from saga.definition import Saga, Step, StepKind, Wait
from saga.engine import Phase, SagaState
from saga.engine.timeline import WAIT_KIND, Entry, Timeline
from saga.events import SagaStatus

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
