"""Participants for the integration tests, served over a real NATS, counting real effects."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from saga import Participant, Rejected
from saga.participant import CommandContext


class CountingServices:
    """orders, payments, inventory, each with ``do`` and ``undo``.

    ``runs`` counts handler executions per (service, direction, saga); ``reject`` names
    services whose ``do`` says no; ``hold`` names services whose handler waits for ``release``.
    """

    def __init__(
        self,
        *,
        reject: set[str] | None = None,
        hold: set[str] | None = None,
        accept: set[str] | None = None,
    ) -> None:
        self.runs: Counter[tuple[str, str, str]] = Counter()
        self.accept = accept or set()
        """Services whose ``do`` accepts the command (long-running): ``tokens`` keeps each
        command's completion token, by saga id, for the test to complete it later."""
        self.tokens: dict[str, str] = {}
        self.accepted = asyncio.Event()
        self.order: list[tuple[str, str]] = []
        self.reject = reject or set()
        self.hold = hold or set()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.participants = [Participant(n) for n in ("orders", "payments", "inventory")]
        for participant in self.participants:
            participant.command("do")(self._handler(participant.name, "forward"))
            participant.command("undo")(self._handler(participant.name, "compensate"))
        self._servers: list[Any] = []

    def _handler(self, service: str, direction: str) -> Any:
        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            if direction == "forward" and service in self.hold:
                self.entered.set()
                await self.release.wait()
            if direction == "forward" and service in self.reject:
                raise Rejected(f"{service} says no", code="no")
            self.runs[(service, direction, ctx.saga_id)] += 1
            self.order.append((service, direction))
            if direction == "forward" and service in self.accept:
                self.tokens[ctx.saga_id] = ctx.token
                self.accepted.set()
                return ctx.accept()
            return {"service": service, "attempt": ctx.attempt}

        return handle

    async def serve(self, url: str) -> None:
        self._servers = [await p.serve(url) for p in self.participants]

    async def stop(self) -> None:
        self.release.set()
        for server in self._servers:
            await server.stop()
        self._servers = []

    def participant(self, name: str) -> Participant:
        return next(p for p in self.participants if p.name == name)
