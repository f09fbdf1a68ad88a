"""A live API server in a thread with its own event loop, for blocking clients (CLI, fuzzers)."""

from __future__ import annotations

import asyncio
import threading

from saga import Coordinator
from saga.api import ApiConfig, HttpServer, start_http
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.api.conftest import TOKENS
from tests.coordinator.shop import Shop, order_saga, pivot_saga


class LiveServer:
    """The API with an in-memory coordinator, served from a thread with its own event loop."""

    def __init__(self) -> None:
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        assert self._ready.wait(20), "the live server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        shop = Shop()
        shop.fail["payments.release"] = 10**6
        shop.reject.add("inventory.reserve")
        coordinator = Coordinator(
            InMemorySagaLog(), InMemoryTransport(shop.participants),
            sagas=[order_saga(), pivot_saga()],
        )  # fmt: skip
        async with coordinator:
            # Sagas in each state, so actions meet real ones: stuck, compensated, completed.
            await coordinator.execute("order", {"card": "4111"}, saga_id="stuck-one")
            await coordinator.execute("ship", {}, saga_id="shipped")
            config = ApiConfig(tokens=TOKENS, redact=frozenset({"card"}))
            server: HttpServer = await start_http(coordinator, port=0, config=config)
            self.url = server.url
            self._ready.set()
            await self._stop.wait()
            await server.close()
