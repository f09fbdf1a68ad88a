"""Test helpers: an on_reply handler tests can wait on, and a polling wait for counters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from saga.protocol import Command, Reply

TIMEOUT_S = 30.0


async def wait_until(predicate: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    """Poll ``predicate`` until true: for plain counters that have no event to wait on."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - counters under test expose no event
            await asyncio.sleep(0.01)


class ReplyCollector:
    """Records every (command, reply) the transport hands over."""

    def __init__(self) -> None:
        self.received: list[tuple[Command, Reply]] = []
        self._changed = asyncio.Condition()

    async def __call__(self, command: Command, reply: Reply) -> None:
        async with self._changed:
            self.received.append((command, reply))
            self._changed.notify_all()

    async def wait_count(
        self, count: int, timeout_s: float = TIMEOUT_S
    ) -> list[tuple[Command, Reply]]:
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    async def wait_reply(self, command: Command, timeout_s: float = TIMEOUT_S) -> Reply:
        """The first reply whose command equals ``command`` (same saga, step, attempt...)."""

        def found() -> Reply | None:
            return next((r for c, r in self.received if c == command), None)

        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: found() is not None)
        reply = found()
        assert reply is not None
        return reply
