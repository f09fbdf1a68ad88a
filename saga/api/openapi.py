"""The OpenAPI 3.1 document, derived from ``saga.api.models``: served at /openapi.json.

Each route is one ``Operation`` in ``OPERATIONS``, naming the models its handler validates
with, so a parameter, body or answer cannot drift from the checks. A new route joins with
one ``Operation`` in a list of its module, spliced into ``OPERATIONS`` below.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from saga.api import models, openapi_ops
from saga.api.models import Operation, Query, Reply
from saga.api.problems import MEDIA as PROBLEM_MEDIA
from saga.engine import Action

JSON = "application/json"
REF = "#/components/schemas/{model}"

TAGS = [
    {"name": "sagas", "description": "Start, list and read sagas."},
    {"name": "actions", "description": "Operator actions, audited in the saga's log."},
    {"name": "events", "description": "Outside events for a saga's wait steps."},
    {"name": "operations", "description": "What runs: definitions, services, coordinators."},
    {"name": "health", "description": "Liveness, readiness, metrics and this document."},
    {"name": "dashboard", "description": "The dashboard's page and assets."},
]

_PAGE_ERRORS = {400: "A bad query parameter (the message names it)."}
_START_ERRORS = {
    400: "The body is not JSON, or saga_id is invalid.",
    404: "No saga definition of that name (or version).",
    409: "A saga with that id exists with another name or input.",
    413: "The body or the input is too large.",
    422: "A field of the body is wrong (the message names it).",
}
_SAGA_LINKS = {
    "read": {
        "operationId": "get_api_sagas_saga",
        "parameters": {"saga": "$response.body#/saga_id"},
    },
    **{
        action.value: {
            "operationId": f"post_api_sagas_saga_actions_{action.value}",
            "parameters": {"saga": "$response.body#/saga_id"},
        }
        for action in Action
    },
    "event": {
        "operationId": "post_api_sagas_saga_events_event",
        "parameters": {"saga": "$response.body#/saga_id"},
    },
}
"""What a client does next with a saga it started (schemathesis follows these too)."""
_START_REPLIES = {
    201: Reply(
        description="Started.",
        model=models.Started,
        headers={"Location": "The saga's URL."},
        links=_SAGA_LINKS,
    ),
    200: Reply(
        description="A saga with that id existed; nothing started.",
        model=models.Started,
        headers={"Location": "The saga's URL."},
        links=_SAGA_LINKS,
    ),
}
_DEPRECATION = {
    "Deprecation": "true: this path is deprecated.",
    "Link": 'The successor: </api/definitions/{name}/sagas>; rel="successor-version".',
}


def _action(action: Action) -> Operation:
    return Operation(
        method="POST",
        path=f"/api/sagas/{{saga}}/actions/{action.value}",
        summary=f"{action.value}: {_ACTION_SUMMARY[action]} ?dry_run=1 only previews it.",
        tag="actions",
        replies={200: Reply(description="What it did (or would do).", model=models.Preview)},
        errors={
            400: "A bad saga id or dry_run value, or a body that is not JSON.",
            404: "No saga with that id.",
            409: "The action does not fit the saga's state now.",
            413: "The body is too large.",
            422: "A field of the body is wrong (the message names it).",
        },
        path_model=models.SagaPath,
        query=models.ActionQuery,
        body=models.ACTION_BODIES[action],
        body_required=True,
        write=True,
    )


_ACTION_SUMMARY = {
    Action.RETRY: "retry the current step or compensation now.",
    Action.CANCEL: "compensate a saga that has not passed its pivot.",
    Action.RESOLVE: "mark the failing compensation as done by hand, and go on compensating.",
    Action.SKIP: "mark the failing forward step as done by hand (with a result), and go on.",
    Action.FORCE_FORWARD: "at or past the pivot, take the pivot as done or retry without limit.",
}

OPERATIONS: list[Operation] = [
    Operation(
        method="GET",
        path="/api/sagas",
        summary="List sagas, newest first.",
        tag="sagas",
        replies={200: Reply(description="A page of sagas.", model=models.SagaList)},
        errors=_PAGE_ERRORS,
        query=models.SagaListQuery,
    ),
    Operation(
        method="GET",
        path="/api/sagas/{saga}",
        summary="One saga: status, health, input, results, timeline and actions.",
        tag="sagas",
        replies={200: Reply(description="The saga.", model=models.SagaDetail)},
        errors={400: "The saga id is invalid.", 404: "No saga with that id."},
        path_model=models.SagaPath,
    ),
    Operation(
        method="POST",
        path="/api/definitions/{name}/sagas",
        summary="Start a saga of the named definition (idempotent with a saga_id).",
        tag="sagas",
        replies=_START_REPLIES,
        errors=_START_ERRORS,
        path_model=models.DefinitionPath,
        body=models.StartRequest,
        write=True,
    ),
    Operation(
        method="POST",
        path="/api/sagas/{saga}",
        summary="Deprecated: start a saga; use POST /api/definitions/{name}/sagas.",
        description="The same body and answers as POST /api/definitions/{name}/sagas, where"
        " {saga} is a definition's name; every answer carries Deprecation and Link headers.",
        tag="sagas",
        replies={
            status: Reply(
                description=reply.description,
                model=reply.model,
                headers={**reply.headers, **_DEPRECATION},
                links=reply.links,
            )
            for status, reply in _START_REPLIES.items()
        },
        errors=_START_ERRORS,
        path_model=models.OldStartPath,
        body=models.StartRequest,
        write=True,
        deprecated=True,
    ),
    *(_action(action) for action in Action),
    Operation(
        method="POST",
        path="/api/sagas/{saga}/events/{event}",
        summary="Deliver an outside event to the saga's wait step (idempotent by the event's"
        " id); an event that comes before the saga reaches its step is kept for it. Needs the"
        " signal or the operator role.",
        tag="events",
        replies={
            201: Reply(
                description="Recorded: it completed a wait step, or is kept.",
                model=models.EventTaken,
            ),
            200: Reply(
                description="A repeat of an event id; nothing changed.", model=models.EventTaken
            ),
        },
        errors={
            400: "A bad body, event id or event name, or a payload that is not a JSON object.",
            404: "No saga with that id.",
            409: "The saga is finished, or the step that waits for this event took another.",
            413: "The body or the payload is too large.",
            422: "No step of the saga waits for an event of that name.",
            503: "The saga log is unavailable; try again.",
        },
        path_model=models.EventPath,
        body=models.EventRequest,
        body_required=True,
        write=True,
    ),
    Operation(
        method="GET",
        path="/api/compensations",
        summary="Sagas compensating, failing to compensate, or stuck.",
        tag="sagas",
        replies={200: Reply(description="A page of them.", model=models.Compensations)},
        errors=_PAGE_ERRORS,
        query=models.CompensationsQuery,
    ),
    Operation(
        method="GET",
        path="/api/definitions",
        summary="Registered saga definitions.",
        tag="operations",
        replies={200: Reply(description="Them.", model=models.Definitions)},
    ),
    Operation(
        method="GET",
        path="/api/services",
        summary="Flow control per participant service: queued, in flight, current limit.",
        tag="operations",
        replies={200: Reply(description="Them.", model=models.Services)},
    ),
    Operation(
        method="GET",
        path="/api/coordinators",
        summary="The coordinators sharing the saga log (live, and ended in the last 10"
        " minutes): leases and load.",
        tag="operations",
        replies={200: Reply(description="Them.", model=models.Coordinators)},
    ),
    Operation(
        method="GET",
        path="/api/me",
        summary="The caller's identity and role.",
        tag="operations",
        replies={200: Reply(description="Me.", model=models.Me)},
    ),
    Operation(
        method="GET",
        path="/api/events",
        summary="Server-sent events: one `saga` event per recorded change.",
        tag="sagas",
        replies={200: Reply(description="An event stream.", media="text/event-stream")},
        errors=_PAGE_ERRORS,
        query=models.EventsQuery,
    ),
    Operation(
        method="GET",
        path="/metrics",
        summary="Prometheus metrics.",
        tag="health",
        replies={200: Reply(description="Text format.", media="text/plain")},
    ),
    Operation(
        method="GET",
        path="/healthz",
        summary="Liveness.",
        tag="health",
        replies={200: Reply(description="Up.", model=models.Status)},
        public=True,
    ),
    Operation(
        method="GET",
        path="/readyz",
        summary="Readiness: the saga log answers and accepted the last write, and the"
        " transport is connected.",
        tag="health",
        replies={
            200: Reply(description="Ready.", model=models.Readiness),
            503: Reply(description="Not ready, with each check's reason.", model=models.Readiness),
        },
        public=True,
    ),
    Operation(
        method="GET",
        path="/openapi.json",
        summary="This document.",
        tag="health",
        replies={
            200: Reply(description="OpenAPI 3.1.", media=JSON, schema={"type": "object"}),
        },
        public=True,
    ),
    Operation(
        method="GET",
        path="/",
        summary="The dashboard.",
        tag="dashboard",
        replies={200: Reply(description="HTML.", media="text/html")},
        public=True,
    ),
    Operation(
        method="GET",
        path="/static/{name}",
        summary="Dashboard assets.",
        tag="dashboard",
        replies={200: Reply(description="An asset.", media="*/*")},
        errors={404: "No such asset."},
        path_model=models.AssetPath,
        public=True,
    ),
    *openapi_ops.OPERATIONS,
]
"""Every route's contract. Another module's routes join here: ``*module.OPERATIONS``."""


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA: {"schema": {"$ref": REF.format(model="Problem")}}},
    }


def _common_errors(op: Operation) -> dict[int, dict[str, Any]]:
    # Every route: 421 for a Host name the server does not answer to (DNS rebinding). Every
    # route with a token: 401, 403 (role), 429 (too many wrong tokens from this address).
    found = {421: _problem("The Host is not one this server answers to.")}
    if not op.public:
        found[401] = _problem("No token, or a token that is not valid.")
        found[403] = _problem("The token's role may not do this.")
        found[429] = {
            **_problem("Too many failed authentications from this address."),
            "headers": {
                "Retry-After": {
                    "description": "Seconds until the oldest failure expires.",
                    "schema": {"type": "integer"},
                }
            },
        }
    if op.write:
        found[403] = _problem(
            "The token's role may not do this, or a browser page on another origin asked."
        )
        found[415] = _problem("The body is not application/json.")
    return found


def _no_null_defaults(schema: Any) -> Any:
    """``schema`` without ``"default": null`` where null is not a value it takes (pydantic
    writes the Python default of a field that may be left out but not sent as null)."""
    if isinstance(schema, list):
        return [_no_null_defaults(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    found = {key: _no_null_defaults(value) for key, value in schema.items()}
    if found.get("default", 0) is None and {"type": "null"} not in found.get("anyOf", []):
        del found["default"]
    return found


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query or path field's schema without the ``null`` branch of an optional field."""
    branches = schema.get("anyOf")
    if not branches:
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    if len(kept) == 1:
        return {**kept[0], **rest}
    return {**rest, "anyOf": kept}


