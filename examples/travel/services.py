"""flight, hotel, car and mail: four tiny participants with in-memory availability.

``python -m examples.travel.services --nats URL`` serves all four over NATS (``saga dev``
starts it); ``TravelServices().participants`` gives them to an in-process transport. The
three bookings of a trip arrive together and are handled independently, as are their
cancellations.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import click

from saga import CommandContext, Participant, Rejected, redact_url

DECLINED_CARD = "4000000000000002"


class TravelServices:
    """Seats, rooms and cars, each held or booked at most once per trip, and a mailer."""

    def __init__(self, *, seats: int = 100, rooms: int = 50, cars: int = 20) -> None:
        self.free = {"flight": seats, "hotel": rooms, "car": cars}
        self.held: dict[str, dict[str, str]] = {"flight": {}, "hotel": {}, "car": {}}
        """Per service: trip id -> held | cancelled | ticketed."""
        self.log: list[str] = []
        """What the services did, in the order they did it: ``"<service>: <what>"``."""
        self.flight, self.hotel, self.car = (Participant(n) for n in ("flight", "hotel", "car"))
        self.mail = Participant("mail")
        self._register(self.flight, "hold")
        self._register(self.hotel, "book")
        self._register(self.car, "rent")

        @self.flight.command("ticket")
        async def ticket(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            await self.arrived(req["trip_id"], "flight", "ticket")
            if req.get("card") == DECLINED_CARD:
                self.log.append(f"flight: card declined for {req['traveller']}")
                raise Rejected("the card was declined", code="card_declined")
            self.held["flight"][req["trip_id"]] = "ticketed"
            self.log.append(
                f"flight: ticketed {req['flight']} for {req['traveller']},"
                f" approved by {req.get('approved_by', 'nobody (a version-1 trip)')}"
            )
            return {"ticket": f"{req['flight']}-{req['trip_id']}"}

        @self.mail.command("itinerary")
        async def itinerary(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            await self.arrived(req["trip_id"], "mail", "itinerary")
            self.log.append(f"mail: itinerary {req['ticket']} sent to {req['traveller']}")
            return {"sent": True}

    @property
    def participants(self) -> list[Participant]:
        return [self.flight, self.hotel, self.car, self.mail]

    async def arrived(self, trip: str, service: str, command: str) -> None:
        """Called as each command arrives, before it is handled; does nothing here.

        A test overrides it to see the order commands arrive in, or to hold them (the three
        bookings of a trip are all in flight before any of them answers)."""

    def _register(self, participant: Participant, verb: str) -> None:
        kind = participant.name

        @participant.command(verb)
        async def book(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            trip = req["trip_id"]
            await self.arrived(trip, kind, verb)
            state = self.held[kind].get(trip)
            if state == "cancelled":
                raise Rejected(f"trip {trip} was cancelled", code="cancelled")
            if state is None:
                if self.free[kind] <= 0:
                    self.log.append(f"{kind}: none left for {req['traveller']}")
                    raise Rejected(f"no {kind} available", code="sold_out")
                self.free[kind] -= 1
                self.held[kind][trip] = "held"
                self.log.append(f"{kind}: {verb} for {req['traveller']}")
            return {"trip_id": trip, kind: req.get(kind)}

        @participant.command("cancel")
        async def cancel(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            trip = req["trip_id"]
            await self.arrived(trip, kind, "cancel")
            if self.held[kind].get(trip) == "held":
                self.free[kind] += 1
                self.log.append(f"{kind}: cancelled for {req['traveller']}")
            self.held[kind][trip] = "cancelled"
            return {"trip_id": trip, "cancelled": kind}


@click.command()
@click.option("--nats", "nats_url", default="nats://127.0.0.1:4222", envvar="SAGA_NATS_URL")
def main(nats_url: str) -> None:
    """Serve flight, hotel, car and mail over NATS until SIGINT or SIGTERM."""

    async def serve() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        services = TravelServices()
        servers = [await p.serve(nats_url) for p in services.participants]
        click.echo(f"travel (flight, hotel, car, mail) ready: nats {redact_url(nats_url)}")
        await stop.wait()
        for server in servers:
            await asyncio.wait_for(server.stop(), 15)
        click.echo("travel stopped")

    asyncio.run(serve())


if __name__ == "__main__":
    main()
