"""Helpers for the real-server security tests: server configs, a participant, one round trip."""

from __future__ import annotations

import asyncio
from typing import Any

from saga.participant import CommandContext, Participant
from saga.protocol import Command, Direction, Reply
from saga.transport.nats import NatsTransport
from saga.transport.security import NatsSecurity
from tests.security.certs import Pki
from tests.transport.replies import ReplyCollector

TIMEOUT_S = 30.0


def tls_block(pki: Pki, *, verify_clients: bool = False) -> str:
    """A nats-server ``tls {}`` block with the test PKI; ``verify`` asks for client certs."""
    verify = "verify: true" if verify_clients else ""
    return f"""
tls {{
  cert_file: "{pki.server.cert}"
  key_file: "{pki.server.key}"
  ca_file: "{pki.ca}"
  {verify}
  timeout: 5
}}
"""


def command(service: str = "payments", saga_id: str = "saga-1", **payload: Any) -> Command:
    return Command(
        saga_id=saga_id,
        saga_name="order",
        step="charge",
        direction=Direction.FORWARD,
        attempt=1,
        service=service,
        command="charge",
        payload=payload,
    )


class Charges:
    """A participant named ``service`` with one command, ``charge``, that records saga ids."""

    def __init__(self, service: str = "payments") -> None:
        self.participant = Participant(service)
        self.handled: list[str] = []

        @self.participant.command("charge")
        async def charge(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            self.handled.append(ctx.saga_id)
            return {"charged": request.get("amount", 0)}


async def round_trip(
    url: str,
    *,
    coordinator: NatsSecurity | None,
    service: NatsSecurity | None,
    amount: int = 42,
) -> Reply:
    """Serve ``payments`` with ``service`` credentials, send it a command with ``coordinator``'s."""
    charges = Charges()
    async with charges.participant.serving(url, security=service):
        replies = ReplyCollector()
        transport = NatsTransport(url, security=coordinator)
        await transport.open(replies)
        try:
            sent = command(amount=amount)
            await transport.send(sent)
            return await asyncio.wait_for(replies.wait_reply(sent), TIMEOUT_S)
        finally:
            await transport.close()