def _parameters(model: type[Query], where: str, schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    found = []
    for name, field in model.model_fields.items():
        prop = _without_null(dict(schema["properties"][name]))
        description = prop.pop("description", None) or field.description or ""
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": prop,
            "description": description,
        }
        if models.LIST in field.metadata:
            param["style"], param["explode"] = "form", True
        found.append(param)
    return found


def _reply(reply: Reply, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {"description": reply.description}
    if reply.model is not None:
        found["content"] = {JSON: {"schema": refs[(reply.model, "serialization")]}}
    elif reply.media is not None:
        found["content"] = {reply.media: {"schema": dict(reply.schema)}}
    if reply.links:
        found["links"] = {name: dict(link) for name, link in reply.links.items()}
    if reply.headers:
        found["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in reply.headers.items()
        }
    return found


def _models(operations: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (models.Problem, "serialization"): None
    }
    for op in operations:
        for model in (op.path_model, op.query, op.body):
            if model is not None:
                found[(model, "validation")] = None
        for reply in op.replies.values():
            if reply.model is not None:
                found[(reply.model, "serialization")] = None
    return list(found)


def document(operations: Iterable[Operation] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (default: ``OPERATIONS``, built once)."""
    if operations is None:
        # Deriving the schemas takes a quarter of a second on a busy machine: once per process.
        return copy.deepcopy(_default_document())
    return _document(list(operations))


@functools.cache
def _default_document() -> dict[str, Any]:
    return _document(OPERATIONS)


def _document(ops: list[Operation]) -> dict[str, Any]:
    refs, defs = models_json_schema(_models(ops), ref_template=REF)
    schemas: dict[str, Any] = _no_null_defaults(defs.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        parameters: list[dict[str, Any]] = []
        for model, where in ((op.path_model, "path"), (op.query, "query")):
            if model is not None:
                parameters += _parameters(model, where, schemas[model.__name__])
        responses: dict[str, Any] = {
            str(status): _reply(reply, refs) for status, reply in op.replies.items()
        }
        errors = {status: _problem(text) for status, text in op.errors.items()}
        for status, answer in sorted({**_common_errors(op), **errors}.items()):
            responses.setdefault(str(status), answer)
        found: dict[str, Any] = {
            "summary": op.summary,
            "operationId": _operation_id(op),
            "tags": [op.tag],
            "responses": responses,
        }
        if op.description:
            found["description"] = op.description
        if parameters:
            found["parameters"] = parameters
        if op.body is not None:
            found["requestBody"] = {
                "required": op.body_required,
                "content": {JSON: {"schema": refs[(op.body, "validation")]}},
            }
        if op.public:
            found["security"] = []
        if op.deprecated:
            found["deprecated"] = True
        paths.setdefault(op.path, {})[op.method.lower()] = found
    for op in ops:  # parameters are inlined above: their models are no components
        for model in (op.path_model, op.query):
            if model is not None:
                schemas.pop(model.__name__, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "saga-coordinator",
            "version": "1",
            "description": "Monitor and operate sagas and their compensations. Requests "
            "with a body must be application/json (415); a browser page on another origin "
            "may not change anything (403); only allowed Host names are served (421). Every "
            "error is a problem: {error: {status, code, message}}.",
        },
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation_id(op: Operation) -> str:
    words = [w.strip("{}") for w in op.path.strip("/").replace(".", "_").split("/") if w]
    return "_".join([op.method.lower(), *words]) or op.method.lower()
