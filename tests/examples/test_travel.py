"""The travel example: three bookings at once, one trip booked, one compensated in parallel."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from examples.travel import APPROVED, BOOKINGS, TRIP_SAGA, TravelServices, trip_input
from examples.travel.__main__ import book_trips
from saga import Coordinator, SagaStatus, SqlSagaLog
from saga.engine.payloads import (
    CompensationStarted,
    StepRejected,
    StepSent,
    StepSucceeded,
    payload_of,
)
from saga.protocol import Direction
from saga.testing import InMemorySagaLog, InMemoryTransport
from saga.transport.nats_server import NatsServer

REPO = Path(__file__).resolve().parents[2]
GATE_S = 20.0
"""How long a held command waits for the rest of its group: far beyond the milliseconds the
group takes to arrive when it is sent together, so only a saga that is not parallel fails."""

EXPECTED = [
    "trip-1 for Ada: completed",
    "  approved by Cleo (budget sales-travel)",
    "  sent together, answered in any order:",
    "    flight: hold for Ada",
    "    hotel: book for Ada",
    "    car: rent for Ada",
    "  flight: ticketed TP1351 for Ada, approved by Cleo",
    "  mail: itinerary TP1351-trip-1 sent to Ada",
    "trip-2 for Bo: compensated",
    "  approved by Cleo (budget sales-travel)",
    "  sent together, answered in any order:",
    "    flight: hold for Bo",
    "    hotel: book for Bo",
    "    car: rent for Bo",
    "  flight: card declined for Bo",
    "  cancelled together, in any order:",
    "    flight: cancelled for Bo",
    "    hotel: cancelled for Bo",
    "    car: cancelled for Bo",
    "  compensated: rent_car, book_hotel, hold_flight",
]


class GatedServices(TravelServices):
    """Holds every booking (and every cancellation) of a trip until all three have arrived.

    If the saga sent them one after another, the first would wait for the others in vain and
    give up after GATE_S: the trip would not go as EXPECTED and ``seen`` would show it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str, str]] = []
        """(trip, group, service, what): arrived, released, gave up."""
        self._arrived: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._gates: dict[tuple[str, str], asyncio.Event] = defaultdict(asyncio.Event)

    async def arrived(self, trip: str, service: str, command: str) -> None:
        if service == "mail" or command == "ticket":
            return
        group = "cancel" if command == "cancel" else "book"
        self.seen.append((trip, group, service, "arrived"))
        self._arrived[(trip, group)].add(service)
        gate = self._gates[(trip, group)]
        if len(self._arrived[(trip, group)]) == 3:
            gate.set()
        try:
            await asyncio.wait_for(gate.wait(), GATE_S)
        except TimeoutError:
            self.seen.append((trip, group, service, "gave up"))
            raise
        self.seen.append((trip, group, service, "released"))

    def assert_sent_together(self, trip: str, group: str) -> None:
        """All three of the group arrived before any was handled (so before any answer)."""
        seen = [(service, what) for t, g, service, what in self.seen if (t, g) == (trip, group)]
        assert {what for _, what in seen} == {"arrived", "released"}, seen
        first_three = seen[:3]
        assert [what for _, what in first_three] == ["arrived"] * 3, seen
        assert {service for service, _ in first_three} == {"flight", "hotel", "car"}


async def test_travel_in_memory_sends_the_bookings_and_cancellations_together() -> None:
    services = GatedServices()
    assert await book_trips(services=services) == EXPECTED
    services.assert_sent_together("trip-1", "book")
    services.assert_sent_together("trip-2", "book")
    services.assert_sent_together("trip-2", "cancel")
    assert not [item for item in services.seen if item[:2] == ("trip-1", "cancel")]


async def test_travel_over_nats_with_a_sqlite_log(nats_server: NatsServer, tmp_path: Path) -> None:
    services = GatedServices()
    db = tmp_path / "travel.db"
    assert await book_trips(nats_server.url, services=services, db=db) == EXPECTED
    services.assert_sent_together("trip-1", "book")
    services.assert_sent_together("trip-2", "book")
    services.assert_sent_together("trip-2", "cancel")
    log = SqlSagaLog(f"sqlite:///{db}")
    await log.open()
    try:
        completed = [payload_of(e) for e in await log.events("trip-1")]
        compensated = [payload_of(e) for e in await log.events("trip-2")]
    finally:
        await log.close()
    # trip-1: the three bookings (and the wait) started before any step had an outcome.
    sent_first = []
    for payload in completed:
        if isinstance(payload, StepSucceeded):
            break
        if isinstance(payload, StepSent):
            sent_first.append(payload.step)
    assert sorted(sent_first) == sorted(BOOKINGS)
    assert_compensated_in_reverse_dependency_order(compensated)


