"""``python -m examples.travel [--nats URL]``: book two trips and print what happened.

Without ``--nats`` everything runs in this process (the in-memory transport and log from
``saga.testing``); with it, the four services are served over that NATS server and the saga
log is a SQLite file (in a temp folder unless ``book_trips`` is given one).

Each trip's flight, hotel and car are booked at the same time, while its manager approves it
(``Coordinator.signal`` delivers the event ``approved``; its payload goes on the tickets).
Commands sent together are answered in any order, so the story lists each group of them in
a fixed order: what happened in it, not when.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import click

from examples.travel.saga import APPROVED, TRIP_SAGA, trip_input
from examples.travel.services import DECLINED_CARD, TravelServices
from saga import Coordinator, NatsTransport, SagaLog, SqlSagaLog, Transport
from saga.testing import InMemorySagaLog, InMemoryTransport

_TOGETHER = {
    "hold": "  sent together, answered in any order:",
    "book": "  sent together, answered in any order:",
    "rent": "  sent together, answered in any order:",
    "cancelled": "  cancelled together, in any order:",
}
_ORDER = {"flight": 0, "hotel": 1, "car": 2}


@contextlib.asynccontextmanager
async def _wiring(
    nats_url: str | None, services: TravelServices, db: Path | None
) -> AsyncIterator[tuple[SagaLog, Transport]]:
    if nats_url is None:
        yield InMemorySagaLog(), InMemoryTransport(services.participants)
        return
    with tempfile.TemporaryDirectory(prefix="saga-travel-") as folder:
        servers = [await p.serve(nats_url) for p in services.participants]
        try:
            path = db or Path(folder) / "travel.db"
            yield SqlSagaLog(f"sqlite:///{path}"), NatsTransport(nats_url)
        finally:
            for server in servers:
                await server.stop()


def _grouped(log: list[str]) -> list[str]:
    """The services' log with each run of commands sent together listed in a fixed order."""
    out: list[str] = []
    group: list[str] = []
    heading = ""
    for line in [*log, ""]:
        what = line.partition(": ")[2]
        head = _TOGETHER.get(what.split(" ")[0], "") if line else ""
        if group and head != heading:
            if len(group) > 1:
                out.append(heading)
                group.sort(key=lambda item: _ORDER.get(item.partition(":")[0], 9))
                out.extend(f"    {item}" for item in group)
            else:
                out.append(f"  {group[0]}")
            group = []
        heading = head
        if head:
            group.append(line)
        elif line:
            out.append(f"  {line}")
    return out


async def book_trips(
    nats_url: str | None = None,
    *,
    services: TravelServices | None = None,
    db: Path | None = None,
) -> list[str]:
    """Book one trip that succeeds and one whose card is declined; return the printed lines.

    ``services`` (default: fresh ones) serve the trips; with ``nats_url``, ``db`` is the
    SQLite file of the saga log (default: one in a temp folder, removed after).
    """
    services = services or TravelServices()
    out: list[str] = []
    trips = [trip_input("trip-1", "Ada"), trip_input("trip-2", "Bo", DECLINED_CARD)]
    async with _wiring(nats_url, services, db) as (log, transport):
        coordinator = Coordinator(log, transport, sagas=[TRIP_SAGA])
        async with coordinator:
            for trip in trips:
                services.log.clear()
                handle = await coordinator.start(TRIP_SAGA, trip, saga_id=trip["trip_id"])
                approval = {"approver": "Cleo", "budget": "sales-travel"}
                await coordinator.signal(
                    handle.saga_id,
                    APPROVED,
                    event_id=f"{trip['trip_id']}-approval",
                    payload=approval,
                    sender="manager",
                )
                result = await asyncio.wait_for(handle.result(), 60)
                out.append(f"{trip['trip_id']} for {trip['traveller']}: {result.status.value}")
                out.append(f"  approved by {approval['approver']} (budget {approval['budget']})")
                out.extend(_grouped(services.log))
                if result.compensated:
                    # Compensated at the same time, so listed in the plan's order (latest
                    # step first), not in the order they happened to finish.
                    order = [s.name for s in reversed(TRIP_SAGA.steps)]
                    done = sorted(result.compensated, key=order.index)
                    out.append(f"  compensated: {', '.join(done)}")
    return out


@click.command()
@click.option("--nats", "nats_url", default=None, help="Serve over this NATS server.")
def main(nats_url: str | None) -> None:
    """Book two trips: one completes, one is compensated (car, hotel and flight cancelled)."""
    for line in asyncio.run(book_trips(nats_url)):
        click.echo(line)


if __name__ == "__main__":
    main()
