"""Graph definitions: after, cycles, unknown names, the pivot as a cut, waits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga.definition import Saga, Step, StepKind, Wait
from saga.errors import DefinitionError


def comp(name: str, after: tuple[str, ...] | None = None) -> Step:
    return Step(name=name, service="s", command=name, compensation=f"un{name}", after=after)


def test_without_after_a_step_follows_the_one_declared_before() -> None:
    saga = Saga(name="seq", steps=(comp("a"), comp("b"), comp("c")))
    assert (saga.after("a"), saga.after("b"), saga.after("c")) == ((), ("a",), ("b",))
    assert saga.is_sequence
    assert saga.descendants("a") == {"b", "c"}
    assert saga.ancestors("c") == {"a", "b"}


def test_after_makes_branches_and_joins() -> None:
    saga = Saga(
        name="trip",
        steps=(
            comp("flight", after=()),
            comp("hotel", after=()),
            comp("car", after=("flight",)),
            Step(name="pay", service="p", command="pay", kind=StepKind.PIVOT,
                 after=("hotel", "car")),
        ),
    )  # fmt: skip
    assert not saga.is_sequence
    assert saga.dependents("flight") == ("car",)
    assert saga.descendants("hotel") == {"pay"}
    assert saga.ancestors("pay") == {"flight", "hotel", "car"}


def test_unknown_names_in_after_are_refused() -> None:
    with pytest.raises(DefinitionError, match="step 'b' comes after unknown step 'zz'"):
        Saga(name="x", steps=(comp("a"), comp("b", after=("zz",))))


def test_cycles_are_refused_naming_the_cycle() -> None:
    with pytest.raises(DefinitionError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        Saga(name="x", steps=(comp("a", after=("b",)), comp("b", after=("a",))))
    with pytest.raises(DefinitionError, match="after itself"):
        comp("a", after=("a",))


def test_after_must_be_a_tuple_of_names() -> None:
    with pytest.raises(DefinitionError, match="tuple of step names"):
        comp("a", after="b")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="names a step twice"):
        comp("a", after=("b", "b"))


def test_the_pivot_is_a_cut() -> None:
    pivot = Step(name="p", service="s", command="p", kind=StepKind.PIVOT, after=("a",))
    # b runs beside the pivot (both after a only): a compensatable step must come before.
    with pytest.raises(DefinitionError, match="compensatable step 'b' beside"):
        Saga(name="x", steps=(comp("a"), pivot, comp("b", after=("a",))))
    retry = Step(name="r", service="s", command="r", kind=StepKind.RETRIABLE, after=("a",))
    with pytest.raises(DefinitionError, match="retriable step 'r' must come after pivot 'p'"):
        Saga(name="x", steps=(comp("a"), pivot, retry))
    beside = Wait(name="w", event="ok", timeout=timedelta(hours=1), after=("a",))
    with pytest.raises(DefinitionError, match="wait 'w' runs beside pivot 'p'"):
        Saga(name="x", steps=(comp("a"), pivot, beside))
    # Before and after the pivot are both fine for a wait.
    saga = Saga(
        name="ok",
        steps=(
            comp("a"),
            Wait(name="w1", event="go", timeout=timedelta(hours=1)),
            Step(name="p", service="s", command="p", kind=StepKind.PIVOT),
            Wait(name="w2", event="done", timeout=timedelta(hours=1)),
        ),
    )
    assert saga.waits_for("go") == ("w1",)
    assert saga.events == ("go", "done")


def test_waits_and_long_running_steps_are_checked() -> None:
    with pytest.raises(DefinitionError, match="event name"):
        Wait(name="w", event="bad name", timeout=timedelta(hours=1))
    with pytest.raises(DefinitionError, match="timeout"):
        Wait(name="w", event="ok", timeout=timedelta(0))
    with pytest.raises(DefinitionError, match="completion_timeout"):
        Step(name="a", service="s", command="a", compensation="u",
             completion_timeout=timedelta(0))  # fmt: skip
    step = Step(name="a", service="s", command="a", compensation="u",
                completion_timeout=timedelta(hours=2))  # fmt: skip
    assert step.long_running
    assert step.completion_timeout_ms == 7_200_000
