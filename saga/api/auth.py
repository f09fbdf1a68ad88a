"""Bearer-token authentication: each route needs a role (viewer or operator) or none."""

from __future__ import annotations

from aiohttp import web

from saga.api.config import Role
from saga.api.context import bearer, context
from saga.api.problems import ApiError, Handler

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="saga"'}


def needed_role(request: web.Request) -> Role | None:
    """The role the matched route needs; None for public routes and unmatched paths."""
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return None
    return context(request).roles.get((route.method, resource.canonical))


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 without a valid token, 403 when the token's role is not enough."""
    ctx = context(request)
    role = needed_role(request)
    if role is None or not ctx.config.auth:
        return await handler(request)
    if not request.headers.get("Authorization", "").strip():
        raise ApiError(401, "a bearer token is required", headers=_CHALLENGE)
    token = bearer(request)
    if token is None:
        raise ApiError(401, "the bearer token is not valid", headers=_CHALLENGE)
    if not token.role.allows(role):
        raise ApiError(403, f"this needs the {role.value} role; the token is a {token.role.value}")
    return await handler(request)
