"""The saga DSL: Saga, Step, Wait, StepKind; definitions are validated when they are declared.

A saga's steps form a graph: a step runs once every step it comes ``after`` has succeeded;
without ``after`` it follows the step declared before it (so a plain list is a sequence). A
``Wait`` is a step that sends nothing: it waits for an outside event (an approval, a webhook).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from saga.definition.retry import FOREVER, RetryPolicy
from saga.errors import DefinitionError
from saga.names import NAME_RULE, is_name

JsonObject = dict[str, Any]
Results = Mapping[str, JsonObject]
"""Results of the steps that succeeded so far, by step name."""

RequestBuilder = Callable[[JsonObject, Results], JsonObject]
"""Builds a step's request from the saga input and earlier steps' results."""


class StepKind(StrEnum):
    """The kinds of step from the sagas literature. Stored values never change."""

    COMPENSATABLE = "compensatable"
    """Can be undone by its compensation; the default. Only before the pivot."""
    PIVOT = "pivot"
    """The go/no-go step: once it succeeds the saga only moves forward."""
    RETRIABLE = "retriable"
    """After the pivot: retried until it succeeds, never compensated."""


def _pass_input(saga_input: JsonObject, results: Results) -> JsonObject:
    return dict(saga_input)


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a saga: a command to a service, and how to undo it.

    ``request`` builds the command's body from ``(saga_input, results)``; by default the saga
    input is sent. ``compensation_request`` builds the compensation's body the same way; by
    default it gets the forward request. Both are evaluated once and the body is recorded in
    the log before it is sent, so retries and recovery re-send exactly the same bytes.
    """

    name: str
    service: str
    command: str
    compensation: str | None = None
    kind: StepKind = StepKind.COMPENSATABLE
    request: RequestBuilder = _pass_input
    compensation_request: RequestBuilder | None = None
    retry: RetryPolicy | None = None
    compensation_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=10))
    timeout: timedelta = timedelta(seconds=10)
    after: tuple[str, ...] | None = None
    """The steps that must succeed before this one starts. None (the default): the step
    declared before it, or none for the first; ``()``: none, it starts with the saga."""
    completion_timeout: timedelta | None = None
    """For a long-running step: how long after the participant answered ``accepted`` (or
    after its last heartbeat) the step may take to complete; then its outcome is unknown.
    None: the step must answer within ``timeout`` and may not answer ``accepted``."""
    poll_every: timedelta = timedelta(seconds=30)
    """For a long-running step: how often the coordinator re-sends the accepted command to
    ask for its outcome, in case a completion announcement was lost."""

    @property
    def passes_input(self) -> bool:
        """The request is the saga's input as it is (no ``request`` builder was given)."""
        return self.request is _pass_input

    def __post_init__(self) -> None:
        for label, value in (("name", self.name), ("service", self.service)):
            if not is_name(value):
                raise DefinitionError(f"step {label} {value!r} must be {NAME_RULE}", step=self.name)
        if not is_name(self.command):
            raise DefinitionError(f"invalid command name {self.command!r}", step=self.name)
        if self.compensation is not None and not is_name(self.compensation):
            raise DefinitionError(
                f"invalid compensation name {self.compensation!r}", step=self.name
            )
        if not isinstance(self.kind, StepKind):
            raise DefinitionError(f"kind must be a StepKind, not {self.kind!r}", step=self.name)
        if not callable(self.request):
            raise DefinitionError("request builder must be callable", step=self.name)
        if self.compensation_request is not None and not callable(self.compensation_request):
            raise DefinitionError("compensation_request builder must be callable", step=self.name)
        if self.kind is StepKind.COMPENSATABLE and self.compensation is None:
            raise DefinitionError(
                f"compensatable step {self.name!r} needs a compensation", step=self.name
            )
        if self.kind is not StepKind.COMPENSATABLE and self.compensation is not None:
            raise DefinitionError(
                f"{self.kind.value} step {self.name!r} is never compensated; drop its compensation",
                step=self.name,
            )
        if self.timeout <= timedelta(0):
            raise DefinitionError("timeout must be positive", step=self.name)
        object.__setattr__(self, "after", _check_after(self.name, self.after))
        if self.completion_timeout is not None and self.completion_timeout <= timedelta(0):
            raise DefinitionError("completion_timeout must be positive", step=self.name)
        if self.poll_every <= timedelta(0):
            raise DefinitionError("poll_every must be positive", step=self.name)

    @property
    def long_running(self) -> bool:
        """The participant may answer ``accepted`` and complete the command later."""
        return self.completion_timeout is not None

    @property
    def completion_timeout_ms(self) -> int:
        """The completion timeout in ms (0 for a step that is not long-running)."""
        if self.completion_timeout is None:
            return 0
        return int(self.completion_timeout.total_seconds() * 1000)

    @property
    def poll_every_ms(self) -> int:
        return int(self.poll_every.total_seconds() * 1000)

    @property
    def policy(self) -> RetryPolicy:
        """The forward retry policy: the given one, else the default for the step's kind."""
        if self.retry is not None:
            return self.retry
        return FOREVER if self.kind is StepKind.RETRIABLE else RetryPolicy()

    @property
    def timeout_ms(self) -> int:
        return int(self.timeout.total_seconds() * 1000)


