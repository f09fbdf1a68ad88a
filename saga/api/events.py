"""Server-sent events: every recorded saga change, fanned out to the dashboard's streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from saga.coordinator import SagaChange

QUEUE_SIZE = 1000
"""Changes buffered per client; a client that falls further behind is disconnected (it
reconnects and re-reads the lists, so it never silently misses a change)."""


def change_json(change: SagaChange) -> dict[str, Any]:
    return {
        "saga_id": change.saga_id,
        "name": change.name,
        "version": change.version,
        "status": change.status.value,
        "health": None if change.health is None else change.health.value,
        "current_step": change.current_step,
        "seq": change.seq,
        "events": [event.type.value for event in change.events],
        "at_ms": change.events[-1].at_ms if change.events else None,
    }


@dataclass(eq=False)
class Subscriber:
    """One open stream: its queue, an optional saga filter, and whether it fell behind."""

    saga_id: str | None = None
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    overflowed: bool = False


class EventHub:
    """Hands each saga change to every subscriber without blocking the coordinator."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._closed = False

    def publish(self, change: SagaChange) -> None:
        """A coordinator listener: must be fast and must not raise."""
        if self._closed or not self._subscribers:
            return
        message = change_json(change)
        for sub in list(self._subscribers):
            if sub.saga_id is not None and sub.saga_id != change.saga_id:
                continue
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                sub.overflowed = True
                self._subscribers.discard(sub)

    def subscribe(self, saga_id: str | None = None) -> Subscriber:
        sub = Subscriber(saga_id=saga_id)
        if self._closed:
            sub.queue.put_nowait(None)
        else:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every stream (at shutdown), so the server does not wait on them."""
        self._closed = True
        for sub in self._subscribers:
            while True:
                try:
                    sub.queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    with contextlib.suppress(asyncio.QueueEmpty):
                        sub.queue.get_nowait()
        self._subscribers.clear()


async def stream(
    request: web.Request, hub: EventHub, heartbeat_s: float, saga_id: str | None
) -> web.StreamResponse:
    """Write ``event: saga`` messages until the client goes, the hub closes, or it falls behind."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    sub = hub.subscribe(saga_id)
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n: connected\n\n")
        while True:
            try:
                message = await asyncio.wait_for(sub.queue.get(), heartbeat_s)
            except TimeoutError:
                if sub.overflowed:
                    break
                await response.write(b": ping\n\n")
                continue
            if message is None:
                break
            data = json.dumps(message, separators=(",", ":"))
            event_id = f"{message['saga_id']}:{message['seq']}"
            await response.write(f"event: saga\nid: {event_id}\ndata: {data}\n\n".encode())
            if sub.overflowed and sub.queue.empty():
                break
    except ConnectionResetError:
        pass  # the client went away
    finally:
        hub.unsubscribe(sub)
    return response
