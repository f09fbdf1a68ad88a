"""docs/nats-permissions.conf on a real nats-server: it parses, lets sagas work, fences services."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from saga.errors import TransportError
from saga.protocol import Outcome, Reply
from saga.transport.nats import NatsTransport, flush_pending
from saga.transport.nats_server import NatsServer
from saga.transport.security import NatsSecurity
from tests.security.nats_auth import TIMEOUT_S, Charges, command
from tests.transport.replies import ReplyCollector, wait_until

pytestmark = pytest.mark.nats

DOCS_CONFIG = Path(__file__).parents[2] / "docs" / "nats-permissions.conf"
USERS = ("coordinator", "orders", "payments", "inventory", "shipping")


def password(user: str) -> str:
    return f"test-{user}-pw"


def login(user: str) -> NatsSecurity:
    name = "saga-coordinator" if user == "coordinator" else user
    return NatsSecurity(user=name, password=password(user))


@pytest.fixture
async def server() -> AsyncIterator[NatsServer]:
    """The documented configuration verbatim, its password variables defined for the test."""
    variables = "".join(f'SAGA_{u.upper()}_PASSWORD: "{password(u)}"\n' for u in USERS)
    async with NatsServer(jetstream=False, config=variables + DOCS_CONFIG.read_text()) as srv:
        yield srv


class RawClient:
    """A plain nats-py connection as some user, keeping the errors the server sends it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def connect(self, url: str, user: str) -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        options = login(user).to_connect_options()
        self.nc = await nats.connect(url, error_cb=on_error, max_reconnect_attempts=1, **options)
        return self.nc

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


@pytest.fixture
async def raw() -> AsyncIterator[RawClient]:
    client = RawClient()
    yield client
    await client.close()


async def test_the_documented_permissions_let_sagas_work(
    server: NatsServer, raw: RawClient
) -> None:
    orders, payments = Charges("orders"), Charges("payments")
    async with (
        orders.participant.serving(server.url, security=login("orders")),
        payments.participant.serving(server.url, security=login("payments")),
    ):
        replies = ReplyCollector()
        transport = NatsTransport(server.url, security=login("coordinator"))
        await transport.open(replies)
        try:
            to_orders = command("orders", "saga-1", amount=1)
            to_payments = command("payments", "saga-1", amount=2)
            await transport.send(to_orders)
            await transport.send(to_payments)
            assert await replies.wait_reply(to_orders) == Reply.succeeded({"charged": 1})
            assert await replies.wait_reply(to_payments) == Reply.succeeded({"charged": 2})
            assert transport.permission_violations == 0
        finally:
            await transport.close()

        # Operators (with the coordinator's user) can still discover the services.
        nc = await raw.connect(server.url, "coordinator")
        info = await nc.request("$SRV.INFO.payments", b"", timeout=TIMEOUT_S)
        assert json.loads(info.data)["name"] == "payments"
        assert raw.errors == []


async def test_a_service_cannot_send_commands_to_another_service(
    server: NatsServer, raw: RawClient
) -> None:
    orders = Charges("orders")
    async with orders.participant.serving(server.url, security=login("orders")):
        forged = command("orders", "forged", amount=1_000_000)
        nc = await raw.connect(server.url, "payments")
        await nc.publish(
            forged.subject, forged.body(), reply="_SAGA_REPLY.x.1", headers=forged.headers()
        )
        await flush_pending(nc)
        await wait_until(lambda: bool(raw.errors))
        assert "permissions violation for publish" in raw.errors[0].lower()
        assert '"orders.charge"' in raw.errors[0]

        # The coordinator's command arrives after where the forged one would have been.
        replies = ReplyCollector()
        transport = NatsTransport(server.url, security=login("coordinator"))
        await transport.open(replies)
        try:
            real = command("orders", "real", amount=1)
            await transport.send(real)
            assert (await replies.wait_reply(real)).outcome is Outcome.SUCCEEDED
        finally:
            await transport.close()
    assert orders.handled == ["real"]


async def test_a_service_cannot_read_replies_or_other_services_commands(
    server: NatsServer, raw: RawClient
) -> None:
    nc = await raw.connect(server.url, "payments")
    for subject in ("_SAGA_REPLY.>", "orders.>", "$SRV.INFO.orders"):
        await nc.subscribe(subject)
    await flush_pending(nc)
    await wait_until(lambda: len(raw.errors) >= 3)
    assert all("permissions violation for subscription" in e.lower() for e in raw.errors)


async def test_a_service_cannot_serve_under_another_name(server: NatsServer) -> None:
    impostor = Charges("orders")
    with pytest.raises(TransportError, match="does not let service 'orders' subscribe"):
        await impostor.participant.serve(server.url, security=login("payments"))


async def test_a_user_without_the_reply_subscription_cannot_open_a_transport(
    server: NatsServer,
) -> None:
    transport = NatsTransport(server.url, security=login("orders"))
    with pytest.raises(TransportError, match="subscribe to _SAGA_REPLY"):
        await transport.open(ReplyCollector())
    assert not transport.is_connected


async def test_a_refused_command_is_counted_and_logged(
    server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    replies = ReplyCollector()
    transport = NatsTransport(server.url, security=login("coordinator"))
    await transport.open(replies)
    try:
        await transport.send(command("billing", "saga-9"))  # not in the coordinator's list
        await transport.flush()
        await wait_until(lambda: transport.permission_violations == 1)
        assert transport.pending_replies == 1, "no reply comes; the step's timeout retries it"
    finally:
        await transport.close()
    assert 'permissions violation for publish to "billing.charge"' in caplog.text.lower()
