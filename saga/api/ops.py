"""Operational routes: compensations needing eyes, health checks, metrics, the event stream."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from saga.api import models, params, views
from saga.api.context import context, identity
from saga.api.events import stream
from saga.api.problems import bad_request
from saga.engine import replay
from saga.errors import QueryError
from saga.events import SagaStatus
from saga.log.base import SagaQuery

READY_TIMEOUT_S = 2.0


async def compensations(request: web.Request) -> web.Response:
    """GET /api/compensations: compensating, failing and stuck sagas, with the failing step."""
    ctx = context(request)
    log = ctx.coordinator.log
    stalled = ctx.stalled_before_ms()
    found = params.query(models.CompensationsQuery, request.query)
    try:
        query = SagaQuery(
            statuses=[SagaStatus.COMPENSATING, SagaStatus.STUCK],
            name=found.name,
            limit=found.limit,
            cursor=found.cursor,
        )
    except QueryError as exc:
        raise bad_request(exc.message) from exc
    page = await log.find(query)
    by_hand = await log.done_by_hand([r.saga_id for r in page.sagas])
    items: list[dict[str, Any]] = []
    for record in page.sagas:
        state = replay(await log.events(record.saga_id))
        if state.is_final:
            continue  # finished since the page was read
        detail = views.health_detail(state, record.updated_ms, stalled) or {}
        if detail.get("state") == "stuck":
            category = "stuck"
        elif state.failing:
            category = "failing"
        else:
            category = "compensating"
        compensated = [n for n in state.plan if state.steps[n].compensated]
        items.append(
            {
                **views.summary(record, stalled),
                "status": state.status.value,
                "category": category,
                "step": detail.get("step"),
                "direction": detail.get("direction"),
                "attempts": detail.get("attempt"),
                "last_error": views.redact(detail.get("last_error"), ctx.config.redact),
                "reason": detail.get("reason"),
                "compensation_reason": state.compensation_reason,
                "compensated": compensated,
                "remaining": [n for n in state.plan if n not in compensated],
                "since_ms": record.updated_ms,
                "by_hand": record.saga_id in by_hand,
            }
        )
    return web.json_response({"compensations": items, "next_cursor": page.next_cursor})


async def definitions(request: web.Request) -> web.Response:
    """GET /api/definitions: the saga definitions this coordinator runs."""
    registry = context(request).coordinator.registry
    found = sorted(registry, key=lambda s: (s.name, s.version))
    return web.json_response({"sagas": [views.definition_json(s) for s in found]})


async def me(request: web.Request) -> web.Response:
    """GET /api/me: who the token says the caller is, and what it may do."""
    token = identity(request)
    if not context(request).config.auth:
        return web.json_response({"name": "anonymous", "role": "operator", "auth": False})
    assert token is not None
    return web.json_response({"name": token.name, "role": token.role.value, "auth": True})


async def events(request: web.Request) -> web.StreamResponse:
    """GET /api/events: server-sent events, one per recorded saga change."""
    ctx = context(request)
    saga_id = params.query(models.EventsQuery, request.query).saga_id
    heartbeat = ctx.config.heartbeat.total_seconds()
    return await stream(request, ctx.hub, heartbeat, saga_id)


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the process is up and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: the saga log answers a cheap query and accepted the last write, and the
    transport is connected."""
    coordinator = context(request).coordinator
    checks: dict[str, dict[str, Any]] = {}
    try:
        await asyncio.wait_for(coordinator.log.find(SagaQuery(limit=1)), READY_TIMEOUT_S)
        checks["database"] = {"ok": True}
    except Exception as exc:  # any failure means "not ready", with the reason
        checks["database"] = {"ok": False, "error": str(exc) or type(exc).__name__}
    # A log that answers reads may still refuse writes (a full disk): then nothing can move.
    # Every unfinished saga's write is retried each second, so recovery shows up here too.
    writes = coordinator.log_writes
    if writes.ok:
        checks["writes"] = {"ok": True}
    else:
        checks["writes"] = {
            "ok": False,
            "error": writes.error,
            "failures": writes.failures,
            "failing_since_ms": None
            if writes.failing_since is None
            else int(writes.failing_since * 1000),
        }
    # The Transport port has no health method; NatsTransport says whether it is connected.
    connected = getattr(coordinator.transport, "is_connected", None)
    if connected is None:
        checks["transport"] = {"ok": True, "detail": "no connection to check"}
    else:
        checks["transport"] = {"ok": bool(connected), "kind": "nats"}
    ready = all(check["ok"] for check in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    ctx = context(request)
    await ctx.metrics.count_coordinators(ctx.coordinator.log.ownership)
    body = ctx.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
