"""``python -m examples.travel [--nats URL]``: book two trips and print what happened.

Without ``--nats`` everything runs in this process (the in-memory transport and log from
``saga.testing``); with it, the three services are served over that NATS server and the saga
log is a SQLite file in a temp folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator

import click

from examples.travel.saga import TRIP_SAGA, trip_input
from examples.travel.services import DECLINED_CARD, TravelServices
from saga import Coordinator, NatsTransport, SagaLog, SqlSagaLog, Transport
from saga.testing import InMemorySagaLog, InMemoryTransport


@contextlib.asynccontextmanager
async def _wiring(
    nats_url: str | None, services: TravelServices
) -> AsyncIterator[tuple[SagaLog, Transport]]:
    if nats_url is None:
        yield InMemorySagaLog(), InMemoryTransport(services.participants)
        return
    with tempfile.TemporaryDirectory(prefix="saga-travel-") as folder:
        servers = [await p.serve(nats_url) for p in services.participants]
        try:
            yield SqlSagaLog(f"sqlite:///{folder}/travel.db"), NatsTransport(nats_url)
        finally:
            for server in servers:
                await server.stop()


async def book_trips(nats_url: str | None = None) -> list[str]:
    """Book one trip that succeeds and one whose card is declined; return the printed lines."""
    services = TravelServices()
    out: list[str] = []
    trips = [trip_input("trip-1", "Ada"), trip_input("trip-2", "Bo", DECLINED_CARD)]
    async with _wiring(nats_url, services) as (log, transport):
        coordinator = Coordinator(log, transport, sagas=[TRIP_SAGA])
        async with coordinator:
            for trip in trips:
                services.log.clear()
                result = await asyncio.wait_for(coordinator.execute(TRIP_SAGA, trip), 60)
                out.append(f"{trip['trip_id']} for {trip['traveller']}: {result.status.value}")
                out.extend(f"  {line}" for line in services.log)
                if result.compensated:
                    out.append(f"  compensated, in order: {', '.join(result.compensated)}")
    return out


@click.command()
@click.option("--nats", "nats_url", default=None, help="Serve over this NATS server.")
def main(nats_url: str | None) -> None:
    """Book two trips: one completes, one is compensated (car, hotel, flight)."""
    for line in asyncio.run(book_trips(nats_url)):
        click.echo(line)


if __name__ == "__main__":
    main()
