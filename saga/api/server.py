"""start_http(): serve the API beside a running coordinator, refusing unsafe exposure."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aiohttp import web

from saga.api.app import create_app
from saga.api.config import ApiConfig
from saga.coordinator import Coordinator


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, config: ApiConfig, *, insecure: bool = False) -> None:
    """Raise ValueError when serving on ``host`` without tokens would expose the API."""
    if config.auth or insecure or is_loopback(host):
        return
    raise ValueError(
        f"refusing to serve HTTP on {host} without tokens: anyone who can reach it could "
        "start and cancel sagas. Configure tokens (--token-viewer/--token-operator), listen "
        "on 127.0.0.1, or pass --insecure"
    )


@dataclass
class HttpServer:
    """A running API server: where it listens, and how to stop it."""

    runner: web.AppRunner
    host: str
    port: int

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
    OSError if the address is taken.
    """
    config = config or ApiConfig()
    check_exposure(host, config, insecure=insecure)
    runner = web.AppRunner(create_app(coordinator, config), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return HttpServer(runner=runner, host=host, port=bound)
