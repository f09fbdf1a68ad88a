"""NatsCluster: three routed nodes from the wheel; a node killed and restarted; clients given
every URL fail over; no node outlives the process that started it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from saga.errors import TransportError
from saga.protocol import Command, Reply
from saga.transport.nats import NatsTransport, connect_nats
from saga.transport.nats_cluster import NatsCluster

pytestmark = [pytest.mark.nats, pytest.mark.timeout(120)]


@pytest.fixture
async def cluster() -> AsyncIterator[NatsCluster]:
    async with NatsCluster(3, name="launcher") as running:
        yield running


async def _eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30
) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():  # noqa: ASYNC110 - polling another process: no event
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"not within {timeout_s} s: {what}")


async def _crosses(publisher: Client, subscriber: Client, subject: str) -> None:
    """A message published through one node reaches a subscriber on another (interest
    crosses the routes asynchronously, so publish until one arrives)."""
    sub = await subscriber.subscribe(subject)
    await subscriber.flush()

    async def arrived() -> bool:
        await publisher.publish(subject, b"hello")
        try:
            msg = await sub.next_msg(timeout=0.2)
        except nats.errors.TimeoutError:
            return False
        return bool(msg.data == b"hello")

    await _eventually(arrived, f"a message on {subject} crosses the cluster")
    await sub.unsubscribe()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def test_nodes_form_one_cluster(cluster: NatsCluster) -> None:
    assert len(set(cluster.urls)) == 3
    assert len({*cluster.monitor_ports, *(node.port for node in cluster.nodes)}) == 6
    assert await cluster.missing_routes() == {}
    first = await nats.connect(cluster.urls[0])
    last = await nats.connect(cluster.urls[2])
    try:
        await _crosses(first, last, "cluster.check")
        await _crosses(last, first, "cluster.check.back")
    finally:
        await first.close()
        await last.close()


async def test_index_of_names_the_node_behind_a_url(cluster: NatsCluster) -> None:
    for index, node in enumerate(cluster.nodes):
        assert cluster.index_of(node.url) == index
        assert cluster.index_of(f"{node.host}:{node.port}") == index
    with pytest.raises(TransportError, match="not a node"):
        cluster.index_of("nats://127.0.0.1:1")


async def test_a_killed_node_restarts_and_rejoins(cluster: NatsCluster) -> None:
    pid = cluster.nodes[1].pid
    assert pid is not None
    cluster.kill(1)
    assert _gone(pid)
    assert not cluster.nodes[1].running
    # The survivors still route to each other; nobody waits for the dead node.
    await cluster.wait_routed(timeout_s=10)

    await cluster.restart(1)
    assert cluster.nodes[1].running
    assert await cluster.missing_routes() == {}
    back = await nats.connect(cluster.urls[1])
    other = await nats.connect(cluster.urls[0])
    try:
        await _crosses(other, back, "cluster.rejoined")
    finally:
        await back.close()
        await other.close()


async def test_only_running_nodes_count_and_a_missing_route_is_named() -> None:
    cluster = NatsCluster(3, name="partial")
    # Node 2 claims another cluster name: nodes 0 and 1 refuse its routes.
    args = list(cluster.nodes[2].extra_args)
    args[args.index("--cluster_name") + 1] = "elsewhere"
    cluster.nodes[2].extra_args = tuple(args)
    try:
        await cluster.nodes[0].start()
        await cluster.nodes[1].start()
        await cluster.wait_routed(timeout_s=10)  # node 2 is not running: it is not waited for
        await cluster.nodes[2].start()
        with pytest.raises(TransportError, match="partial-0 lacks partial-2"):
            await cluster.wait_routed(timeout_s=2)
    finally:
        await cluster.stop()
    assert not any(node.running for node in cluster.nodes)


async def test_a_client_given_every_url_fails_over(cluster: NatsCluster) -> None:
    nc = await connect_nats(cluster.urls, name="failover", options={"reconnect_time_wait": 0.2})
    watcher: Client | None = None
    try:
        assert nc.connected_url is not None
        doomed = cluster.index_of(nc.connected_url.geturl())
        survivor = cluster.urls[(doomed + 1) % 3]
        watcher = await nats.connect(survivor)
        cluster.kill(doomed)

        async def moved() -> bool:
            url = nc.connected_url
            return nc.is_connected and url is not None and cluster.index_of(url.geturl()) != doomed

        await _eventually(moved, "the client reconnects to a surviving node")
        await _crosses(nc, watcher, "after.failover")
    finally:
        await nc.close()
        if watcher is not None:
            await watcher.close()


async def test_nats_transport_reports_where_it_is_connected(cluster: NatsCluster) -> None:
    transport = NatsTransport(cluster.urls, connect_options={"reconnect_time_wait": 0.2})
    transport.check_stores_every_s = None
    assert transport.connected_url is None

    async def ignore(command: Command, reply: Reply) -> None:
        del command, reply

    await transport.open(ignore)
    try:
        url = transport.connected_url
        assert url is not None
        assert transport.reconnects == 0
        doomed = cluster.index_of(url)
        cluster.kill(doomed)

        async def moved() -> bool:
            now = transport.connected_url
            return now is not None and cluster.index_of(now) != doomed

        await _eventually(moved, "the transport reconnects to a surviving node")
        assert transport.reconnects == 1
    finally:
        await transport.close()
    assert transport.connected_url is None


PARENT = """
import asyncio, sys
from saga.transport.nats_cluster import NatsCluster

async def main():
    cluster = NatsCluster(3, name="orphans")
    await cluster.start()
    print(" ".join(str(node.pid) for node in cluster.nodes), flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
async def test_no_node_outlives_a_sigkilled_parent() -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PARENT, stdout=asyncio.subprocess.PIPE
    )
    assert parent.stdout is not None
    pids: list[int] = []
    try:
        line = await asyncio.wait_for(parent.stdout.readline(), 60)
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 3
        assert not any(_gone(pid) for pid in pids), "the nodes run while their parent does"
        parent.send_signal(signal.SIGKILL)
        await parent.wait()

        async def all_gone() -> bool:
            return all(_gone(pid) for pid in pids)

        await _eventually(all_gone, "every node dies with its SIGKILLed parent", 10)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        for pid in pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
