"""TRIP_SAGA: hold a flight seat, a hotel room and a car, then issue the tickets (the pivot)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from saga import RetryPolicy, Saga, Step, StepKind

_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), max_attempts=4)
_TIMEOUT = timedelta(seconds=5)


def _booking(trip: Mapping[str, Any], *fields: str) -> dict[str, Any]:
    return {"trip_id": trip["trip_id"], "traveller": trip["traveller"]} | {
        name: trip[name] for name in fields
    }


TRIP_SAGA = Saga(
    name="trip",
    version=1,
    steps=(
        Step(
            name="hold_flight", service="flight", command="hold", compensation="cancel",
            request=lambda trip, _: _booking(trip, "flight"), retry=_RETRY, timeout=_TIMEOUT,
        ),
        Step(
            name="book_hotel", service="hotel", command="book", compensation="cancel",
            request=lambda trip, _: _booking(trip, "hotel", "nights"), retry=_RETRY,
            timeout=_TIMEOUT,
        ),
        Step(
            name="rent_car", service="car", command="rent", compensation="cancel",
            request=lambda trip, _: _booking(trip, "car"), retry=_RETRY, timeout=_TIMEOUT,
        ),
        Step(
            # Charging the card and issuing the tickets cannot be undone: the point of no return.
            name="issue_tickets", service="flight", command="ticket", kind=StepKind.PIVOT,
            request=lambda trip, _: _booking(trip, "flight", "card"), retry=_RETRY,
            timeout=_TIMEOUT,
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
