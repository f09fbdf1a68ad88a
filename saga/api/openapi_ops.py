"""The OpenAPI entries of the operator overview routes (stats, inbox, bulk actions) and the
list's search parameters, derived from the pydantic models in ``ops_models``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from saga.api.ops_models import (
    MAX_BULK,
    BulkReply,
    BulkRequest,
    InboxQuery,
    InboxReply,
    StatsQuery,
    StatsReply,
)

JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema as OpenAPI 3.0 wants it: references inlined, ``null`` in a
    union as ``nullable``, ``const`` as a one-value ``enum``."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return convert(defs[node["$ref"].rsplit("/", 1)[-1]])
        found = {k: convert(v) for k, v in node.items() if k not in ("title", "const")}
        if "const" in node:
            found["enum"] = [node["const"]]
        variants = found.get("anyOf")
        if isinstance(variants, list) and {"type": "null"} in variants:
            rest = [v for v in variants if v != {"type": "null"}]
            del found["anyOf"]
            found.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
            found["nullable"] = True
        if "default" in found and found["default"] is None:
            del found["default"]
        return found

    converted: dict[str, Any] = convert(schema)
    return converted


def _parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = openapi_schema(model)
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {k: v for k, v in prop.items() if k != "description"},
            "description": prop.get("description", ""),
        }
        for name, prop in schema["properties"].items()
    ]


def _errors(*statuses: int) -> dict[str, Any]:
    content = {JSON: {"schema": _ERROR}}
    return {
        str(s): {"description": "An error, with the reason.", "content": content} for s in statuses
    }


def _auth_errors() -> dict[str, Any]:
    return _errors(401, 403, 421, 429)


def _ok(description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": openapi_schema(model)}}}


def search_parameters() -> list[dict[str, Any]]:
    """The search parameters of GET /api/sagas (``input.<field>`` is described in words:
    OpenAPI 3.0 cannot name a family of parameters)."""
    text = {"type": "string", "minLength": 1, "maxLength": 200}
    return [
        {"name": "saga_id", "in": "query", "required": False, "schema": text,
         "description": "The saga with exactly this id."},
        {"name": "saga_id_prefix", "in": "query", "required": False, "schema": text,
         "description": "Sagas whose id starts with this. Also input.<field>=<value>: sagas"
         " whose input has that top-level field as that string or integer (400 for a field"
         " name that is not letters, digits and '_')."},
    ]  # fmt: skip


def ops_paths() -> dict[str, Any]:
    """The path items of GET /api/stats, GET /api/inbox and POST /api/bulk/{action}."""
    action = {
        "name": "action",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["retry", "resolve", "cancel"]},
        "description": "The operator action to take on each saga.",
    }
    return {
        "/api/stats": {
            "get": {
                "summary": "Counts by status and health, and per-minute figures over a window.",
                "parameters": _parameters(StatsQuery),
                "responses": {"200": _ok("The figures.", StatsReply), **_errors(400),
                              **_auth_errors()},
            }
        },
        "/api/inbox": {
            "get": {
                "summary": "What needs a person: stuck, needs-attention, failing compensations.",
                "parameters": _parameters(InboxQuery),
                "responses": {"200": _ok("The items, oldest trouble first.", InboxReply),
                              **_errors(400), **_auth_errors()},
            }
        },
        "/api/bulk/{action}": {
            "post": {
                "summary": f"Retry, resolve or cancel up to {MAX_BULK} sagas with one reason;"
                " one audit entry per saga; dry_run previews each.",
                "parameters": [action],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": openapi_schema(BulkRequest)}},
                },
                "responses": {"200": _ok("Each saga's outcome.", BulkReply),
                              **_errors(400, 404, 413, 415, 422), **_auth_errors()},
            }
        },
    }  # fmt: skip
