"""The travel booking example: a flight, a hotel and a car, booked as one saga.

``python -m examples.travel`` books two trips in this process: one is booked end to end; the
other's card is declined when the tickets are issued, so the car, the hotel and the flight are
cancelled, in that order (a compensation chain of three).
"""

from examples.travel.saga import TRIP_SAGA, trip_input
from examples.travel.services import TravelServices

__all__ = ["TRIP_SAGA", "TravelServices", "trip_input"]
