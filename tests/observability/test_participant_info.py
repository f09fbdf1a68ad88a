"""A participant's $SRV.INFO names the package version and its instance; a handler that
answers "failed" is an error in its endpoint's $SRV.STATS (a business "no" is not)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from saga.errors import Rejected
from saga.participant import CommandContext, Participant
from saga.protocol import Command, Direction
from saga.transport.nats_server import NatsServer
from saga.version import __version__

pytestmark = pytest.mark.nats
TIMEOUT_S = 30.0


@pytest.fixture
async def raw(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


def payments(instance: str | None) -> Participant:
    participant = Participant("payments", instance=instance)

    @participant.command("charge")
    async def charge(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        return {}

    @participant.command("refuse")
    async def refuse(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        raise Rejected("card declined", code="declined")

    @participant.command("flaky")
    async def flaky(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        raise TimeoutError("bank timed out")

    return participant


async def send(raw: Client, name: str, saga_id: str) -> None:
    command = Command(
        saga_id=saga_id, saga_name="order", step=name, direction=Direction.FORWARD, attempt=1,
        service="payments", command=name,
    )  # fmt: skip
    await raw.request(command.subject, command.body(), timeout=TIMEOUT_S, headers=command.headers())


async def request_json(raw: Client, subject: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((await raw.request(subject, b"", timeout=TIMEOUT_S)).data)
    return data


async def test_info_carries_version_and_instance(nats_server: NatsServer, raw: Client) -> None:
    async with payments("payments-2").serving(nats_server.url):
        info = await request_json(raw, "$SRV.INFO.payments")
    assert info["metadata"]["saga.version"] == __version__
    assert info["metadata"]["saga.instance"] == "payments-2"
    assert info["metadata"]["saga.idempotency_store"]  # still there beside them


async def test_an_unnamed_instance_is_host_and_pid(nats_server: NatsServer, raw: Client) -> None:
    async with payments(None).serving(nats_server.url):
        info = await request_json(raw, "$SRV.INFO.payments")
    assert info["metadata"]["saga.instance"] == f"{socket.gethostname()}-{os.getpid()}"


async def test_failed_answers_count_as_endpoint_errors(
    nats_server: NatsServer, raw: Client
) -> None:
    async with payments("payments-1").serving(nats_server.url):
        await send(raw, "charge", "s-1")
        await send(raw, "refuse", "s-2")
        await send(raw, "flaky", "s-3")
        await send(raw, "flaky", "s-4")
        stats = await request_json(raw, "$SRV.STATS.payments")
    by_name = {e["name"]: e for e in stats["endpoints"]}
    assert by_name["charge"]["num_errors"] == 0
    assert by_name["refuse"]["num_errors"] == 0  # a business "no" is an answer, not an error
    assert by_name["flaky"]["num_errors"] == 2
    assert by_name["flaky"]["last_error"] == "handler_error: TimeoutError: bank timed out"
    assert by_name["flaky"]["data"] == {"failed": 2}
