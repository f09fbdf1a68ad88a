"""explore() on graphs: several commands in flight, replies in any order, faults on branches."""

from __future__ import annotations

import asyncio
import importlib
from datetime import timedelta
from typing import Any

import pytest

from examples.travel import APPROVED, TRIP_SAGA, TravelServices, trip_input
from saga import CommandContext, Participant, RetryPolicy, Saga, SagaStatus, Step, StepKind
from saga.coordinator import SagaResult
from saga.engine.payloads import CompensationStarted, StepRejected, StepSucceeded, payload_of
from saga.protocol import Direction, Outcome
from saga.testing import FaultKind, Injection, Point, explore
from saga.testing.report import story
from saga.testing.schedule import run_schedule
from tests.testing.shop import ORDER, Shop, order_saga

TRIP = trip_input("trip-x", "Ada")
APPROVAL = {APPROVED: {"approver": "Cleo"}}
FAST = RetryPolicy(initial_interval=timedelta(milliseconds=100), max_attempts=3)
FREE = {"flight": 100, "hotel": 50, "car": 20}


def trip_is_consistent(services: TravelServices, result: SagaResult) -> None:
    """What is held is paid for exactly once; a compensated trip holds nothing any more."""
    held = {kind: services.held[kind].get("trip-x") for kind in FREE}
    for kind, state in held.items():
        taken = 1 if state in ("held", "ticketed") else 0
        assert services.free[kind] == FREE[kind] - taken, (
            f"{kind}: {services.free[kind]} free while the trip's is {state}"
        )
    if result.status is SagaStatus.COMPLETED:
        assert held == {"flight": "ticketed", "hotel": "held", "car": "held"}, held
    if result.status is SagaStatus.COMPENSATED:
        assert not [kind for kind, state in held.items() if state in ("held", "ticketed")], held


async def test_the_parallel_trip_keeps_every_invariant_under_two_faults() -> None:
    report = await explore(
        TRIP_SAGA,
        TravelServices,
        input=TRIP,
        signals=APPROVAL,
        check=trip_is_consistent,
        max_faults=2,
        max_schedules=3000,
    )
    report.raise_on_failure()
    assert report.complete
    assert report.schedules_run > 500
    assert report.endings["completed"] > 0
    assert report.endings["compensated"] > 0
    assert report.endings["stuck"] > 0  # the itinerary refused after the tickets: stuck
    assert report.endings["unsettled"] == 0


async def test_a_late_reply_is_tried_only_where_commands_were_in_flight_together() -> None:
    trip = await explore(
        TRIP_SAGA, TravelServices, input=TRIP, signals=APPROVAL,
        faults=[FaultKind.DELAY_REPLY], max_faults=1,
    )  # fmt: skip
    # The run without faults, and one per booking: the three sent together. The tickets and
    # the itinerary are alone in flight, where a late reply changes nothing.
    assert trip.schedules_run == 4
    assert trip.ok
    sequence = await explore(
        order_saga(), Shop, input=ORDER, faults=[FaultKind.DELAY_REPLY], max_faults=2
    )
    assert sequence.schedules_run == 1


async def test_a_rejection_known_before_its_siblings_answer_awaits_them() -> None:
    schedule = (
        Injection(Point("hold_flight", Direction.FORWARD, 1), FaultKind.DELAY_REPLY),
        Injection(Point("book_hotel", Direction.FORWARD, 1), FaultKind.REJECT),
    )
    services = TravelServices()
    run = await run_schedule(
        TRIP_SAGA, services, schedule, input=TRIP, saga_id="trip-x", max_advances=50,
        signals=APPROVAL,
    )  # fmt: skip
    assert run.result is not None
    assert run.result.status is SagaStatus.COMPENSATED
    assert sorted(run.result.compensated) == ["hold_flight", "rent_car"]
    order = []
    for payload in map(payload_of, run.events):
        match payload:
            case StepRejected(step="book_hotel"):
                order.append("hotel rejected")
            case CompensationStarted():
                order.append(f"compensation planned: {', '.join(payload.steps)}")
            case StepSucceeded(step="hold_flight", direction=Direction.FORWARD):
                order.append("flight held")
            case StepSucceeded(step="hold_flight", direction=Direction.COMPENSATE):
                order.append("flight cancelled")
    # The flight's reply came last: the saga knew of the rejection first, planned the
    # compensation, and still waited for the flight before cancelling it.
    assert order == [
        "hotel rejected",
        "compensation planned: rent_car, hold_flight",
        "flight held",
        "flight cancelled",
    ]
    assert services.free == FREE
    text = story("trip", 2, 1, run, "(none)")
    assert "DELAY_REPLY -> succeeded; reply held back, arrives after the others" in text
    assert "REJECT -> rejected (injected_rejection)" in text


class DepositOnEveryRent(TravelServices):
    """A car service that takes a deposit each time its rent handler runs: not idempotent
    (the handler itself, not the SDK, decides what a repeat does)."""

    def __init__(self) -> None:
        super().__init__()
        self.deposits = 0

    async def arrived(self, trip: str, service: str, command: str) -> None:
        if (service, command) == ("car", "rent"):
            self.deposits += 1
        elif (service, command) == ("car", "cancel") and self.deposits:
            self.deposits -= 1


