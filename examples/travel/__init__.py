"""The travel booking example: a flight, a hotel and a car, booked at once as one saga.

``python -m examples.travel`` books two trips in this process. Each trip's three bookings are
sent together while its manager approves it (the wait step ``approval``, given the event
``approved`` with ``Coordinator.signal``); then the tickets are issued (the pivot) and the
itinerary is mailed. One trip is booked end to end; the other's card is declined when the
tickets are issued, so the car, the hotel and the flight are cancelled: three independent
compensations, run at the same time.
"""

from examples.travel.saga import APPROVED, BOOKINGS, TRIP_SAGA, TRIP_SAGA_V1, trip_input
from examples.travel.services import TravelServices

__all__ = ["APPROVED", "BOOKINGS", "TRIP_SAGA", "TRIP_SAGA_V1", "TravelServices", "trip_input"]
