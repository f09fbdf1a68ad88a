"""FakeClock: time that moves only when a test says so."""

from __future__ import annotations

import asyncio
from datetime import timedelta


class FakeClock:
    """A Clock whose time moves only through ``advance``; sleepers wake when it passes them."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms
        self._sleepers: list[tuple[int, asyncio.Future[None]]] = []

    def now_ms(self) -> int:
        return self._now_ms

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now_ms + int(seconds * 1000), future))
        await future

    async def advance(self, delta: timedelta | int) -> None:
        """Move time forward (a timedelta, or milliseconds) and let woken tasks run."""
        ms = int(delta.total_seconds() * 1000) if isinstance(delta, timedelta) else delta
        if ms < 0:
            raise ValueError("time only moves forward")
        self._now_ms += ms
        due = [(at, f) for at, f in self._sleepers if at <= self._now_ms]
        self._sleepers = [(at, f) for at, f in self._sleepers if at > self._now_ms]
        for _, future in due:
            if not future.done():
                future.set_result(None)
        for _ in range(10):
            await asyncio.sleep(0)
