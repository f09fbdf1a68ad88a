"""create_app(): the aiohttp application: routes and their roles, middleware, lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from saga.api import bulk, coordinators, inbox, ops, sagas, services, signals, stats
from saga.api.auth import authenticate
from saga.api.config import ApiConfig, Role
from saga.api.context import CONTEXT, ApiContext, context
from saga.api.events import EventHub
from saga.api.guard import guard
from saga.api.limits import FailureWindow
from saga.api.metrics import OwnershipCounts, SagaMetrics
from saga.api.openapi import document
from saga.api.problems import ApiError, problems
from saga.coordinator import Coordinator

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATIC = resources.files("saga.api") / "static"
_ASSETS = {
    "app.js": "text/javascript",
    "saga.js": "text/javascript",
    "overview.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


async def _dashboard(request: web.Request) -> web.Response:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html", headers=_PAGE_HEADERS)


async def _asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _ASSETS:
        raise ApiError(404, f"no asset {name!r}")
    body = (STATIC / name).read_bytes()
    return web.Response(body=body, headers={"Content-Type": _ASSETS[name], **_PAGE_HEADERS})


_PAGE_HEADERS = {
    # Everything is served from here: no CDN, no inline script, works offline.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

ROUTES: list[tuple[str, str, Handler, Role | None]] = [
    ("GET", "/api/sagas", sagas.list_sagas, Role.VIEWER),
    ("GET", "/api/sagas/{saga}", sagas.get_saga, Role.VIEWER),
    ("POST", "/api/sagas/{saga}", sagas.start_saga, Role.OPERATOR),  # deprecated: the next
    ("POST", "/api/definitions/{name}/sagas", sagas.start_saga, Role.OPERATOR),
    ("POST", "/api/sagas/{saga}/actions/{action}", sagas.act, Role.OPERATOR),
    ("POST", "/api/sagas/{saga}/events/{event}", signals.send_event, Role.SIGNAL),
    ("GET", "/api/compensations", ops.compensations, Role.VIEWER),
    ("GET", "/api/stats", stats.stats, Role.VIEWER),
    ("GET", "/api/inbox", inbox.inbox, Role.VIEWER),
    ("POST", "/api/bulk/{action}", bulk.bulk, Role.OPERATOR),
    ("GET", "/api/definitions", ops.definitions, Role.VIEWER),
    ("GET", "/api/services", services.list_services, Role.VIEWER),
    ("GET", "/api/coordinators", coordinators.list_coordinators, Role.VIEWER),
    ("GET", "/api/me", ops.me, Role.VIEWER),
    ("GET", "/api/events", ops.events, Role.VIEWER),
    ("GET", "/metrics", ops.metrics, Role.VIEWER),
    ("GET", "/healthz", ops.healthz, None),
    ("GET", "/readyz", ops.readyz, None),
    ("GET", "/openapi.json", _openapi, None),
    ("GET", "/", _dashboard, None),
    ("GET", "/static/{name}", _asset, None),
]
"""Every route: method, path, handler, and the role it needs (None: public)."""


async def _seed_metrics(app: web.Application) -> None:
    ctx = app[CONTEXT]
    try:
        ctx.metrics.seed(await ctx.coordinator.log.unfinished())
    except Exception:  # metrics must never stop the API from starting
        log.exception("could not count unfinished sagas for the metrics")


async def _close_streams(app: web.Application) -> None:
    app[CONTEXT].hub.close()


def ownership_counts(coordinator: Coordinator) -> OwnershipCounts:
    """The coordinator's ownership counters, for the metrics."""
    return OwnershipCounts(
        owned=coordinator.owned_count,
        fenced_writes=coordinator.fenced_writes,
        claimed=coordinator.claimed,
        released=coordinator.released,
        leases_lost=coordinator.leases_lost,
    )


def create_app(coordinator: Coordinator, config: ApiConfig | None = None) -> web.Application:
    """The HTTP API, metrics and dashboard for an open ``coordinator``.

    Listens to the coordinator's changes (for the event stream and the metrics) from now on.
    """
    config = config or ApiConfig()
    hub = EventHub()
    holder: list[ApiContext] = []
    metrics = SagaMetrics(
        lambda: holder[0].stalled_before_ms(),
        coordinator.service_load,
        lambda: ownership_counts(coordinator),
    )
    failures = FailureWindow(config.auth_limit, coordinator.clock)
    ctx = ApiContext(
        coordinator=coordinator, config=config, hub=hub, metrics=metrics, failures=failures
    )
    holder.append(ctx)
    # problems outermost, so every refusal below is a JSON problem; the guard before
    # authentication, so a cross-site page learns nothing about tokens.
    app = web.Application(
        middlewares=[problems, guard, authenticate], client_max_size=config.max_body_bytes
    )
    app[CONTEXT] = ctx
    for method, path, handler, role in ROUTES:
        route = app.router.add_route(method, path, handler)
        ctx.roles[(method, route.resource.canonical if route.resource else path)] = role
    coordinator.add_listener(hub.publish)
    coordinator.add_listener(metrics.observe)
    app.on_startup.append(_seed_metrics)
    app.on_shutdown.append(_close_streams)
    return app


__all__ = ["ROUTES", "context", "create_app"]