def _check_after(step: str, after: object) -> tuple[str, ...] | None:
    if after is None:
        return None
    if isinstance(after, str) or not isinstance(after, (tuple, list)):
        raise DefinitionError(f"after must be a tuple of step names, not {after!r}", step=step)
    names = tuple(after)
    for name in names:
        if not is_name(name):
            raise DefinitionError(f"after names {name!r}, which is not a step name", step=step)
    if step in names:
        raise DefinitionError(f"step {step!r} cannot come after itself", step=step)
    if len(set(names)) != len(names):
        raise DefinitionError(f"step {step!r} names a step twice in after", step=step)
    return names


@dataclass(frozen=True, kw_only=True)
class Wait:
    """A step that sends nothing: it waits for the outside event ``event`` for its saga.

    The event is delivered over HTTP or NATS with an id of the sender's choosing (repeats of
    an id are one event) and a JSON payload, which becomes this step's result, for later
    steps' request builders. An event that arrives before the saga reaches this step is kept
    and used when it does. If none arrives within ``timeout``, the saga compensates (a wait
    before the pivot) or is stuck for an operator (after it).
    """

    name: str
    event: str
    timeout: timedelta
    after: tuple[str, ...] | None = None
    """As for ``Step``: None follows the step declared before; ``()`` waits from the start."""

    def __post_init__(self) -> None:
        if not is_name(self.name):
            raise DefinitionError(f"step name {self.name!r} must be {NAME_RULE}", step=self.name)
        if not is_name(self.event):
            raise DefinitionError(f"event name {self.event!r} must be {NAME_RULE}", step=self.name)
        if not isinstance(self.timeout, timedelta) or self.timeout <= timedelta(0):
            raise DefinitionError("timeout must be a positive timedelta", step=self.name)
        object.__setattr__(self, "after", _check_after(self.name, self.after))

    @property
    def timeout_ms(self) -> int:
        return int(self.timeout.total_seconds() * 1000)


AnyStep = Step | Wait
"""A saga's step: one that sends a command (``Step``) or one that waits for an event."""


