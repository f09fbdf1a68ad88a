"""Browser safety: serve only allowed Host names, refuse cross-site writes, require JSON bodies.

Without tokens (``saga dev`` on loopback) the API trusts whoever reaches it, and a browser lets
any page reach it: a cross-origin ``fetch`` with ``Content-Type: text/plain`` or ``mode:
"no-cors"``, or a plain HTML form, is sent without a CORS preflight, and a DNS-rebound name
makes another site's page same-origin with the API. The guard closes each door:

- 421 for a ``Host`` not allowed (loopback names, the listening address, ``--allowed-host``),
- 403 for a state-changing request whose ``Origin`` is another origin, or whose
  ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site`` (another port is the same site),
- 415 for a state-changing request whose body (or declared type) is not ``application/json``.

Clients that are not browsers (the CLI, curl, scripts) send no ``Origin`` and are unaffected.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web
from yarl import URL

from saga.api.config import ANY_HOST, ApiConfig
from saga.api.context import context
from saga.api.problems import ApiError, Handler

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing here, so a cross-site one can do no harm."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Host names always served: this machine only."""
JSON = "application/json"


def host_allowed(host: str, config: ApiConfig) -> bool:
    """Whether to serve a request whose ``Host`` names ``host`` (lower case, no port)."""
    if host in LOOPBACK_HOSTS or host in config.allowed_hosts or ANY_HOST in config.allowed_hosts:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or config.allow_ip_hosts


def _split_host(authority: str, scheme: str = "http") -> tuple[str, int] | None:
    """(host, port) of a ``Host`` header value; the port defaults by ``scheme``."""
    try:
        url = URL(f"{scheme}://{authority.strip()}")
    except ValueError:
        return None
    if url.host is None or url.port is None or url.path not in ("", "/") or url.user:
        return None
    return url.host.lower().strip("[]"), url.port


def same_origin(origin: str, host_header: str) -> bool:
    """Whether a browser's ``Origin`` names the server the request was sent to (its Host).

    Compares host and port, not the scheme: behind a TLS proxy the server sees http while the
    page is https; the default port follows the page's scheme, as the browser's Host does.
    """
    try:
        url = URL(origin.strip())
    except ValueError:
        return False  # "null" (sandboxed pages, file:) parses but is not absolute
    if not url.absolute or url.scheme not in ("http", "https") or url.host is None:
        return False
    return _split_host(host_header, url.scheme) == (url.host.lower().strip("[]"), url.port)


def refuse(
    request: web.Request,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    note: str = "",
) -> ApiError:
    """Log a refused request and return its answer. The line says who (client address), what
    (method, path) and why (``message``, then ``note`` for the log only); never a token."""
    why = f"{message} ({note})" if note else message
    log.warning(
        "refused %s %r from %s: %d %s", request.method, request.path, request.remote, status, why
    )
    return ApiError(status, message, headers=headers)


def check_host(request: web.Request) -> None:
    """421 unless the request's ``Host`` is one this server answers to."""
    header = request.headers.get("Host")
    if header is None:
        return  # not a browser: every browser request names its host
    parsed = _split_host(header)
    if parsed is not None and host_allowed(parsed[0], context(request).config):
        return
    shown = header[:100]
    raise refuse(
        request,
        421,
        f"this server does not answer to the host name {shown!r}; serve it with "
        "--allowed-host NAME (SAGA_ALLOWED_HOST) if it is really this server's name",
    )


def check_origin(request: web.Request) -> None:
    """403 for a state-changing request that a browser says comes from another origin."""
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if site in ("cross-site", "same-site"):
        raise refuse(
            request, 403, f"a page on another origin may not change anything here ({site})"
        )
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(origin, request.headers.get("Host", "")):
        raise refuse(
            request,
            403,
            f"a page on another origin ({origin[:100]!r}) may not change anything here",
        )


def check_json(request: web.Request) -> None:
    """415 unless a state-changing request's body (if it has one) is ``application/json``.

    HTML forms and preflight-free fetches can only send form, multipart or text/plain bodies;
    requiring JSON makes them impossible even where the Origin check is not reached. An empty
    body's type is not checked: some clients label nothing as application/octet-stream.
    """
    if not request.body_exists:
        return
    if request.content_type != JSON:
        shown = request.headers.get("Content-Type", "none")[:100]
        raise refuse(request, 415, f"send the body as {JSON} (Content-Type was {shown!r})")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host, then for state-changing requests Origin and Content-Type; see the module doc."""
    check_host(request)
    if request.method not in SAFE_METHODS:
        check_origin(request)
        check_json(request)
    return await handler(request)
