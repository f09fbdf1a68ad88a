"""Saga routes: list and filter, one saga's timeline, start, and the operator actions."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from saga.api import models, params, views
from saga.api.context import context, identity
from saga.api.problems import ApiError, bad_request
from saga.coordinator import Coordinator
from saga.engine import Action, SagaState, replay
from saga.engine.timeline import timeline
from saga.errors import InvalidStartError, SagaConflictError
from saga.events import Event
from saga.log.base import SagaRecord
from saga.names import SAGA_ID_RULE, is_saga_id


async def list_sagas(request: web.Request) -> web.Response:
    """GET /api/sagas: filtered (and searched: ``saga_id``, ``saga_id_prefix``,
    ``input.<field>``), newest first, cursor-paginated; ``by_hand`` marks sagas an operator
    resolved, skipped or forced forward."""
    ctx = context(request)
    stalled = ctx.stalled_before_ms()
    log = ctx.coordinator.log
    page = await log.find(params.saga_query(request.query, stalled))
    by_hand = await log.done_by_hand([r.saga_id for r in page.sagas])
    return web.json_response(
        {
            "sagas": [
                {**views.summary(r, stalled), "by_hand": r.saga_id in by_hand} for r in page.sagas
            ],
            "next_cursor": page.next_cursor,
        }
    )


async def load(request: web.Request, saga_id: str) -> tuple[SagaRecord, list[Event], SagaState]:
    """The saga row, its events and its replayed state, or 404 (400 for an invalid id)."""
    if not is_saga_id(saga_id):
        raise bad_request(f"saga id {saga_id[:60]!r} is invalid: it must be {SAGA_ID_RULE}")
    log = context(request).coordinator.log
    record = await log.get(saga_id)
    events = await log.events(saga_id) if record is not None else []
    if record is None or not events:
        raise ApiError(404, f"no saga {saga_id!r}")
    return record, events, replay(events)


async def get_saga(request: web.Request) -> web.Response:
    """GET /api/sagas/{saga}: status, health, input, results, the full timeline, the steps in
    progress (several where the graph branches) and the outside events received."""
    ctx = context(request)
    record, events, state = await load(request, request.match_info["saga"])
    defn = ctx.coordinator.registry.get(state.name, state.version)
    fields = ctx.config.redact
    stalled = ctx.stalled_before_ms()
    compensated = [n for n in state.plan if state.steps[n].compensated]
    body = {
        **views.summary(record, stalled),
        "status": state.status.value,
        "input": views.redact(state.input, fields),
        "health": views.health_detail(state, record.updated_ms, stalled),
        "results": views.redact(state.results(), fields),
        "compensation": None
        if not state.compensating
        else {
            "reason": state.compensation_reason,
            "plan": list(state.plan),
            "compensated": compensated,
            "remaining": [n for n in state.plan if n not in compensated],
        },
        "stuck": views.redact(state.stuck, fields),
        "active": views.redact(views.active_json(state), fields),
        "signals": views.redact(views.signals_json(state), fields),
        "timeline": views.redact(views.timeline_json(timeline(events, defn), state, defn), fields),
        "actions": views.actions(defn, state),
        "definition": None if defn is None else views.definition_json(defn),
    }
    return web.json_response(body)


SUCCESSOR = "/api/definitions/{name}/sagas"
"""Where a saga is started; POST /api/sagas/{name} is its deprecated old spelling."""


async def start_saga(request: web.Request) -> web.Response:
    """POST /api/definitions/{name}/sagas: start the named saga; 201, or 200 when the id
    existed. The deprecated POST /api/sagas/{saga} does the same and says where it moved."""
    ctx = context(request)
    coordinator = ctx.coordinator
    deprecated = "saga" in request.match_info
    name = request.match_info["saga" if deprecated else "name"]
    headers = {}
    if deprecated:
        successor = SUCCESSOR.format(name=quote(name, safe=""))
        headers = {"Deprecation": "true", "Link": f'<{successor}>; rel="successor-version"'}
    try:
        return await _start(request, coordinator, name, headers)
    except ApiError as exc:
        exc.headers = {**headers, **exc.headers}
        raise


async def _start(
    request: web.Request, coordinator: Coordinator, name: str, headers: dict[str, str]
) -> web.Response:
    if name not in coordinator.registry.names():
        raise ApiError(404, f"no saga named {name[:200]!r} is registered")
    body = await params.body(models.StartRequest, request)
    # The coordinator validates the fields too (one place for Python and HTTP callers); here
    # its errors only become statuses: a bad id is a bad URL-to-be (400), a big input 413.
    try:
        handle = await coordinator.start(
            name, body.input, saga_id=body.saga_id, version=body.version
        )
    except InvalidStartError as exc:
        if exc.limit_bytes is not None:
            raise ApiError(
                413, f"input is {exc.size_bytes} bytes, over the {exc.limit_bytes} limit"
            ) from exc
        raise ApiError(400 if exc.argument == "saga_id" else 422, exc.message) from exc
    except SagaConflictError as exc:
        raise ApiError(409, exc.message) from exc
    record = await coordinator.log.get(handle.saga_id)
    answer = {"saga_id": handle.saga_id, "created": handle.created}
    if record is not None:
        answer |= {"name": record.name, "version": record.version, "status": record.status.value}
    location = f"/api/sagas/{quote(handle.saga_id, safe='')}"
    return web.json_response(
        answer,
        status=201 if handle.created else 200,
        headers={**headers, "Location": location},
    )


async def act(request: web.Request) -> web.Response:
    """POST /api/sagas/{saga}/actions/{action}: an audited operator action, or its dry run."""
    ctx = context(request)
    saga_id = request.match_info["saga"]
    try:
        action = Action(request.match_info["action"])
    except ValueError as exc:
        allowed = ", ".join(a.value for a in Action)
        raise ApiError(
            404, f"no action {request.match_info['action']!r}; one of {allowed}"
        ) from exc
    dry_run = params.query(models.ActionQuery, request.query).dry_run
    body = await params.body(models.ACTION_BODIES[action], request)
    reason, actor = body.reason, body.actor
    result = body.result if isinstance(body, models.SkipRequest) else None
    token = identity(request)
    if token is None:
        who = actor or "anonymous"
    else:
        who = token.name if actor is None else f"{actor} (token {token.name})"
    await load(request, saga_id)  # 404 before 409: an unknown id is not a state conflict
    preview = await ctx.coordinator.act(
        saga_id, action, actor=who, reason=reason.strip(), result=result, dry_run=dry_run
    )
    return web.json_response(
        views.preview_json(saga_id, preview, dry_run=dry_run, fields=ctx.config.redact)
    )
