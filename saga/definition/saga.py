"""The saga DSL: Saga, Step, StepKind; definitions are validated when they are declared."""

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

    @property
    def policy(self) -> RetryPolicy:
        """The forward retry policy: the given one, else the default for the step's kind."""
        if self.retry is not None:
            return self.retry
        return FOREVER if self.kind is StepKind.RETRIABLE else RetryPolicy()

    @property
    def timeout_ms(self) -> int:
        return int(self.timeout.total_seconds() * 1000)


@dataclass(frozen=True, kw_only=True)
class Saga:
    """A named, versioned, ordered list of steps.

    Checked when declared: unique step names, at most one pivot, and only retriable steps
    after the pivot. ``deadline`` bounds the saga's forward progress: if it passes before the
    pivot succeeded, the saga is compensated.
    """

    name: str
    version: int = 1
    steps: tuple[Step, ...]
    deadline: timedelta | None = None
    _positions: dict[str, int] = field(init=False, repr=False, compare=False, default_factory=dict)

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
            if not isinstance(step, Step):
                raise DefinitionError(f"saga {self.name!r}: {step!r} is not a Step")
            if step.name in seen:
                raise DefinitionError(
                    f"saga {self.name!r}: duplicate step name {step.name!r}", step=step.name
                )
            seen.add(step.name)
            if step.kind is StepKind.PIVOT:
                if pivot is not None:
                    raise DefinitionError(
                        f"saga {self.name!r}: two pivots ({pivot!r} and {step.name!r})",
                        step=step.name,
                    )
                pivot = step.name
            elif pivot is not None and step.kind is StepKind.COMPENSATABLE:
                raise DefinitionError(
                    f"saga {self.name!r}: compensatable step {step.name!r} after pivot {pivot!r}",
                    step=step.name,
                )
            elif pivot is None and step.kind is StepKind.RETRIABLE:
                # Without a pivot the saga is never past the point of no return, so a retriable
                # step there would be compensated like any other; it has no compensation.
                raise DefinitionError(
                    f"saga {self.name!r}: retriable step {step.name!r} must come after a pivot",
                    step=step.name,
                )
        if self.deadline is not None and self.deadline <= timedelta(0):
            raise DefinitionError(f"saga {self.name!r}: deadline must be positive")
        self._positions.update((step.name, i) for i, step in enumerate(steps))

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    @property
    def deadline_ms(self) -> int | None:
        return None if self.deadline is None else int(self.deadline.total_seconds() * 1000)

    def index(self, step_name: str) -> int:
        """The position of step ``step_name`` in ``steps``; KeyError for an unknown name."""
        return self._positions[step_name]
