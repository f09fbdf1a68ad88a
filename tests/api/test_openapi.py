"""The OpenAPI document matches the routes, and a schemathesis run from it finds no 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from saga import Coordinator
from saga.api import document
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.api.conftest import OPERATOR
from tests.api.live import LiveServer
from tests.coordinator.shop import order_saga


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


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    with LiveServer() as server:
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
