"""NatsCluster: several nats-server processes (from the wheel) routed into one cluster.

For tests and local failover drills: N ``NatsServer`` nodes on free loopback ports, each with a
``server_name``, one cluster name, a cluster (route) port and a monitoring port, and explicit
routes to every other node. ``start()`` returns once every node reports a route to every other
running node (the monitoring endpoint ``/routez``); ``kill(i)`` SIGKILLs one node as a crash
would, ``restart(i)`` brings it back on the same ports and waits for its routes. No JetStream:
the project uses NATS core request/reply only.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from saga.errors import TransportError
from saga.transport.nats_server import NatsServer, free_ports

ROUTES_TIMEOUT_S = 30.0
"""How long ``start()`` and ``restart()`` wait for the routes between the nodes."""
_POLL_S = 0.1
_HTTP_TIMEOUT_S = 2.0


class NatsCluster:
    """``size`` routed nats-server nodes on ``host``; ``urls`` lists their client URLs."""

    def __init__(self, size: int = 3, *, host: str = "127.0.0.1", name: str = "saga") -> None:
        if size < 1:
            raise TransportError("a NATS cluster needs at least one node")
        self.name = name
        """The cluster name every node is started with."""
        ports = free_ports(3 * size, host)
        client_ports, route_ports = ports[:size], ports[size : 2 * size]
        self.monitor_ports = ports[2 * size :]
        """Each node's HTTP monitoring port (``/varz``, ``/routez``), by node index."""
        self.nodes: list[NatsServer] = []
        """The nodes, in index order; each restarts on its own ports."""
        for index in range(size):
            routes = ",".join(
                f"nats://{host}:{port}" for other, port in enumerate(route_ports) if other != index
            )
            args = [
                "--server_name", self.server_name(index),
                "--cluster_name", name,
                "--cluster", f"nats://{host}:{route_ports[index]}",
                "--http_port", str(self.monitor_ports[index]),
            ]  # fmt: skip
            if routes:
                args += ["--routes", routes]
            node = NatsServer(host=host, port=client_ports[index], jetstream=False, extra_args=args)
            self.nodes.append(node)

    def server_name(self, index: int) -> str:
        """The ``server_name`` of node ``index`` (what ``/routez`` names it by)."""
        return f"{self.name}-{index}"

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, in index order (what clients are given, all of them)."""
        return [node.url for node in self.nodes]

    def index_of(self, url: str) -> int:
        """The index of the node a client URL points at (``nc.connected_url``, say).

        Raises TransportError for a URL that is not one of this cluster's nodes.
        """
        for index, node in enumerate(self.nodes):
            if _host_port(url) == (node.host, node.port):
                return index
        raise TransportError(f"{url} is not a node of NATS cluster {self.name!r}")

    async def start(self) -> None:
        """Start every node and wait until each has a route to every other one."""
        try:
            await asyncio.gather(*(node.start() for node in self.nodes))
            await self.wait_routed()
        except BaseException:
            await self.stop()
            raise

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` now, as a crash would; its clients must fail over."""
        self.nodes[index].kill()

    async def restart(self, index: int) -> None:
        """Start node ``index`` again on the same ports and wait until the cluster is whole."""
        await self.nodes[index].restart()
        await self.wait_routed()

    async def wait_routed(self, timeout_s: float = ROUTES_TIMEOUT_S) -> None:
        """Wait until every running node has a route to every other running node.

        Raises TransportError, naming the routes still missing, after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            missing = await self.missing_routes()
            if not missing:
                return
            if time.monotonic() > deadline:
                described = "; ".join(
                    f"{self.server_name(i)} lacks {', '.join(sorted(names))}"
                    for i, names in sorted(missing.items())
                )
                raise TransportError(
                    f"NATS cluster {self.name!r} did not form within {timeout_s:.0f} s: {described}"
                )
            await asyncio.sleep(_POLL_S)

    async def missing_routes(self) -> dict[int, set[str]]:
        """Per running node, the names of the other running nodes it has no route to."""
        running = [i for i, node in enumerate(self.nodes) if node.running]
        names = {self.server_name(i) for i in running}
        missing: dict[int, set[str]] = {}
        for index in running:
            routez = await self._routez(index)
            routes = routez.get("routes") if routez is not None else None
            remote = {
                route.get("remote_name")
                for route in (routes if isinstance(routes, list) else [])
                if isinstance(route, dict)
            }
            lacking = names - {self.server_name(index)} - remote
            if lacking:
                missing[index] = lacking
        return missing

    async def _routez(self, index: int) -> dict[str, Any] | None:
        """Node ``index``'s ``/routez`` document, or None while it does not answer."""
        url = f"http://{self.nodes[index].host}:{self.monitor_ports[index]}/routez"

        def fetch() -> Any:
            with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:
                return json.loads(response.read())

        try:
            document = await asyncio.to_thread(fetch)
        except (OSError, ValueError, urllib.error.URLError):
            return None
        return document if isinstance(document, dict) else None

    async def stop(self) -> None:
        """Stop every node and remove their temp dirs. Idempotent."""
        await asyncio.gather(*(node.stop() for node in self.nodes))

    async def __aenter__(self) -> NatsCluster:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        up = sum(node.running for node in self.nodes)
        return f"<NatsCluster {self.name} {up}/{len(self.nodes)} running>"


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    return parts.hostname or "", parts.port
