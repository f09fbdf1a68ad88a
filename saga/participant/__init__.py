"""The participant SDK: expose a service's saga commands, idempotently, over NATS micro.

The package composes its two halves: the transport-free core (``service.ParticipantCore``:
handlers, idempotency, fencing) and the NATS server (``nats.ParticipantServer``). The core
never imports the server; ``Participant`` below is where they meet, so ``participant.serve``
stays one call without an import cycle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from nats.aio.client import Client as NatsClient

from saga.participant.completions import CompletingTransaction, Completions
from saga.participant.context import Accepted, CommandContext, Handler
from saga.participant.memory import InMemoryIdempotencyStore
from saga.participant.nats import ParticipantServer, completion_announcer
from saga.participant.service import ParticipantCore
from saga.participant.sql import SqlIdempotencyStore
from saga.participant.store import Claim, IdempotencyRecord, IdempotencyStore, RecordState
from saga.transport.security import NatsSecurity

__all__ = [
    "Accepted",
    "Claim",
    "CommandContext",
    "CompletingTransaction",
    "Completions",
    "Handler",
    "IdempotencyRecord",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "Participant",
    "RecordState",
    "SqlIdempotencyStore",
]


class Participant(ParticipantCore):
    """One service's saga commands: register handlers, then ``handle`` or ``serve`` them."""

    async def serve(
        self,
        nats: str | Sequence[str] | NatsClient,
        *,
        connect_options: Mapping[str, Any] | None = None,
        security: NatsSecurity | None = None,
    ) -> ParticipantServer:
        """Serve every command as a ``nats.micro`` endpoint; ``await server.stop()`` to end.

        ``nats`` is a server URL or a list of a cluster's URLs (a connection is made and
        closed by the server handle), or a connected nats-py client (left open). Replicas
        share load through a queue group named after the participant. ``security`` holds
        credentials and TLS for the URLs (``NatsSecurity.from_env()`` reads them from
        ``SAGA_NATS_*`` variables).
        """
        return await ParticipantServer.start(
            self, nats, connect_options=connect_options, security=security
        )

    def completer(self, nats: NatsClient | None = None) -> Completions:
        """Completions for a process that does not serve (a worker sharing the SQL store):
        ``await participant.completer(nc).complete(token, result)``.

        ``nats`` is a connected nats-py client (left open) to announce each completion on;
        without one, completions are only recorded, and coordinators find them when they
        next re-send the command. A serving participant announces by itself:
        ``await participant.complete(token, result)``.
        """
        announce = completion_announcer(nats) if nats is not None else None
        return Completions(self.name, self.store, announce=announce, clock=self._clock)

    @asynccontextmanager
    async def serving(
        self,
        nats: str | Sequence[str] | NatsClient,
        *,
        connect_options: Mapping[str, Any] | None = None,
        security: NatsSecurity | None = None,
    ) -> AsyncIterator[ParticipantServer]:
        """``async with participant.serving(url) as server:`` serves until the block ends."""
        server = await self.serve(nats, connect_options=connect_options, security=security)
        try:
            yield server
        finally:
            await server.stop()
