"""start_http(): serve the API beside a running coordinator, refusing unsafe exposure."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from saga.api.app import create_app
from saga.api.config import ApiConfig
from saga.coordinator import Coordinator
from saga.errors import ConfigError

ACCESS_LOG = logging.getLogger("saga.api.access")
"""One INFO line per request when ``ApiConfig.access_log`` is on (never a header's value but
the user agent)."""
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs "%{User-Agent}i"'
"""What aiohttp's own format would say; ``AccessLogger`` writes the same line."""
_SECRET_PARAMS = ("token", "secret", "password", "passwd", "auth", "key", "signature")


def _logged_target(request: web.BaseRequest) -> str:
    """The request target, with the value of any query parameter that looks like a secret
    (``?token=...``) masked: the API takes tokens in a header only, but a client may err."""
    query = request.rel_url.query
    if not query or not any(word in k.lower() for k in query for word in _SECRET_PARAMS):
        return request.path_qs
    parts = [
        f"{k}=***" if any(word in k.lower() for word in _SECRET_PARAMS) else f"{k}={v}"
        for k, v in query.items()
    ]
    return f"{request.path}?{'&'.join(parts)}"


class AccessLogger(AbstractAccessLogger):
    """One INFO line per request on ``saga.api.access``: client, request line, status, size,
    seconds, user agent; the same as fields for JSON logs (``--log-format json``). No other
    header is read, so the Authorization header never reaches the log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        client = request.remote or "-"
        target = _logged_target(request)
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        agent = request.headers.get("User-Agent", "-")
        size = response.body_length
        self.logger.info(
            '%s "%s %s %s" %d %d %.6fs "%s"',
            client, request.method, target, version, response.status, size, time, agent,
            extra={
                "client": client, "method": request.method, "path": target,
                "status": response.status, "size": size, "duration_s": round(time, 6),
                "user_agent": agent,
            },
        )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, config: ApiConfig, *, insecure: bool = False) -> None:
    """Raise ConfigError when serving on ``host`` without tokens would expose the API."""
    if config.auth or insecure or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to serve HTTP on {host} without tokens: anyone who can reach it could "
        "start and cancel sagas. Configure tokens (--token-file, or --token-viewer/"
        "--token-operator), listen on 127.0.0.1, or pass --insecure"
    )


def is_wildcard(host: str) -> bool:
    """Whether ``host`` means every address of this machine (0.0.0.0, ::, or empty)."""
    try:
        return not host.strip("[]") or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def served_config(host: str, config: ApiConfig, machine_names: Iterable[str] = ()) -> ApiConfig:
    """``config`` with the names a client of an API listening on ``host`` may use as Host.

    A specific address (or name) is allowed as given. A wildcard (``0.0.0.0``, ``::``) is
    reached by any of the machine's addresses, so any IP-address Host is served (an address
    is never a DNS-rebinding name), and so are ``machine_names`` (start_http passes the host
    name and FQDN); other names (a load balancer's, a DNS alias) need ``--allowed-host``.
    """
    if is_loopback(host):
        return config
    if is_wildcard(host):
        names = {socket.gethostname(), *machine_names}
        return dataclasses.replace(
            config, allowed_hosts=config.allowed_hosts | names, allow_ip_hosts=True
        )
    return dataclasses.replace(config, allowed_hosts=config.allowed_hosts | {host})


@dataclass
class HttpServer:
    """A running API server: where it listens, and how to stop it."""

    runner: web.AppRunner
    host: str
    port: int
    config: ApiConfig = dataclasses.field(default_factory=ApiConfig)
    """The configuration served, with the listening address's host names allowed."""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop listening, end event streams, and wait for requests in progress."""
        await self.runner.cleanup()


async def start_http(
    coordinator: Coordinator,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    config: ApiConfig | None = None,
    insecure: bool = False,
) -> HttpServer:
    """Serve ``create_app(coordinator, config)`` on host:port (port 0 picks a free one).

    Raises ValueError for a non-loopback host without tokens unless ``insecure``, and
    OSError if the address is taken. Host names are served as ``served_config`` says.
    """
    # getfqdn may ask DNS: off the event loop, and only when it is needed.
    fqdn = await asyncio.to_thread(socket.getfqdn) if is_wildcard(host) else ""
    config = served_config(host, config or ApiConfig(), [fqdn] if fqdn else [])
    check_exposure(host, config, insecure=insecure)
    if config.access_log and ACCESS_LOG.getEffectiveLevel() > logging.INFO:
        ACCESS_LOG.setLevel(logging.INFO)  # asked for: show it even when the CLI logs warnings
    runner = web.AppRunner(
        create_app(coordinator, config),
        access_log=ACCESS_LOG if config.access_log else None,
        access_log_class=AccessLogger,
        shutdown_timeout=2.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return HttpServer(runner=runner, host=host, port=bound, config=config)
