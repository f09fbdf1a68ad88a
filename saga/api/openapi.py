"""The OpenAPI 3 description of the API, served at /openapi.json; a test checks it matches."""

from __future__ import annotations

from typing import Any

from saga.api.openapi_ops import ops_paths, search_parameters
from saga.definition import StepKind
from saga.engine import Action
from saga.events import Health, SagaStatus
from saga.protocol import Direction

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _reply(description: str, schema: str | None = None, media: str = JSON) -> dict[str, Any]:
    found: dict[str, Any] = {"description": description}
    if schema is not None:
        found["content"] = {media: {"schema": _ref(schema)}}
    return found


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _reply("An error, with the reason.", "Error") for s in statuses}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = schema or {"type": "string", "minLength": 1}
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}  # fmt: skip


def _enum_list(kind: Any) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "enum": [m.value for m in kind]}}


TIME = {"type": "string", "description": "epoch milliseconds or ISO 8601"}
NULLABLE_STR = {"type": "string", "nullable": True}
NULLABLE_INT = {"type": "integer", "nullable": True}
OBJECT = {"type": "object", "additionalProperties": True}
PUBLIC: list[dict[str, list[str]]] = []
OWNER = {
    "owner": {
        "type": "string",
        "nullable": True,
        "description": "The coordinator id that owns the saga (drives it, or drove it last);"
        " null: none (handed back, or never claimed).",
    },
    "epoch": {
        "type": "integer",
        "description": "How many times the saga was claimed; its owner's writes carry it.",
    },
}
PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (50)."),
    _query("cursor", {"type": "string"}, "next_cursor from the previous page."),
]

