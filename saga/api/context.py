"""What every handler reaches through the app: the coordinator, config, hub, metrics, limits."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from aiohttp import web

from saga.api.config import ApiConfig, Role, Token
from saga.api.events import EventHub
from saga.api.limits import FailureWindow
from saga.api.metrics import SagaMetrics
from saga.coordinator import Coordinator


@dataclass(kw_only=True)
class ApiContext:
    """The API's collaborators, one per app."""

    coordinator: Coordinator
    config: ApiConfig
    hub: EventHub
    metrics: SagaMetrics
    failures: FailureWindow
    """Recent failed authentications per client address (429 past the limit)."""
    roles: dict[tuple[str, str], Role | None] = field(default_factory=dict)
    """(method, path template) -> the role a route needs (None: public)."""

    def stalled_before_ms(self) -> int | None:
        """Sagas not updated since this time count as stuck (None: the check is off)."""
        stall = self.config.stall_after
        if stall is None:
            return None
        return self.coordinator.clock.now_ms() - int(stall.total_seconds() * 1000)


CONTEXT = web.AppKey("saga_api_context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def bearer(request: web.Request) -> Token | None:
    """The configured token the request's Authorization header carries, if any."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return None
    found = None
    for token in request.app[CONTEXT].config.tokens:
        # Compare against every token, so the time taken says nothing about which matched.
        if hmac.compare_digest(token.secret.encode(), secret.encode()):
            found = token
    return found


def identity(request: web.Request) -> Token | None:
    """Who is calling: their token, or None when auth is off (the middleware checked it)."""
    return bearer(request) if request.app[CONTEXT].config.auth else None
