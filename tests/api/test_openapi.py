"""The OpenAPI 3.1 document: valid, every route in it, derived from the models; and a
schemathesis run from it finds no 5xx (.ci/run runs every check against a live server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from saga import Coordinator, SagaStatus
from saga.api import ROUTES, create_app, document, models
from saga.api.models import Operation, Reply
from saga.api.openapi import OPERATIONS
from saga.engine import Action
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.api.conftest import OPERATOR
from tests.api.live import LiveServer
from tests.coordinator.shop import order_saga


def _documented() -> set[tuple[str, str]]:
    return {(method, path) for path, item in document()["paths"].items() for method in item}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    coordinator = Coordinator(InMemorySagaLog(), InMemoryTransport([]), sagas=[order_saga()])
    app: web.Application = create_app(coordinator)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    # The actions route is documented once per action, each with its own body.
    actions = ("post", "/api/sagas/{saga}/actions/{action}")
    expanded = {("post", f"/api/sagas/{{saga}}/actions/{a.value}") for a in Action}
    assert (served - {actions}) | expanded == _documented()
    assert {(method.lower(), path) for method, path, _, _ in ROUTES} == served


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    OPENAPI_31_VALIDATOR.validate(doc)  # the OpenAPI 3.1 meta-schema, as schemathesis checks it
    broken = {**doc, "paths": {"/x": {"get": {"responses": "none"}}}}
    assert not OPENAPI_31_VALIDATOR.is_valid(broken)
    schema = schemathesis.openapi.from_dict(doc)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == sum(len(item) for item in doc["paths"].values())


def _schema(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else node


def test_each_action_documents_its_own_body() -> None:
    doc = document()
    for action in Action:
        op = doc["paths"][f"/api/sagas/{{saga}}/actions/{action.value}"]["post"]
        body = _schema(doc, op["requestBody"]["content"]["application/json"]["schema"])
        assert body["additionalProperties"] is False
        assert body["required"] == ["reason"]
        assert ("result" in body["properties"]) is (action is Action.SKIP), action


def test_query_parameters_are_documented_as_validated() -> None:
    doc = document()
    params = {p["name"]: p for p in doc["paths"]["/api/sagas"]["get"]["parameters"]}
    status = params["status"]
    assert (status["style"], status["explode"]) == ("form", True)
    assert _schema(doc, status["schema"]["items"])["enum"] == [s.value for s in SagaStatus]
    for name in ("created_after", "created_before", "updated_after", "updated_before"):
        kinds = params[name]["schema"]["anyOf"]
        assert {"type": "string", "format": "date-time"} in kinds
        assert any(kind.get("type") == "integer" for kind in kinds)
    assert params["limit"]["schema"]["maximum"] == 1000


def test_the_old_start_path_is_deprecated_in_the_document() -> None:
    doc = document()
    old = doc["paths"]["/api/sagas/{saga}"]["post"]
    new = doc["paths"]["/api/definitions/{name}/sagas"]["post"]
    assert old["deprecated"] is True
    assert "deprecated" not in new
    assert {"Deprecation", "Link"} <= set(old["responses"]["201"]["headers"])
    assert old["requestBody"] == new["requestBody"]


def test_a_new_operation_joins_the_document_from_its_models() -> None:
    class Ping(models.Answer):
        pong: int

    extra = Operation(
        method="GET",
        path="/api/ping",
        summary="Ping.",
        tag="health",
        replies={200: Reply(description="Pong.", model=Ping)},
        query=models.CompensationsQuery,
    )
    doc = document([*OPERATIONS, extra])
    op = doc["paths"]["/api/ping"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"name", "limit", "cursor"}
    assert doc["components"]["schemas"]["Ping"]["required"] == ["pong"]
    assert {"401", "403", "421", "429"} <= set(op["responses"])


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


def test_operation_ids_are_unique_and_every_link_names_one() -> None:
    doc = document()
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    started = doc["paths"]["/api/definitions/{name}/sagas"]["post"]["responses"]["201"]
    assert {link["operationId"] for link in started["links"].values()} <= set(ids)
    assert started["links"]["read"]["parameters"] == {"saga": "$response.body#/saga_id"}
