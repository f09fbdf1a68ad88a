"""The OpenAPI document matches the routes, and a schemathesis run from it finds no 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from saga import Coordinator
from saga.api import ApiConfig, HttpServer, document, start_http
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.api.conftest import OPERATOR, TOKENS
from tests.coordinator.shop import Shop, order_saga, pivot_saga


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    from aiohttp import web

    from saga.api import create_app

    coordinator = Coordinator(InMemorySagaLog(), InMemoryTransport([]), sagas=[order_saga()])
    app: web.Application = create_app(coordinator)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    doc = document()
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert served == documented
    assert doc["openapi"].startswith("3.")


def test_the_document_is_valid_openapi() -> None:
    schema = schemathesis.openapi.from_dict(document())
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == sum(len(item) for item in document()["paths"].values())


class _LiveServer:
    """The API with an in-memory coordinator, served from a thread with its own event loop."""

    def __init__(self) -> None:
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _LiveServer:
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


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    with _LiveServer() as server:
        yield server.url


schema = schemathesis.openapi.from_dict(document()).exclude(path="/api/events")
"""Everything but the event stream, which never ends by design (tested in test_ops)."""


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_request_from_the_document_gets_a_5xx(case: Any, live_url: str) -> None:
    case.call_and_validate(
        base_url=live_url, headers=OPERATOR, checks=[not_a_server_error], timeout=10
    )