MOMENT = {**NULLABLE_INT, "description": "epoch milliseconds"}
GRAPH_SCHEMAS: dict[str, Any] = {
    "Definition": {
        "type": "object",
        "required": ["name", "version", "steps"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "sequence": {
                "type": "boolean",
                "description": "No branches: each step follows the one before.",
            },
            "events": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Outside events its waits take.",
            },
            "steps": {"type": "array", "items": _ref("DefinitionStep")},
        },
    },
    "DefinitionStep": {
        "type": "object",
        "required": ["name", "kind", "after", "depth"],
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": [*(k.value for k in StepKind), "wait"]},
            "after": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Steps that must succeed first (resolved).",
            },
            "depth": {
                "type": "integer",
                "description": "Longest chain of steps before it: its layer when drawn.",
            },
            "service": {**NULLABLE_STR, "description": "null for a wait."},
            "command": NULLABLE_STR,
            "compensation": NULLABLE_STR,
            "event": {**NULLABLE_STR, "description": "A wait: the outside event it waits for."},
            "timeout_ms": {
                "type": "integer",
                "description": "A step: its reply timeout; a wait: how long it waits.",
            },
            "long_running": {
                "type": "boolean",
                "description": "The participant may answer accepted and complete later.",
            },
            "completion_timeout_ms": NULLABLE_INT,
            "poll_every_ms": NULLABLE_INT,
        },
    },
    "TimelineEntry": {
        "type": "object",
        "required": ["step", "direction", "state", "attempts", "after", "lane"],
        "properties": {
            "step": {"type": "string"},
            "direction": {"type": "string", "enum": [d.value for d in Direction]},
            "state": {
                "type": "string",
                "enum": [
                    "pending",
                    "in_flight",
                    "accepted",
                    "awaiting",
                    "succeeded",
                    "rejected",
                    "failed",
                    "waiting",
                    "stuck",
                    "done_by_hand",
                ],
            },
            "kind": {**NULLABLE_STR, "description": "The step kind, or wait."},
            "service": NULLABLE_STR,
            "command": NULLABLE_STR,
            "event": {**NULLABLE_STR, "description": "A wait: the event it waits for."},
            "signal": {
                **NULLABLE_STR,
                "description": "A wait that succeeded: the event id it took.",
            },
            "after": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Entries of the same direction it came after.",
            },
            "lane": {
                **NULLABLE_INT,
                "description": "Its row: entries in flight together have different lanes;"
                " null while pending.",
            },
            "started_ms": MOMENT,
            "ended_ms": {**MOMENT, "description": "null while in progress"},
            "attempts": {
                "type": "array",
                "items": OBJECT,
                "description": "attempt, sent_ms, outcome, finished_ms, error, retry_at_ms,"
                " accepted_ms, deadline_ms, heartbeats",
            },
            "by_hand": {"type": "object", "nullable": True, "additionalProperties": True},
            "stuck": {"type": "boolean"},
        },
    },
    "ActiveStep": {
        "type": "object",
        "required": ["step", "direction", "phase", "attempt"],
        "properties": {
            "step": {"type": "string"},
            "direction": {"type": "string", "enum": [d.value for d in Direction]},
            "phase": {
                "type": "string",
                "description": "in_flight, accepted, awaiting, failed, waiting (a retry), ...",
            },
            "attempt": {"type": "integer"},
            "deadline_ms": {
                **MOMENT,
                "description": "Accepted: when its outcome counts as unknown.",
            },
            "heartbeats": {"type": "integer"},
            "waiting_for": {**NULLABLE_STR, "description": "Awaiting: the outside event."},
            "timeout_at_ms": {
                **MOMENT,
                "description": "Awaiting: when the wait gives up; in flight: the reply timeout.",
            },
            "retry_at_ms": MOMENT,
        },
    },
    "Signal": {
        "type": "object",
        "required": ["event", "id", "sender", "at_ms", "step"],
        "properties": {
            "event": {"type": "string"},
            "id": {"type": "string"},
            "sender": {"type": "string"},
            "at_ms": {"type": "integer"},
            "step": {
                **NULLABLE_STR,
                "description": "The wait step that took it; null: kept for a step not reached yet.",
            },
            "payload": OBJECT,
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "code", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            }
        },
    },
    "SagaSummary": {
        "type": "object",
        "required": ["saga_id", "name", "version", "status", "health", "created_ms"],
        "properties": {
            "saga_id": {"type": "string"},
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "status": {"type": "string", "enum": [s.value for s in SagaStatus]},
            "health": {"type": "string", "enum": [h.value for h in Health], "nullable": True},
            "current_step": NULLABLE_STR,
            "attempt": {"type": "integer", "nullable": True},
            "waiting_for": {
                **NULLABLE_STR,
                "description": "The outside event the saga waits for now (a Wait step).",
            },
            "due_ms": {
                **NULLABLE_INT,
                "description": "The earliest deadline of its accepted long-running steps and"
                " waits (epoch ms).",
            },
            "created_ms": {"type": "integer"},
            "updated_ms": {"type": "integer"},
            **OWNER,
            "by_hand": {
                "type": "boolean",
                "description": "An operator resolved, skipped or forced a step.",
            },
        },
    },
    "SagaList": {
        "type": "object",
        "required": ["sagas", "next_cursor"],
        "properties": {
            "sagas": {"type": "array", "items": _ref("SagaSummary")},
            "next_cursor": NULLABLE_STR,
        },
    },
    "SagaDetail": {
        "type": "object",
        "required": ["saga_id", "name", "version", "status", "input", "timeline", "actions"],
        "properties": {
            "saga_id": {"type": "string"},
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "status": {"type": "string"},
            "input": OBJECT,
            "health": {"type": "object", "nullable": True, "additionalProperties": True},
            "results": OBJECT,
            "compensation": {"type": "object", "nullable": True, "additionalProperties": True},
            "stuck": {"type": "object", "nullable": True, "additionalProperties": True},
            "timeline": {
                "type": "object",
                "required": ["steps", "compensations", "operator_actions", "marks", "signals"],
                "properties": {
                    "steps": {"type": "array", "items": _ref("TimelineEntry")},
                    "compensations": {"type": "array", "items": _ref("TimelineEntry")},
                    "operator_actions": {"type": "array", "items": OBJECT},
                    "marks": {"type": "array", "items": OBJECT},
                    "signals": {"type": "array", "items": _ref("Signal")},
                },
            },
            "active": {
                "type": "array",
                "items": _ref("ActiveStep"),
                "description": "Every step or compensation in progress, in the order started:"
                " several are branches in flight together.",
            },
            "signals": {
                "type": "array",
                "items": _ref("Signal"),
                "description": "Outside events received, payloads redacted like the input.",
            },
            "actions": OBJECT,
            "definition": {"allOf": [_ref("Definition")], "nullable": True},
            **OWNER,
        },
    },
    "StartRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "input": OBJECT,
            "saga_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "version": {"type": "integer"},
        },
    },
    "Started": {
        "type": "object",
        "required": ["saga_id", "created"],
        "properties": {"saga_id": {"type": "string"}, "created": {"type": "boolean"}},
    },
    "EventRequest": {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {
            "id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "The sender's id for this event (the saga id grammar): a repeat"
                " of an id is the same event, answered 200 with nothing changed.",
            },
            "payload": {
                **OBJECT,
                "description": "The event's data ({} when absent): the wait step's result.",
            },
        },
    },
    "EventTaken": {
        "type": "object",
        "required": ["saga_id", "event", "id", "recorded", "step", "status"],
        "properties": {
            "saga_id": {"type": "string"},
            "event": {"type": "string"},
            "id": {"type": "string"},
            "recorded": {
                "type": "boolean",
                "description": "false: a repeat of an id the saga had received; nothing changed.",
            },
            "step": {
                **NULLABLE_STR,
                "description": "The wait step the event completed now; null: kept for a wait"
                " step the saga has not reached yet (or a repeat).",
            },
            "status": {"type": "string", "enum": [s.value for s in SagaStatus]},
        },
    },
    "ActionRequest": {
        "type": "object",
        "required": ["reason"],
        "additionalProperties": False,
        "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 2000},
            "actor": {"type": "string", "minLength": 1, "maxLength": 100},
            "result": {**OBJECT, "description": "skip only: the result to record."},
        },
    },
    "Preview": {
        "type": "object",
        "required": ["saga_id", "action", "dry_run", "status", "compensations", "commands"],
        "properties": {
            "saga_id": {"type": "string"},
            "action": {"type": "string", "enum": [a.value for a in Action]},
            "dry_run": {"type": "boolean"},
            "status": {"type": "string"},
            "health": NULLABLE_STR,
            "compensations": {"type": "array", "items": {"type": "string"}},
            "commands": {"type": "array", "items": OBJECT},
            "events": {"type": "array", "items": OBJECT},
        },
    },
    "Compensations": {
        "type": "object",
        "required": ["compensations", "next_cursor"],
        "properties": {
            "compensations": {"type": "array", "items": OBJECT},
            "next_cursor": NULLABLE_STR,
        },
    },
    "Definitions": {
        "type": "object",
        "properties": {"sagas": {"type": "array", "items": _ref("Definition")}},
    },
    **GRAPH_SCHEMAS,
    "Services": {
        "type": "object",
        "required": ["services"],
        "properties": {
            "services": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["service", "queued", "in_flight", "limit"],
                    "properties": {
                        "service": {"type": "string"},
                        "queued": {
                            "type": "integer",
                            "description": "Commands waiting for a slot, not sent yet.",
                        },
                        "in_flight": {
                            "type": "integer",
                            "description": "Commands sent and not answered yet.",
                        },
                        "limit": {
                            "type": "integer",
                            "nullable": True,
                            "description": "The current in-flight limit; null: unbounded.",
                        },
                    },
                },
            }
        },
    },
    "Coordinators": {
        "type": "object",
        "required": ["this", "lease_ms", "now_ms", "coordinators"],
        "properties": {
            "this": {"type": "string", "description": "The id of the coordinator answering."},
            "lease_ms": {"type": "integer", "description": "Its lease length."},
            "now_ms": {"type": "integer", "description": "The database's clock."},
            "coordinators": {"type": "array", "items": _ref("Coordinator")},
        },
    },
    "Coordinator": {
        "type": "object",
        "required": [
            "coordinator_id",
            "name",
            "api_url",
            "started_ms",
            "renewed_ms",
            "lease_until_ms",
            "stopped_ms",
            "state",
            "sagas",
            "in_flight",
            "fenced_writes",
            "self",
        ],
        "properties": {
            "coordinator_id": {
                "type": "string",
                "description": "Unique per start: what a saga's owner names.",
            },
            "name": {"type": "string", "description": "The name it was started with."},
            "api_url": {**NULLABLE_STR, "description": "Its HTTP API, as it advertised it."},
            "started_ms": {"type": "integer"},
            "renewed_ms": {"type": "integer"},
            "lease_until_ms": {"type": "integer"},
            "stopped_ms": {**NULLABLE_INT, "description": "When it closed cleanly."},
            "state": {
                "type": "string",
                "enum": ["live", "stopped", "expired"],
                "description": "live: its lease lasts; stopped: closed cleanly; expired: its"
                " lease ran out (it died, was paused, or restarted).",
            },
            "sagas": {"type": "integer", "description": "Sagas it owned at its last renewal."},
            "in_flight": {
                "type": "integer",
                "description": "Commands it had in flight at its last renewal.",
            },
            "fenced_writes": {
                "type": "integer",
                "description": "Its writes refused because another coordinator had taken"
                " the saga over (at its last renewal).",
            },
            "self": {"type": "boolean", "description": "This is the coordinator answering."},
        },
    },
    "Me": {
        "type": "object",
        "required": ["name", "role", "auth"],
        "properties": {
            "name": {"type": "string"},
            "role": {"type": "string"},
            "auth": {"type": "boolean"},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
}


def _op(summary: str, responses: dict[str, Any], *, public: bool = False, **extra: Any) -> Any:
    # Every route: 421 for a Host name the server does not answer to (DNS rebinding). Every
    # route with a token: 401, 403 (role), 429 (too many wrong tokens from this address).
    found = {"summary": summary, "responses": {**responses, **_errors(421)}, **extra}
    if public:
        found["security"] = PUBLIC
    else:
        found["responses"] = {
            **found["responses"],
            **_errors(401, 403),
            "429": {
                **_reply("Too many failed authentications from this address.", "Error"),
                "headers": {
                    "Retry-After": {
                        "description": "Seconds until the oldest failure expires.",
                        "schema": {"type": "integer"},
                    }
                },
            },
        }
    return found


WRITE_ERRORS = _errors(403, 415)
"""A state-changing request: 403 when a browser says it comes from another origin
(Origin, Sec-Fetch-Site), 415 when its body is not application/json."""


SAGA = _path("saga", "A saga id (GET, actions), or a saga definition name (POST: start).")


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document."""
    list_params = [
        _query("status", _enum_list(SagaStatus), "Statuses (repeat or comma-separate)."),
        _query("name", {"type": "string"}, "Saga definition name."),
        _query("health", _enum_list(Health), "Health (stuck includes stalled sagas)."),
        _query("step", {"type": "string"}, "Current step."),
        _query("waiting_for", {"type": "string"}, "The outside event the saga waits for."),
        _query("created_after", TIME, "Created at or after."),
        _query("created_before", TIME, "Created before."),
        _query("updated_after", TIME, "Updated at or after."),
        _query("updated_before", TIME, "Updated before."),
        *search_parameters(),
        *PAGING,
    ]
    for param in list_params:
        if param["schema"].get("type") == "array":
            param["style"], param["explode"] = "form", True
    paths: dict[str, Any] = {
        "/api/sagas": {
            "get": _op(
                "List sagas, newest first.",
                {"200": _reply("A page of sagas.", "SagaList"), **_errors(400)},
                parameters=list_params,
            )
        },
        "/api/sagas/{saga}": {
            "get": _op(
                "One saga: status, health, input, results and timeline.",
                {"200": _reply("The saga.", "SagaDetail"), **_errors(404)},
                parameters=[SAGA],
            ),
            "post": _op(
                "Start the named saga (idempotent with a saga_id). Needs the operator role.",
                {
                    "201": _reply("Started.", "Started"),
                    "200": _reply("A saga with that id existed; nothing started.", "Started"),
                    **_errors(400, 404, 413, 422),
                    **WRITE_ERRORS,
                },
                parameters=[SAGA],
                requestBody={"content": {JSON: {"schema": _ref("StartRequest")}}},
            ),
        },
        "/api/sagas/{saga}/actions/{action}": {
            "post": _op(
                "An operator action, audited in the saga's log; ?dry_run=1 only previews it.",
                {
                    "200": _reply("What it did (or would do).", "Preview"),
                    **_errors(400, 404, 409, 413, 422),
                    **WRITE_ERRORS,
                },
                parameters=[
                    SAGA,
                    _path(
                        "action",
                        "The action.",
                        {"type": "string", "enum": [a.value for a in Action]},
                    ),
                    _query(
                        "dry_run",
                        {"type": "string", "enum": ["0", "1", "true", "false"]},
                        "Answer what would happen, change nothing.",
                    ),
                ],
                requestBody={
                    "required": True,
                    "content": {JSON: {"schema": _ref("ActionRequest")}},
                },
            )
        },
        "/api/sagas/{saga}/events/{event}": {
            "post": _op(
                "Deliver an outside event to the saga's wait step (idempotent by the event's"
                " id); an event that comes before the saga reaches its step is kept for it."
                " Needs the signal or the operator role.",
                {
                    "201": _reply("Recorded: it completed a wait step, or is kept.", "EventTaken"),
                    "200": _reply("A repeat of an event id; nothing changed.", "EventTaken"),
                    "400": _reply(
                        "A bad body, event id or event name, or a payload that is"
                        " not a JSON object.",
                        "Error",
                    ),
                    "404": _reply("No saga with that id.", "Error"),
                    "409": _reply(
                        "The saga is finished, or the step that waits for this event"
                        " took another one.",
                        "Error",
                    ),
                    "413": _reply("The body or the payload is too large.", "Error"),
                    "422": _reply("No step of the saga waits for an event of that name.", "Error"),
                    **_errors(503),
                    **WRITE_ERRORS,
                },
                parameters=[
                    _path("saga", "A saga id."),
                    _path("event", "The event's name, as the saga's Wait step names it."),
                ],
                requestBody={
                    "required": True,
                    "content": {JSON: {"schema": _ref("EventRequest")}},
                },
            )
        },
        "/api/compensations": {
            "get": _op(
                "Sagas compensating, failing to compensate, or stuck.",
                {"200": _reply("A page of them.", "Compensations"), **_errors(400)},
                parameters=[_query("name", {"type": "string"}, "Saga name."), *PAGING],
            )
        },
        "/api/definitions": {
            "get": _op("Registered saga definitions.", {"200": _reply("Them.", "Definitions")})
        },
        "/api/services": {
            "get": _op(
                "Flow control per participant service: queued, in flight, current limit.",
                {"200": _reply("Them.", "Services")},
            )
        },
        "/api/coordinators": {
            "get": _op(
                "The coordinators sharing the saga log (live, and ended in the last 10"
                " minutes): leases and load.",
                {"200": _reply("Them.", "Coordinators")},
            )
        },
        "/api/me": {"get": _op("The caller's identity and role.", {"200": _reply("Me.", "Me")})},
        "/api/events": {
            "get": _op(
                "Server-sent events: one `saga` event per recorded change.",
                {
                    "200": {
                        "description": "An event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                parameters=[_query("saga_id", {"type": "string"}, "Only this saga's changes.")],
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics.",
                {
                    "200": {
                        "description": "Text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/healthz": {"get": _op("Liveness.", {"200": _reply("Up.", "Status")}, public=True)},
        "/readyz": {
            "get": _op(
                "Readiness: the saga log answers and accepted the last write, and the transport"
                " is connected.",
                {"200": _reply("Ready.", "Status"), "503": _reply("Not ready.", "Status")},
                public=True,
            )
        },
        "/openapi.json": {
            "get": _op(
                "This document.",
                {"200": {"description": "OpenAPI 3.", "content": {JSON: {"schema": OBJECT}}}},
                public=True,
            )
        },
        "/": {
            "get": _op(
                "The dashboard.",
                {
                    "200": {
                        "description": "HTML.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                public=True,
            )
        },
        "/static/{name}": {
            "get": _op(
                "Dashboard assets.",
                {"200": {"description": "An asset."}, **_errors(404)},
                public=True,
                parameters=[_path("name", "File name.")],
            )
        },
    }
    paths |= ops_paths()
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "saga-coordinator",
            "version": "1",
            "description": "Monitor and operate sagas and their compensations. Requests "
            "with a body must be application/json (415); a browser page on another origin "
            "may not change anything (403); only allowed Host names are served (421).",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