def assert_compensated_in_reverse_dependency_order(payloads: list[object]) -> None:
    """The plan is latest first; each compensation is sent only after the pivot was refused
    and after every planned step depending on it was compensated; the three independent ones
    are all sent before any finishes."""
    plans = [p.steps for p in payloads if isinstance(p, CompensationStarted)]
    assert plans == [["rent_car", "book_hotel", "hold_flight"]]
    refused = False
    undone: list[str] = []
    sent: list[str] = []
    for payload in payloads:
        if isinstance(payload, StepRejected) and payload.step == "issue_tickets":
            refused = True
        if isinstance(payload, StepSent) and payload.direction is Direction.COMPENSATE:
            assert refused, f"{payload.step} was compensated before the pivot was refused"
            later = [s for s in TRIP_SAGA.descendants(payload.step) if s in plans[0]]
            assert all(s in undone for s in later), (payload.step, later, undone)
            sent.append(payload.step)
        if isinstance(payload, StepSucceeded) and payload.direction is Direction.COMPENSATE:
            assert sorted(sent) == sorted(BOOKINGS), "a compensation ended before all were sent"
            undone.append(payload.step)
    assert sorted(undone) == sorted(BOOKINGS)


async def test_a_sold_out_hotel_cancels_the_flight_and_car_booked_beside_it() -> None:
    services = TravelServices(rooms=0)
    log = InMemorySagaLog()
    async with Coordinator(log, InMemoryTransport(services.participants), sagas=[TRIP_SAGA]) as c:
        handle = await c.start(TRIP_SAGA, trip_input("trip-3", "Cy"), saga_id="trip-3")
        result = await asyncio.wait_for(handle.result(), 60)
        payloads = [payload_of(e) for e in await log.events("trip-3")]
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensation_reason == "step 'book_hotel' was rejected"
    assert sorted(result.compensated) == ["hold_flight", "rent_car"]
    assert services.held == {
        "flight": {"trip-3": "cancelled"},
        "hotel": {},
        "car": {"trip-3": "cancelled"},
    }
    assert services.free == {"flight": 100, "hotel": 0, "car": 20}
    # The approval never came and was not needed: nothing was ticketed or mailed.
    assert not any(isinstance(p, StepSent) and p.step == "issue_tickets" for p in payloads)
    assert "flight: ticketed" not in " ".join(services.log)


async def test_the_approval_payload_is_on_the_tickets_even_when_it_came_first() -> None:
    services = TravelServices()
    log = InMemorySagaLog()
    async with Coordinator(log, InMemoryTransport(services.participants), sagas=[TRIP_SAGA]) as c:
        handle = await c.start(TRIP_SAGA, trip_input("trip-4", "Di"), saga_id="trip-4")
        signalled = await c.signal(
            "trip-4", APPROVED, event_id="mgr-7", payload={"approver": "Eve"}, sender="manager"
        )
        again = await c.signal(
            "trip-4", APPROVED, event_id="mgr-7", payload={"approver": "Eve"}, sender="manager"
        )
        result = await asyncio.wait_for(handle.result(), 60)
    assert signalled.recorded
    assert not again.recorded
    assert result.status is SagaStatus.COMPLETED
    assert result.results["approval"] == {"approver": "Eve"}
    assert "flight: ticketed TP1351 for Di, approved by Eve" in services.log
    assert services.log[-1] == "mail: itinerary TP1351-trip-4 sent to Di"


def test_python_m_examples_travel_prints_both_trips() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.travel"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED


async def test_a_trip_started_on_version_1_still_finishes_on_version_1() -> None:
    """Version 2 changed the graph; a trip begun on version 1 runs its sequence to the end."""
    from examples.travel import TRIP_SAGA, TRIP_SAGA_V1, TravelServices, trip_input
    from saga import Coordinator
    from saga.testing import InMemorySagaLog, InMemoryTransport

    services = TravelServices()
    log = InMemorySagaLog()
    transport = InMemoryTransport(services.participants)
    async with Coordinator(log, transport, sagas=[TRIP_SAGA, TRIP_SAGA_V1]) as coordinator:
        result = await coordinator.execute(TRIP_SAGA_V1, trip_input("old-1", "Ada"))
    assert result.status.value == "completed"
    assert result.version == 1
    assert list(result.results) == ["hold_flight", "book_hotel", "rent_car", "issue_tickets"]
