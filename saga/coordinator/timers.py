"""Durable timers' in-memory schedule: one heap for every saga, rebuilt from the log at start."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Callable
from typing import Any

from saga.clock import Clock


class TimerWheel:
    """Calls ``fire(saga_id)`` when a saga's wake-up time comes. One task, no polling per saga.

    Each saga has at most one pending wake-up; scheduling again replaces it.
    """

    def __init__(self, clock: Clock, fire: Callable[[str], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="saga-timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def schedule(self, saga_id: str, at_ms: int | None) -> None:
        if at_ms is None:
            self._due.pop(saga_id, None)
            return
        if self._due.get(saga_id) == at_ms:
            return
        self._due[saga_id] = at_ms
        heapq.heappush(self._heap, (at_ms, saga_id))
        if self._heap[0] == (at_ms, saga_id):
            self._changed.set()

    def pending(self) -> int:
        return len(self._due)

    async def _run(self) -> None:
        while True:
            now = self._clock.now_ms()
            while self._heap and self._heap[0][0] <= now:
                at_ms, saga_id = heapq.heappop(self._heap)
                if self._due.get(saga_id) == at_ms:
                    del self._due[saga_id]
                    self._fire(saga_id)
            self._changed.clear()
            delay = None if not self._heap else (self._heap[0][0] - now) / 1000
            await self._wait(delay)

    async def _wait(self, delay: float | None) -> None:
        changed = asyncio.create_task(self._changed.wait())
        waiters: set[asyncio.Task[Any]] = {changed}
        if delay is not None:
            waiters.add(asyncio.create_task(self._clock.sleep(delay)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()
            # asyncio.wait, not ``await task`` under suppress(CancelledError): that swallowed
            # a stop() arriving right here, and the wheel then never stopped.
            await asyncio.wait(waiters)
