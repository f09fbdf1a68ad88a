"""The public test kit: in-memory log and transport, fake clock, fault explorer, contract suites.

Test your own sagas without NATS or a database::

    log, shop = InMemorySagaLog(), Participant("shop")
    async with Coordinator(log, InMemoryTransport([shop]), sagas=[my_saga]) as coordinator:
        result = await coordinator.execute(my_saga, {"order": 1})

and under every fault schedule up to a bound, with your own business invariant::

    report = await explore(my_saga, make_shop, input={"order": 1}, check=stock_is_back)
    report.raise_on_failure()
"""

from saga.log.memory import InMemorySagaLog
from saga.participant.memory import InMemoryIdempotencyStore
from saga.testing.clock import FakeClock
from saga.testing.explore import explore, explore_sync
from saga.testing.report import ExplorationReport, Failure
from saga.testing.schedule import ALL_FAULTS, FaultKind, Injection, Point, Schedule
from saga.testing.store_contract import IdempotencyStoreContract
from saga.testing.transport import Delivery, Fault, InMemoryTransport

__all__ = [
    "ALL_FAULTS",
    "Delivery",
    "ExplorationReport",
    "Failure",
    "FakeClock",
    "Fault",
    "FaultKind",
    "IdempotencyStoreContract",
    "InMemoryIdempotencyStore",
    "InMemorySagaLog",
    "InMemoryTransport",
    "Injection",
    "Point",
    "Schedule",
    "explore",
    "explore_sync",
]