@dataclass(frozen=True, kw_only=True)
class Saga:
    """A named, versioned graph of steps.

    Checked when declared: unique step names, ``after`` names only steps of this saga and
    makes no cycle, at most one pivot, and the pivot is a cut: every compensatable step comes
    before it and every retriable step (and every wait) before or after it, never beside it.
    ``deadline`` bounds the saga's forward progress: if it passes before the pivot succeeded,
    the saga is compensated.
    """

    name: str
    version: int = 1
    steps: tuple[AnyStep, ...]
    deadline: timedelta | None = None
    _positions: dict[str, int] = field(init=False, repr=False, compare=False, default_factory=dict)
    _after: dict[str, tuple[str, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _dependents: dict[str, tuple[str, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _below: dict[str, frozenset[str]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _events: dict[str, tuple[str, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if not is_name(self.name):
            raise DefinitionError(f"saga name {self.name!r} must be {NAME_RULE}")
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise DefinitionError(f"saga {self.name!r}: version must be a positive int")
        steps = tuple(self.steps)
        object.__setattr__(self, "steps", steps)
        if not steps:
            raise DefinitionError(f"saga {self.name!r} has no steps")
        seen: set[str] = set()
        pivot: str | None = None
        for step in steps:
            if not isinstance(step, (Step, Wait)):
                raise DefinitionError(f"saga {self.name!r}: {step!r} is not a Step or a Wait")
            if step.name in seen:
                raise DefinitionError(
                    f"saga {self.name!r}: duplicate step name {step.name!r}", step=step.name
                )
            seen.add(step.name)
            if isinstance(step, Step) and step.kind is StepKind.PIVOT:
                if pivot is not None:
                    raise DefinitionError(
                        f"saga {self.name!r}: two pivots ({pivot!r} and {step.name!r})",
                        step=step.name,
                    )
                pivot = step.name
        self._positions.update((step.name, i) for i, step in enumerate(steps))
        self._link(steps)
        self._check_cut(steps, pivot)
        if self.deadline is not None and self.deadline <= timedelta(0):
            raise DefinitionError(f"saga {self.name!r}: deadline must be positive")

    def _link(self, steps: tuple[AnyStep, ...]) -> None:
        """Resolve ``after`` (None: the step before), check names, refuse cycles."""
        for i, step in enumerate(steps):
            after = (
                step.after if step.after is not None else (() if i == 0 else (steps[i - 1].name,))
            )
            for name in after:
                if name not in self._positions:
                    raise DefinitionError(
                        f"saga {self.name!r}: step {step.name!r} comes after unknown step {name!r}",
                        step=step.name,
                    )
            self._after[step.name] = after
        dependents: dict[str, list[str]] = {step.name: [] for step in steps}
        for step in steps:
            for name in self._after[step.name]:
                dependents[name].append(step.name)
        self._dependents.update((name, tuple(names)) for name, names in dependents.items())
        # Depth-first from every step; a step met again on the current path closes a cycle.
        done: set[str] = set()
        path: list[str] = []

        def visit(name: str) -> frozenset[str]:
            if name in done:
                return self._below[name]
            if name in path:
                cycle = [*path[path.index(name) :], name]
                raise DefinitionError(
                    f"saga {self.name!r}: steps depend on each other in a cycle:"
                    f" {' -> '.join(reversed(cycle))}",
                    step=name,
                )
            path.append(name)
            below: set[str] = set()
            for child in self._dependents[name]:
                below.add(child)
                below |= visit(child)
            path.pop()
            done.add(name)
            self._below[name] = frozenset(below)
            return self._below[name]

        for step in steps:
            visit(step.name)
        events: dict[str, list[str]] = {}
        for step in steps:
            if isinstance(step, Wait):
                events.setdefault(step.event, []).append(step.name)
        self._events.update((event, tuple(names)) for event, names in events.items())

    def _check_cut(self, steps: tuple[AnyStep, ...], pivot: str | None) -> None:
        """The pivot is a cut: compensatable steps before it, retriable steps after it, and
        every wait on one side of it (so a timeout means compensate, or stuck, unambiguously)."""
        for step in steps:
            kind = step.kind if isinstance(step, Step) else None
            if pivot is None:
                if kind is StepKind.RETRIABLE:
                    # Without a pivot the saga is never past the point of no return, so a
                    # retriable step would be compensated like any other; it has none.
                    raise DefinitionError(
                        f"saga {self.name!r}: retriable step {step.name!r} must come after a pivot",
                        step=step.name,
                    )
                continue
            if step.name == pivot:
                continue
            before = step.name in self.ancestors(pivot)
            after = step.name in self._below[pivot]
            if kind is StepKind.COMPENSATABLE and not before:
                where = "after" if after else "beside (not before)"
                raise DefinitionError(
                    f"saga {self.name!r}: compensatable step {step.name!r} {where} pivot"
                    f" {pivot!r}; every compensatable step must come before the pivot",
                    step=step.name,
                )
            if kind is StepKind.RETRIABLE and not after:
                raise DefinitionError(
                    f"saga {self.name!r}: retriable step {step.name!r} must come after pivot"
                    f" {pivot!r} (it is {'before' if before else 'beside'} it)",
                    step=step.name,
                )
            if kind is None and not (before or after):
                raise DefinitionError(
                    f"saga {self.name!r}: wait {step.name!r} runs beside pivot {pivot!r};"
                    " it must come before or after it",
                    step=step.name,
                )

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    @property
    def deadline_ms(self) -> int | None:
        return None if self.deadline is None else int(self.deadline.total_seconds() * 1000)

    def index(self, step_name: str) -> int:
        """The position of step ``step_name`` in ``steps``; KeyError for an unknown name."""
        return self._positions[step_name]

    def step(self, step_name: str) -> AnyStep:
        """The step named ``step_name``; KeyError for an unknown name."""
        return self.steps[self._positions[step_name]]

    def after(self, step_name: str) -> tuple[str, ...]:
        """The steps that must succeed before ``step_name`` starts (``after`` resolved)."""
        return self._after[step_name]

    def dependents(self, step_name: str) -> tuple[str, ...]:
        """The steps that come directly after ``step_name``."""
        return self._dependents[step_name]

    def descendants(self, step_name: str) -> frozenset[str]:
        """Every step that runs only after ``step_name`` succeeded, directly or not."""
        return self._below[step_name]

    def ancestors(self, step_name: str) -> frozenset[str]:
        """Every step that must succeed before ``step_name``, directly or not."""
        return frozenset(name for name, below in self._below.items() if step_name in below)

    def waits_for(self, event: str) -> tuple[str, ...]:
        """The wait steps that wait for ``event`` (empty: no step of this saga does)."""
        return self._events.get(event, ())

    @property
    def events(self) -> tuple[str, ...]:
        """The names of the outside events this saga's wait steps wait for."""
        return tuple(self._events)

    @property
    def is_sequence(self) -> bool:
        """Every step comes after the one declared before it: a plain list, no branches."""
        return all(
            self._after[step.name] == (() if i == 0 else (self.steps[i - 1].name,))
            for i, step in enumerate(self.steps)
        )
