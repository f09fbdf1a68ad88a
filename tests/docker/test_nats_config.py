"""docker/nats.conf, as compose mounts it, on the real nats-server binary.

The nodes read docker/nats.conf and docs/nats-permissions.conf from /etc/nats/, with the
passwords their secrets put in the environment. Here the same two files sit side by side in a
temp dir, the variables set as the entrypoint would: the configuration must parse
(``nats-server -t``), must not parse without a password, and a server started from it must
refuse anonymous clients and admit each user with the password of its secret.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from saga.errors import TransportError
from saga.protocol import Reply
from saga.transport.nats import NatsTransport
from saga.transport.nats_server import NatsServer, free_port, nats_server_binary
from saga.transport.security import NatsSecurity
from tests.docker.topology import (
    DOCKER,
    NATS_NODES,
    PERMISSIONS,
    nats_users,
    project_services,
    secret_targets,
    services,
)
from tests.security.nats_auth import TIMEOUT_S, Charges, command
from tests.transport.replies import ReplyCollector

pytestmark = pytest.mark.nats

MOUNT_DIR = "/etc/nats/"


def mounted(tmp_path: Path, store_dir: Path | None = None) -> Path:
    """The files a node mounts, laid out as in its /etc/nats/; the path of nats.conf."""
    for mount in services()["nats-1"]["volumes"]:
        source, target, *_ = mount.split(":")
        if target.startswith(MOUNT_DIR):
            (tmp_path / target.removeprefix(MOUNT_DIR)).write_bytes((DOCKER / source).read_bytes())
    conf = tmp_path / "nats.conf"
    if store_dir is not None:
        # The only path in the file: the node's volume, /data.
        text = conf.read_text()
        assert "store_dir: /data\n" in text
        conf.write_text(text.replace("store_dir: /data\n", f"store_dir: {store_dir}\n"))
    assert (tmp_path / "nats-permissions.conf").read_bytes() == PERMISSIONS.read_bytes()
    return conf


def node_environment(node: str) -> dict[str, str]:
    """The variables a node has: its compose environment, and one per secret it mounts."""
    environ = dict(services()[node]["environment"])
    for target, source in secret_targets(services()[node]).items():
        environ[target] = f"{source}-{secrets.token_hex(8)}"
    return environ


def check(conf: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_server_binary(), "-t", "-c", conf.name], cwd=conf.parent, env=environ,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_every_node_config_is_valid_with_its_secrets(tmp_path: Path) -> None:
    conf = mounted(tmp_path)
    for node in NATS_NODES:
        done = check(conf, node_environment(node))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "is valid" in done.stdout + done.stderr


def test_a_node_without_a_password_secret_does_not_start(tmp_path: Path) -> None:
    conf = mounted(tmp_path)
    environ = node_environment("nats-1")
    del environ["SAGA_ORDERS_PASSWORD"]
    done = check(conf, environ)
    assert done.returncode != 0
    assert "'SAGA_ORDERS_PASSWORD'" in done.stdout + done.stderr


@pytest.fixture
async def node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[NatsServer, dict[str, str]]]:
    """nats-1 from the compose files, on free loopback ports instead of the fixed ones."""
    environ = node_environment("nats-1")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    conf = mounted(tmp_path, store_dir=tmp_path / "data")
    ports = ["--http_port", str(free_port()), "--cluster", f"nats://127.0.0.1:{free_port()}"]
    server = NatsServer(jetstream=False, extra_args=["--config", str(conf), *ports])
    async with server:
        yield server, environ


def login(service: dict[str, Any], environ: dict[str, str]) -> NatsSecurity:
    """What a container of the project sends: its SAGA_NATS_USER and the secret mounted as
    its SAGA_NATS_PASSWORD (the same secret the node holds for that user)."""
    source = secret_targets(service)["SAGA_NATS_PASSWORD"]
    node_has = {source: environ[target] for target, source in secret_targets(nats_1()).items()}
    return NatsSecurity.from_env(
        {"SAGA_NATS_USER": service["environment"]["SAGA_NATS_USER"],
         "SAGA_NATS_PASSWORD": node_has[source]}
    )  # fmt: skip


def nats_1() -> dict[str, Any]:
    return services()["nats-1"]


async def test_the_node_refuses_anonymous_and_wrong_password_clients(
    node: tuple[NatsServer, dict[str, str]],
) -> None:
    server, _ = node
    for security in (None, NatsSecurity(user="orders", password="not-the-secret")):
        transport = NatsTransport(server.url, security=security)
        with pytest.raises(TransportError, match="Authorization Violation"):
            await transport.open(ReplyCollector())


async def test_the_coordinator_reaches_every_service_with_their_compose_logins(
    node: tuple[NatsServer, dict[str, str]],
) -> None:
    server, environ = node
    ours = project_services()
    assert nats_users()[ours["coordinator-a"]["environment"]["SAGA_NATS_USER"]]
    replies = ReplyCollector()
    transport = NatsTransport(server.url, security=login(ours["coordinator-a"], environ))
    await transport.open(replies)
    try:
        for name in ("orders", "payments", "inventory", "shipping"):
            charges = Charges(name)
            async with charges.participant.serving(server.url, security=login(ours[name], environ)):
                sent = command(name, f"saga-{name}", amount=1)
                await transport.send(sent)
                reply = await asyncio.wait_for(replies.wait_reply(sent), TIMEOUT_S)
                assert reply == Reply.succeeded({"charged": 1}), name
        assert transport.permission_violations == 0
    finally:
        await transport.close()
    # The monitoring endpoint took the configuration's loopback host.
    assert "Starting http monitor on 127.0.0.1:" in server.log_tail(100_000)