def one_deposit_per_car(services: DepositOnEveryRent, result: SagaResult) -> None:
    renting = services.held["car"].get("trip-x") == "held"
    expected = 1 if renting else 0
    assert services.deposits == expected, (
        f"{services.deposits} car deposits taken, expected {expected}"
    )


async def test_a_participant_that_applies_twice_on_a_branch_is_caught() -> None:
    report = await explore(
        TRIP_SAGA, DepositOnEveryRent, input=TRIP, signals=APPROVAL, check=one_deposit_per_car,
        max_faults=1,
    )  # fmt: skip
    assert not report.ok
    failure = report.failures[0]
    assert failure.schedule == (
        Injection(Point("rent_car", Direction.FORWARD, 1), FaultKind.EFFECT_THEN_FAIL),
    )
    text = str(failure)
    assert "(1 fault: EFFECT_THEN_FAIL at rent_car forward attempt 1):" in text
    assert "rent_car        forward     attempt 2" in text
    assert "invariant failed: 2 car deposits taken, expected 1" in text


def diamond() -> Saga:
    """a and b at once, c after both, then the pivot: c must be undone before a and b."""
    return Saga(
        name="diamond",
        steps=(
            Step(name="a", service="svc", command="a", compensation="undo_a", retry=FAST,
                 compensation_retry=FAST, after=()),
            Step(name="b", service="svc", command="b", compensation="undo_b", retry=FAST,
                 compensation_retry=FAST, after=()),
            Step(name="c", service="svc", command="c", compensation="undo_c", retry=FAST,
                 compensation_retry=FAST, after=("a", "b")),
            Step(name="d", service="svc", command="d", kind=StepKind.PIVOT, retry=FAST,
                 after=("c",)),
        ),
    )  # fmt: skip


def diamond_service() -> list[Participant]:
    svc = Participant("svc")
    for name in ("a", "b", "c", "d", "undo_a", "undo_b", "undo_c"):

        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(0)  # let the branches in flight interleave
            return {}

        svc.command(name)(handle)
    return [svc]


async def test_the_diamond_passes_and_an_engine_that_undoes_too_early_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faults = [FaultKind.REJECT, FaultKind.DELAY_REPLY, FaultKind.LOSE_REPLY]
    good = await explore(diamond(), diamond_service, faults=faults, max_faults=2)
    good.raise_on_failure()
    assert good.endings["compensated"] > 0

    # A broken engine: a compensation is ready as soon as its own step has nothing out,
    # whether or not the steps that depend on it were compensated.
    def ready(defn: Saga, state: Any, name: str) -> bool:
        return name not in state.pointers

    # saga.engine re-exports the function decide() under the module's name.
    engine_decide = importlib.import_module("saga.engine.decide")
    monkeypatch.setattr(engine_decide, "_compensation_ready", ready)
    bad = await explore(diamond(), diamond_service, faults=faults, max_faults=2)
    assert not bad.ok
    text = str(bad.failures[0])
    assert "(1 fault: REJECT at d forward attempt 1):" in text
    assert text.endswith(
        "invariant failed: compensation of 'b' was sent before that of 'c', which came after it"
    )


def twin_rooms() -> Saga:
    """Two rooms booked at once through the same handler of the same participant."""
    return Saga(
        name="twins",
        steps=(
            Step(name="room_a", service="hotel", command="book", compensation="cancel",
                 retry=FAST, compensation_retry=FAST, after=(),
                 request=lambda _input, _results: {"room": "a"}),
            Step(name="room_b", service="hotel", command="book", compensation="cancel",
                 retry=FAST, compensation_retry=FAST, after=(),
                 request=lambda _input, _results: {"room": "b"}),
        ),
    )  # fmt: skip


def hotel() -> list[Participant]:
    hotel = Participant("hotel")

    @hotel.command("book")
    async def book(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        for _ in range(3):
            await asyncio.sleep(0)  # the other room's command runs meanwhile
        return {"room": request["room"]}

    @hotel.command("cancel")
    async def cancel(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        return {}

    return [hotel]


async def test_a_failure_after_effect_on_one_branch_leaves_its_twin_alone() -> None:
    schedule = (Injection(Point("room_a", Direction.FORWARD, 1), FaultKind.EFFECT_THEN_FAIL),)
    run = await run_schedule(
        twin_rooms(), hotel(), schedule, input={}, saga_id="twins-1", max_advances=50
    )
    first = {item.point.step: item for item in run.commands if item.point.attempt == 1}
    assert first["room_a"].overlapped
    assert first["room_b"].overlapped
    room_a, room_b = first["room_a"].delivery, first["room_b"].delivery
    assert room_a is not None
    assert room_b is not None
    assert room_a.handler_returned
    assert room_a.replies[0].outcome is Outcome.FAILED
    assert not room_b.handler_returned
    assert room_b.replies[0].outcome is Outcome.SUCCEEDED
    assert run.result is not None
    assert run.result.status is SagaStatus.COMPLETED
