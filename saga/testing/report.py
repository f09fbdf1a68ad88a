"""What an exploration found: the report, and each failing schedule told step by step."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from saga.protocol import Outcome, Reply
from saga.testing.schedule import FaultKind, Note, Run, Schedule, Sent
from saga.testing.transport import Fault


@dataclass(frozen=True)
class Failure:
    """A schedule under which the saga broke an invariant; ``str()`` tells the whole story."""

    number: int
    """Which schedule it was, counting from 1 in the order they ran (#1 has no faults)."""
    schedule: Schedule
    problem: str
    story: str

    def __str__(self) -> str:
        return self.story


@dataclass(frozen=True)
class ExplorationReport:
    """How many schedules ran, how the saga ended under them, and what failed."""

    saga: str
    version: int
    max_faults: int
    schedules_run: int
    not_run: int
    """Schedules left unexplored, by the first failure or by ``max_schedules`` (0: none)."""
    bound_reached: bool = False
    """``max_schedules`` cut the exploration short."""
    endings: Counter[str] = field(default_factory=Counter)
    """How many runs ended completed, compensated, stuck, or unsettled."""
    failures: tuple[Failure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def complete(self) -> bool:
        """Every schedule up to ``max_faults`` faults ran."""
        return self.not_run == 0

    def raise_on_failure(self) -> None:
        """Raise AssertionError with the first failing schedule, if there is one."""
        if self.failures:
            raise AssertionError(str(self.failures[0]))

    def __str__(self) -> str:
        ends = ", ".join(f"{status} {n}" for status, n in sorted(self.endings.items()))
        text = (
            f"saga {self.saga!r} v{self.version}: {_count(self.schedules_run, 'schedule')}"
            f" with up to {_count(self.max_faults, 'fault')}, {len(self.failures)} failing;"
            f" ends: {ends or 'none'}"
        )
        if self.not_run:
            why = "the bound of schedules" if self.bound_reached else "the first failure"
            text += f" (stopped at {why}; {self.not_run} schedules not run)"
        return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def ending(run: Run) -> str:
    """How the run ended, in a few words: ``compensated (compensated: b, a; reason: ...)``."""
    if run.unsettled is not None or run.result is None:
        return "did not settle"
    result = run.result
    if result.status.value == "compensated":
        undone = ", ".join(result.compensated) or "nothing"
        return f"compensated (compensated: {undone}; reason: {result.compensation_reason})"
    if result.status.value == "stuck":
        stuck = result.stuck or {}
        return f"stuck ({stuck.get('code')}: {stuck.get('reason')})"
    return result.status.value


def story(saga: str, version: int, number: int, run: Run, problem: str) -> str:
    """The readable failing schedule: every command, what happened to it, and the end."""
    faults = len(run.schedule)
    listed = "; ".join(str(injection) for injection in run.schedule)
    head = f"saga {saga!r} v{version} broke an invariant under schedule #{number}"
    if faults:
        head += f" ({_count(faults, 'fault')}: {listed}):"
    else:
        head += " (no faults):"
    sent = run.commands
    step_w = max((len(item.point.step) for item in sent), default=4)
    subject_w = max((len(item.command.subject) for item in sent), default=4)
    attempt_w = max((len(_attempt(item)) for item in sent), default=1)
    lines = [head]
    n = 0
    for item in run.trace:
        if isinstance(item, Note):
            lines.append(f"       ... {item.text}")
            continue
        n += 1
        point = item.point
        lines.append(
            f"  {n:>3}. {point.step:<{step_w}}  {point.direction.value:<10}  attempt"
            f" {_attempt(item):<{attempt_w}}  {item.command.subject:<{subject_w}}  {_what(item)}"
        )
    lines.append(f"ended: {ending(run)}")
    lines.append(f"invariant failed: {problem}")
    return "\n".join(lines)


def _attempt(item: Sent) -> str:
    point = item.point
    return f"{point.attempt} #{point.occurrence}" if point.occurrence > 1 else str(point.attempt)


def _what(item: Sent) -> str:
    """What happened to one command, led by the injected fault in capitals."""
    delivery = item.delivery
    mark = f"{item.injected.label} " if item.injected is not None else ""
    if delivery is None or delivery.fault is Fault.LOSE_COMMAND:
        return f"{mark}-> command lost, no reply"
    injected = delivery.fault in (Fault.REJECT, Fault.FAIL)
    answers = [
        _answer(reply, injected or i < len(item.recorded))
        for i, reply in enumerate(delivery.replies)
    ]
    text = mark + "; again ".join(answers)
    if item.injected is FaultKind.RESTART:
        return f"{text}; reply lost, the coordinator crashes"
    if item.held:
        held = "; reply held back, arrives after the others"
        return text + (held if delivery.passed_on else f"{held}: never (lost in a restart)")
    if delivery.passed_on == 0:
        return f"{text}; reply lost"
    if delivery.passed_on > 1:
        return f"{text}; reply arrives {delivery.passed_on} times"
    return text


def _answer(reply: Reply, fresh: bool) -> str:
    if reply.outcome is Outcome.SUCCEEDED:
        result = reply.result or {}
        if result.get("fenced"):
            text = "succeeded (fenced: its step never ran there)"
        else:
            text = "succeeded"
    else:
        code = reply.error.code if reply.error is not None else "?"
        text = f"{reply.outcome.value} ({code})"
    if not fresh and reply.outcome is not Outcome.FAILED:
        text += " [a repeat, answered from the record]"
    return f"-> {text}"
