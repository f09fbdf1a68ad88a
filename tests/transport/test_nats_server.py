"""NatsServer: the real nats-server binary starts, restarts on its port, and stops cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import nats
import pytest

from saga.errors import TransportError
from saga.transport.nats import connect_nats
from saga.transport.nats_server import NatsServer, nats_server_binary

pytestmark = pytest.mark.nats


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _round_trip(url: str) -> bytes:
    nc = await nats.connect(url, max_reconnect_attempts=1)
    try:
        sub = await nc.subscribe("ping")
        await nc.publish("ping", b"pong")
        msg = await sub.next_msg(timeout=10)
        data: bytes = msg.data
        return data
    finally:
        await nc.close()


def test_binary_is_found() -> None:
    path = Path(nats_server_binary())
    assert path.name == "nats-server"
    assert os.access(path, os.X_OK)


async def test_starts_and_accepts_connections(nats_server: NatsServer) -> None:
    assert nats_server.running
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    assert await _round_trip(nats_server.url) == b"pong"


async def test_restart_keeps_port_and_store(tmp_path: Path) -> None:
    store = tmp_path / "js"
    async with NatsServer(store_dir=store) as server:
        port, first_pid = server.port, server.pid
        await server.restart()
        assert server.port == port
        assert server.pid != first_pid
        assert first_pid is not None
        assert not _alive(first_pid)
        assert await _round_trip(server.url) == b"pong"
    assert store.is_dir(), "a given store dir is the caller's and survives stop()"


async def test_kill_then_restart() -> None:
    async with NatsServer(jetstream=False) as server:
        pid = server.pid
        server.kill()
        assert not server.running
        assert pid is not None
        assert not _alive(pid)
        await server.restart()
        assert await _round_trip(server.url) == b"pong"


async def test_stop_leaves_no_process_and_no_temp_dir() -> None:
    server = NatsServer()
    await server.start()
    pid, store = server.pid, server.store_dir
    assert pid is not None
    assert _alive(pid)
    assert store.is_dir()
    await server.stop()
    assert not _alive(pid)
    assert not server.running
    assert not store.exists(), "the temp store is removed on stop"
    await server.stop()  # idempotent


async def test_a_failed_start_reports_the_server_output() -> None:
    server = NatsServer(jetstream=False, extra_args=["--no-such-flag"])
    with pytest.raises(TransportError, match="no-such-flag"):
        await server.start()
    assert not server.running
    await server.stop()


async def test_port_in_use_is_a_clear_error(nats_server: NatsServer) -> None:
    clash = NatsServer(port=nats_server.port, jetstream=False)
    with pytest.raises(TransportError, match="exited with code"):
        await clash.start()
    await clash.stop()
    assert nats_server.running


async def test_a_config_is_written_privately_and_applied() -> None:
    config = 'authorization { token: "cfg-token" }\n'
    async with NatsServer(jetstream=False, config=config) as server:
        assert server.config_path.read_text() == config
        assert server.config_path.stat().st_mode & 0o777 == 0o600
        with pytest.raises(TransportError, match="Authorization"):
            await connect_nats(server.url, name="no-token")
        nc = await connect_nats(server.url, name="token", options={"token": "cfg-token"})
        await nc.close()


async def test_a_bad_config_fails_the_start_with_the_server_output() -> None:
    server = NatsServer(jetstream=False, config="authorization { users = [ }\n")
    with pytest.raises(TransportError, match="exited with code"):
        await server.start()
    assert not server.running
    await server.stop()
