"""TRIP_SAGA: hold a flight seat, book a hotel room and rent a car at the same time, wait for
the manager's approval, issue the tickets (the pivot), then send the itinerary.

The graph::

    hold_flight ─┐
    book_hotel  ─┤
    rent_car    ─┼─> issue_tickets (pivot) ─> send_itinerary (retriable)
    approval    ─┘   (waits for the outside event "approved")

If a booking fails, or the card is declined at ticketing, the bookings that were made are
cancelled, independently and at the same time (none depends on another).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from saga import RetryPolicy, Saga, Step, StepKind, Wait

APPROVED = "approved"
"""The outside event a manager sends (``Coordinator.signal``) to approve a trip; its payload,
e.g. ``{"approver": "Cleo"}``, is the ``approval`` step's result."""

BOOKINGS = ("hold_flight", "book_hotel", "rent_car")
"""The three steps sent together when a trip starts."""

_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), max_attempts=4)
_TIMEOUT = timedelta(seconds=5)


def _booking(trip: Mapping[str, Any], *fields: str) -> dict[str, Any]:
    return {"trip_id": trip["trip_id"], "traveller": trip["traveller"]} | {
        name: trip[name] for name in fields
    }


def _tickets(trip: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    # The approval's payload travels with the charge: who approved it, on which budget.
    approval = results["approval"]
    return _booking(trip, "flight", "card") | {
        "approved_by": approval["approver"],
        "budget": approval.get("budget", "travel"),
    }


def _itinerary(trip: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return _booking(trip, "flight", "hotel", "car") | {"ticket": results["issue_tickets"]["ticket"]}


TRIP_SAGA = Saga(
    name="trip",
    version=2,
    steps=(
        Step(
            name="hold_flight", service="flight", command="hold", compensation="cancel",
            request=lambda trip, _: _booking(trip, "flight"), retry=_RETRY, timeout=_TIMEOUT,
            after=(),
        ),
        Step(
            name="book_hotel", service="hotel", command="book", compensation="cancel",
            request=lambda trip, _: _booking(trip, "hotel", "nights"), retry=_RETRY,
            timeout=_TIMEOUT, after=(),
        ),
        Step(
            name="rent_car", service="car", command="rent", compensation="cancel",
            request=lambda trip, _: _booking(trip, "car"), retry=_RETRY, timeout=_TIMEOUT,
            after=(),
        ),
        # Asked when the trip is requested, while the bookings are made; a trip nobody
        # approves within two days is cancelled.
        Wait(name="approval", event=APPROVED, timeout=timedelta(days=2), after=()),
        Step(
            # Charging the card and issuing the tickets cannot be undone: the point of no return.
            name="issue_tickets", service="flight", command="ticket", kind=StepKind.PIVOT,
            request=_tickets, retry=_RETRY, timeout=_TIMEOUT, after=(*BOOKINGS, "approval"),
        ),
        Step(
            name="send_itinerary", service="mail", command="itinerary",
            kind=StepKind.RETRIABLE, request=_itinerary, timeout=_TIMEOUT,
            after=("issue_tickets",),
        ),
    ),
)  # fmt: skip


def trip_input(trip_id: str, traveller: str, card: str = "4242424242424242") -> dict[str, Any]:
    """A trip to Lisbon; the card ``4000000000000002`` is always declined."""
    return {
        "trip_id": trip_id,
        "traveller": traveller,
        "flight": "TP1351",
        "hotel": "Alfama Lofts",
        "nights": 3,
        "car": "compact",
        "card": card,
    }


TRIP_SAGA_V1 = Saga(
    name="trip",
    version=1,
    steps=(
        Step(name="hold_flight", service="flight", command="hold", compensation="cancel",
             request=lambda trip, _: _booking(trip, "flight"), retry=_RETRY, timeout=_TIMEOUT),
        Step(name="book_hotel", service="hotel", command="book", compensation="cancel",
             request=lambda trip, _: _booking(trip, "hotel", "nights"), retry=_RETRY,
             timeout=_TIMEOUT),
        Step(name="rent_car", service="car", command="rent", compensation="cancel",
             request=lambda trip, _: _booking(trip, "car"), retry=_RETRY, timeout=_TIMEOUT),
        Step(name="issue_tickets", service="flight", command="ticket", kind=StepKind.PIVOT,
             request=lambda trip, _: _booking(trip, "flight", "card"), retry=_RETRY,
             timeout=_TIMEOUT),
    ),
)  # fmt: skip
"""The first version of the trip, one booking after another and no approval. Still registered
(``saga dev`` does) so trips started on it finish on it, as every saga finishes on the
version it started with; new trips start on ``TRIP_SAGA`` (version 2)."""
