"""Bearer-token authentication: each route needs a role (viewer or operator) or none.

Every refusal is logged (client address, method, path and why; never the token), and a client
address that keeps presenting wrong tokens gets 429 with Retry-After until its failures age out.
"""

from __future__ import annotations

from aiohttp import web

from saga.api.config import Role
from saga.api.context import bearer, context
from saga.api.guard import refuse
from saga.api.problems import Handler

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
    """429 after too many wrong tokens, 401 without a valid token, 403 for too low a role.

    Only a token that was presented and is wrong counts as a failure: a request with no token
    at all is a client that has not logged in yet, not someone guessing.
    """
    ctx = context(request)
    role = needed_role(request)
    if role is None or not ctx.config.auth:
        return await handler(request)
    client = request.remote or "unknown"
    wait_s = ctx.failures.retry_after_s(client)
    if wait_s is not None:
        raise refuse(
            request,
            429,
            f"too many failed authentications from this address; try again in {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        )
    if not request.headers.get("Authorization", "").strip():
        raise refuse(request, 401, "a bearer token is required", headers=_CHALLENGE)
    token = bearer(request)
    if token is None:
        count = ctx.failures.fail(client)
        window_s = round(ctx.config.auth_limit.window.total_seconds())
        raise refuse(
            request,
            401,
            "the bearer token is not valid",
            headers=_CHALLENGE,
            note=f"failure {count} of {ctx.config.auth_limit.failures} allowed in {window_s} s",
        )
    if not token.role.allows(role):
        raise refuse(
            request,
            403,
            f"this needs the {role.value} role; the token is a {token.role.value}",
            note=f"token {token.name!r}",
        )
    return await handler(request)
