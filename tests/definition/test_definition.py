"""A bad definition fails when declared, with a clear DefinitionError."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga.definition import RetryPolicy, Saga, Step, StepKind
from saga.errors import DefinitionError


def step(name: str, kind: StepKind = StepKind.COMPENSATABLE, **kw: object) -> Step:
    comp = kw.pop("compensation", f"undo_{name}" if kind is StepKind.COMPENSATABLE else None)
    return Step(
        name=name,
        service="svc",
        command=name,
        compensation=comp,
        kind=kind,  # type: ignore[arg-type]
        **kw,
    )  # type: ignore[arg-type]


def test_compensatable_step_needs_a_compensation() -> None:
    with pytest.raises(DefinitionError, match="needs a compensation"):
        Step(name="a", service="svc", command="a")


def test_compensatable_step_after_pivot_is_refused() -> None:
    with pytest.raises(DefinitionError, match="after pivot"):
        Saga(name="s", steps=(step("p", StepKind.PIVOT), step("a")))


def test_two_pivots_are_refused() -> None:
    with pytest.raises(DefinitionError, match="two pivots"):
        Saga(name="s", steps=(step("p", StepKind.PIVOT), step("q", StepKind.PIVOT)))


def test_duplicate_step_names_are_refused() -> None:
    with pytest.raises(DefinitionError, match="duplicate step name 'a'"):
        Saga(name="s", steps=(step("a"), step("a")))


def test_request_builder_must_be_callable() -> None:
    with pytest.raises(DefinitionError, match="callable"):
        step("a", request={"not": "callable"})


def test_retriable_step_needs_a_pivot_before_it() -> None:
    with pytest.raises(DefinitionError, match="after a pivot"):
        Saga(name="s", steps=(step("a"), step("r", StepKind.RETRIABLE)))


def test_pivot_has_no_compensation() -> None:
    with pytest.raises(DefinitionError, match="never compensated"):
        step("p", StepKind.PIVOT, compensation="undo")


@pytest.mark.parametrize("name", ["", "has space", "dot.ted", 3])
def test_bad_names_are_refused(name: object) -> None:
    with pytest.raises(DefinitionError):
        Saga(name=name, steps=(step("a"),))  # type: ignore[arg-type]


def test_empty_saga_and_bad_version_are_refused() -> None:
    with pytest.raises(DefinitionError, match="no steps"):
        Saga(name="s", steps=())
    with pytest.raises(DefinitionError, match="version"):
        Saga(name="s", version=0, steps=(step("a"),))


def test_valid_saga_with_pivot_and_retriable_steps() -> None:
    saga = Saga(
        name="order",
        version=2,
        steps=(step("a"), step("p", StepKind.PIVOT), step("r", StepKind.RETRIABLE)),
        deadline=timedelta(minutes=5),
    )
    assert saga.key == ("order", 2)
    assert saga.steps[2].policy.max_attempts is None  # retriable: retried until it succeeds
    assert saga.deadline_ms == 300_000


def test_retry_policy_validates_and_backs_off_with_a_cap() -> None:
    with pytest.raises(DefinitionError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(DefinitionError):
        RetryPolicy(backoff=0.5)
    with pytest.raises(DefinitionError):
        RetryPolicy(initial_interval=timedelta(seconds=2), max_interval=timedelta(seconds=1))
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff=2,
        max_interval=timedelta(seconds=5),
        max_attempts=4,
    )
    assert [policy.delay_ms(n) for n in (1, 2, 3, 4, 500)] == [1000, 2000, 4000, 5000, 5000]
    assert policy.allows_another(3, 0, 1000)
    assert not policy.allows_another(4, 0, 1000)
    timed = RetryPolicy(max_attempts=None, max_elapsed=timedelta(seconds=10))
    assert timed.allows_another(100, 0, 10_000)
    assert not timed.allows_another(100, 0, 10_001)
