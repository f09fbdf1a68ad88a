"""The public test kit: in-memory log and transport, a fake clock, and the log contract.

Test your own sagas without NATS or a database::

    log, shop = InMemorySagaLog(), Participant("shop")
    async with Coordinator(log, InMemoryTransport([shop]), sagas=[my_saga]) as coordinator:
        result = await coordinator.execute(my_saga, {"order": 1})
"""

from saga.log.memory import InMemorySagaLog
from saga.participant.memory import InMemoryIdempotencyStore
from saga.testing.clock import FakeClock
from saga.testing.transport import Fault, InMemoryTransport

__all__ = [
    "FakeClock",
    "Fault",
    "InMemoryIdempotencyStore",
    "InMemorySagaLog",
    "InMemoryTransport",
]
