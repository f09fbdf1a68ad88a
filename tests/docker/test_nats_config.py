"""docker/nats.conf, as compose mounts it, on the real nats-server binary.

The nodes read docker/nats.conf and docs/nats-permissions.conf from /etc/nats/, with the
passwords their secrets put in the environment. Here the same two files sit side by side in a
temp dir, the variables set as the entrypoint would: the configuration must parse
(``nats-server -t``), must not parse without a password, and a server started from it must
refuse anonymous clients and admit each user with the password of its secret. The
coordinators, with their compose logins, share sagas started over NATS (``saga.start``) in one
queue group, and no service may start a saga.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from saga.errors import TransportError
from saga.protocol import Reply
from saga.transport.nats import NatsTransport, flush_pending
from saga.transport.nats_server import NatsServer, free_port, nats_server_binary
from saga.transport.security import NatsSecurity
from tests.docker.topology import (
    COORDINATORS,
    DOCKER,
    NATS_NODES,
    PERMISSIONS,
    START_QUEUE,
    START_SUBJECT,
    nats_users,
    project_services,
    secret_targets,
    services,
)
from tests.security.nats_auth import TIMEOUT_S, Charges, command
from tests.transport.replies import ReplyCollector, wait_until

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


class RawClient:
    """A plain nats-py connection with a container's compose login, keeping the server's errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def connect(self, url: str, security: NatsSecurity) -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        self.nc = await nats.connect(
            url, error_cb=on_error, max_reconnect_attempts=1, **security.to_connect_options()
        )
        return self.nc

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[RawClient]]:
    """Raw connections a test opens (append to the list); all closed after it."""
    opened: list[RawClient] = []
    yield opened
    for client in opened:
        await client.close()


async def connect(
    clients: list[RawClient], server: NatsServer, service: dict[str, Any], environ: dict[str, str]
) -> tuple[Client, RawClient]:
    client = RawClient()
    clients.append(client)
    nc = await client.connect(server.url, login(service, environ))
    return nc, client


async def test_the_coordinators_share_saga_starts_in_one_queue_group(
    node: tuple[NatsServer, dict[str, str]], clients: list[RawClient]
) -> None:
    server, environ = node
    ours = project_services()
    served: Counter[str] = Counter()
    members = []
    for name in COORDINATORS:
        nc, client = await connect(clients, server, ours[name], environ)

        async def start(msg: Msg, name: str = name) -> None:
            served[name] += 1
            # The requester's inbox: allowed by allow_responses, not by a publish grant.
            await msg.respond(name.encode())

        await nc.subscribe(START_SUBJECT, queue=START_QUEUE, cb=start)
        await flush_pending(nc)
        members.append(client)
    # A client with the coordinators' login (the only one allowed to publish saga.start).
    requester, asking = await connect(clients, server, ours["coordinator-a"], environ)
    requests = 40
    answers: Counter[str] = Counter()
    for _ in range(requests):
        answer = await requester.request(START_SUBJECT, b"{}", timeout=TIMEOUT_S)
        answers[answer.data.decode()] += 1
    await wait_until(lambda: served.total() == requests)
    # Each start reached exactly one coordinator (a queue group, not a fan-out), and both
    # coordinators took a share: 40 starts all to one of two members is a 1 in 500,000 chance.
    assert served == answers
    assert set(served) == set(COORDINATORS)
    assert [c.errors for c in (*members, asking)] == [[], [], []]


async def test_only_the_coordinators_may_start_sagas_or_listen_to_starts(
    node: tuple[NatsServer, dict[str, str]], clients: list[RawClient]
) -> None:
    server, environ = node
    ours = project_services()
    served: list[bytes] = []

    async def start(msg: Msg) -> None:
        served.append(msg.data)

    coordinator, _ = await connect(clients, server, ours["coordinator-a"], environ)
    await coordinator.subscribe(START_SUBJECT, queue=START_QUEUE, cb=start)
    await flush_pending(coordinator)

    # A service cannot start a saga: its publish is refused and no coordinator sees it.
    for name in ("orders", "payments", "inventory", "shipping"):
        nc, client = await connect(clients, server, ours[name], environ)
        await nc.publish(START_SUBJECT, name.encode())
        await flush_pending(nc)
        refused = client.errors
        await wait_until(lambda: bool(refused))  # noqa: B023 - awaited in this iteration
        assert f'permissions violation for publish to "{START_SUBJECT}"' in refused[0], name

    # The coordinators' login may serve saga.start only inside their queue group, so it cannot
    # read the starts beside them, and answers only requests (no publish grant on inboxes).
    spy, spying = await connect(clients, server, ours["coordinator-b"], environ)
    await spy.subscribe(START_SUBJECT)
    await spy.subscribe(START_SUBJECT, queue="elsewhere")
    await spy.publish("_INBOX.someone.else", b"forged")
    await flush_pending(spy)
    await wait_until(lambda: len(spying.errors) == 3)
    assert sum(f'subscription to "{START_SUBJECT}"' in e for e in spying.errors) == 2
    assert any('publish to "_inbox.someone.else"' in e for e in spying.errors)

    # The group still works, and took none of the refused starts.
    publisher, _ = await connect(clients, server, ours["coordinator-b"], environ)
    await publisher.publish(START_SUBJECT, b"coordinator")
    await flush_pending(publisher)
    await wait_until(lambda: bool(served))
    assert served == [b"coordinator"]
