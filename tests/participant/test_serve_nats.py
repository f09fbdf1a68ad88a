"""A Participant served as a nats.micro service, driven by NatsTransport over a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from saga.errors import DefinitionError, Rejected
from saga.participant import CommandContext, Participant
from saga.protocol import Command, Direction, Outcome, Reply
from saga.transport.nats import NatsTransport
from saga.transport.nats_server import NatsServer
from tests.transport.replies import ReplyCollector

pytestmark = pytest.mark.nats

JsonObject = dict[str, Any]
TIMEOUT_S = 30.0


def cmd(name: str, saga_id: str = "saga-1", *, attempt: int = 1, **payload: Any) -> Command:
    return Command(
        saga_id=saga_id,
        saga_name="order",
        step=name,
        direction=Direction.FORWARD,
        attempt=attempt,
        service="payments",
        command=name,
        payload=payload,
    )


class Payments:
    def __init__(self) -> None:
        self.participant = Participant("payments", version="1.2.3", description="test payments")
        self.handled: list[str] = []

        @self.participant.command("charge")
        async def charge(ctx: CommandContext, request: JsonObject) -> JsonObject:
            self.handled.append(ctx.saga_id)
            return {"charged": request.get("amount", 0)}

        @self.participant.command("refuse")
        async def refuse(ctx: CommandContext, request: JsonObject) -> JsonObject:
            raise Rejected("card declined", code="declined", details={"bank": "x"})

        @self.participant.command("flaky")
        async def flaky(ctx: CommandContext, request: JsonObject) -> JsonObject:
            raise TimeoutError("bank timed out")


@pytest.fixture
async def replies() -> ReplyCollector:
    return ReplyCollector()


@pytest.fixture
async def transport(
    nats_server: NatsServer, replies: ReplyCollector
) -> AsyncIterator[NatsTransport]:
    transport = NatsTransport(nats_server.url, connect_options={"reconnect_time_wait": 0.2})
    await transport.open(replies)
    yield transport
    await transport.close()


@pytest.fixture
async def raw(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def test_round_trip_succeeded_rejected_failed(
    nats_server: NatsServer, transport: NatsTransport, replies: ReplyCollector
) -> None:
    payments = Payments()
    async with payments.participant.serving(nats_server.url):
        charge, refuse, flaky = cmd("charge", amount=42), cmd("refuse"), cmd("flaky")
        for command in (charge, refuse, flaky):
            await transport.send(command)
        assert await replies.wait_reply(charge) == Reply.succeeded({"charged": 42})
        assert await replies.wait_reply(refuse) == Reply.rejected(
            "declined", "card declined", {"bank": "x"}
        )
        failed = await replies.wait_reply(flaky)
        assert failed.outcome is Outcome.FAILED
        assert failed.error is not None
        assert failed.error.code == "handler_error"

        again = cmd("charge", amount=42, attempt=2)
        await transport.send(again)
        assert await replies.wait_reply(again) == Reply.succeeded({"charged": 42})
        assert payments.handled == ["saga-1"]


async def test_replicas_in_one_queue_group_share_the_load(
    nats_server: NatsServer, transport: NatsTransport, replies: ReplyCollector
) -> None:
    one, two = Payments(), Payments()
    async with one.participant.serving(nats_server.url), two.participant.serving(nats_server.url):
        commands = [cmd("charge", f"saga-{n}", amount=n) for n in range(50)]
        for command in commands:
            await transport.send(command)
        await replies.wait_count(50)
    assert one.handled, "both replicas got some commands"
    assert two.handled, "both replicas got some commands"
    assert sorted(one.handled + two.handled) == sorted(c.saga_id for c in commands)
    assert all(r.outcome is Outcome.SUCCEEDED for _, r in replies.received)


async def test_a_subject_nobody_serves_gets_no_responders(
    transport: NatsTransport, replies: ReplyCollector
) -> None:
    command = cmd("charge")
    await transport.send(command)
    reply = await replies.wait_reply(command)
    assert reply.outcome is Outcome.FAILED
    assert reply.error is not None
    assert reply.error.code == "no_responders"


async def test_malformed_commands_get_bad_request_and_the_service_keeps_working(
    nats_server: NatsServer, raw: Client, transport: NatsTransport, replies: ReplyCollector
) -> None:
    payments = Payments()
    good_headers = cmd("charge").headers()
    async with payments.participant.serving(nats_server.url) as server:
        cases: list[tuple[dict[str, str] | None, bytes, str]] = [
            (None, b"{}", "missing headers"),
            ({"Saga-Id": "s"}, b"{}", "missing headers"),
            (good_headers, b"not json", "not valid JSON"),
            (good_headers, b"[1, 2]", "JSON object"),
            ({**good_headers, "Saga-Attempt": "zero"}, b"{}", "integer"),
            (good_headers, json.dumps({"blob": "x" * 600_000}).encode(), "byte limit"),
        ]
        for headers, body, fragment in cases:
            msg = await raw.request("payments.charge", body, timeout=TIMEOUT_S, headers=headers)
            reply = Reply.decode(headers=msg.headers, body=msg.data)
            assert reply.outcome is Outcome.REJECTED, fragment
            assert reply.error is not None
            assert reply.error.code == "bad_request"
            assert fragment in reply.error.message
            assert msg.headers is not None
            assert msg.headers["Nats-Service-Error-Code"] == "400"
            assert msg.headers["Nats-Service-Error"].startswith("bad_request:")
        assert payments.handled == []
        assert server.bad_requests == len(cases)

        command = cmd("charge", amount=1)
        await transport.send(command)
        assert await replies.wait_reply(command) == Reply.succeeded({"charged": 1})


async def test_error_replies_carry_micro_error_headers(
    nats_server: NatsServer, raw: Client
) -> None:
    payments = Payments()
    async with payments.participant.serving(nats_server.url):
        refuse, flaky = cmd("refuse"), cmd("flaky")
        msg = await raw.request(
            refuse.subject, refuse.body(), timeout=TIMEOUT_S, headers=refuse.headers()
        )
        headers = msg.headers or {}
        assert headers["Nats-Service-Error-Code"] == "422"
        assert headers["Nats-Service-Error"] == "declined: card declined"
        msg = await raw.request(
            flaky.subject, flaky.body(), timeout=TIMEOUT_S, headers=flaky.headers()
        )
        assert (msg.headers or {})["Nats-Service-Error-Code"] == "500"
        charge = cmd("charge")
        msg = await raw.request(
            charge.subject, charge.body(), timeout=TIMEOUT_S, headers=charge.headers()
        )
        assert not (msg.headers or {}).get("Nats-Service-Error-Code")


async def test_the_service_is_discoverable_with_micro_requests(
    nats_server: NatsServer, raw: Client
) -> None:
    payments = Payments()
    async with payments.participant.serving(nats_server.url) as server:
        ping = json.loads((await raw.request("$SRV.PING", b"", timeout=TIMEOUT_S)).data)
        assert ping["name"] == "payments"
        assert ping["id"] == server.service_id

        info = json.loads((await raw.request("$SRV.INFO.payments", b"", timeout=TIMEOUT_S)).data)
        assert info["type"] == "io.nats.micro.v1.info_response"
        assert info["version"] == "1.2.3"
        assert info["description"] == "test payments"
        endpoints = {e["name"]: e for e in info["endpoints"]}
        assert set(endpoints) == {"charge", "refuse", "flaky"}
        assert endpoints["charge"]["subject"] == "payments.charge"
        assert endpoints["charge"]["queue_group"] == "payments"

        charge = cmd("charge")
        await raw.request(
            charge.subject, charge.body(), timeout=TIMEOUT_S, headers=charge.headers()
        )
        stats = json.loads((await raw.request("$SRV.STATS.payments", b"", timeout=TIMEOUT_S)).data)
        by_name = {e["name"]: e for e in stats["endpoints"]}
        assert by_name["charge"]["num_requests"] == 1
        assert by_name["charge"]["data"] == {"succeeded": 1}


async def test_both_sides_reconnect_after_the_broker_restarts(
    nats_server: NatsServer, transport: NatsTransport, replies: ReplyCollector
) -> None:
    payments = Payments()
    async with payments.participant.serving(
        nats_server.url, connect_options={"reconnect_time_wait": 0.2}
    ):
        before = cmd("charge", "before")
        await transport.send(before)
        assert (await replies.wait_reply(before)).outcome is Outcome.SUCCEEDED

        nats_server.kill()
        await nats_server.restart()

        # As the coordinator would: retry (new attempts) until the participant answers.
        async with asyncio.timeout(TIMEOUT_S):
            attempt = 0
            while True:
                attempt += 1
                after = cmd("charge", "after", attempt=attempt, amount=7)
                await transport.send(after)
                reply = await replies.wait_reply(after)
                if reply.outcome is Outcome.SUCCEEDED:
                    break
                assert reply.error is not None
                assert reply.error.code == "no_responders"
                await asyncio.sleep(0.2)
        assert reply == Reply.succeeded({"charged": 7})
        assert payments.handled == ["before", "after"]


async def test_serving_an_existing_client_leaves_it_open(
    nats_server: NatsServer, raw: Client
) -> None:
    payments = Payments()
    server = await payments.participant.serve(raw)
    command = cmd("charge", amount=3)
    msg = await raw.request(
        command.subject, command.body(), timeout=TIMEOUT_S, headers=command.headers()
    )
    assert Reply.decode(headers=msg.headers, body=msg.data) == Reply.succeeded({"charged": 3})
    await server.stop()
    await server.stop()
    assert raw.is_connected
    with pytest.raises(nats.errors.NoRespondersError):
        await raw.request(command.subject, command.body(), timeout=TIMEOUT_S)


async def test_stop_waits_for_requests_in_flight(nats_server: NatsServer, raw: Client) -> None:
    participant = Participant("slow", max_concurrency=4)
    started, release = asyncio.Event(), asyncio.Event()

    @participant.command("work")
    async def work(ctx: CommandContext, request: JsonObject) -> JsonObject:
        started.set()
        await release.wait()
        return {"done": True}

    server = await participant.serve(nats_server.url)
    command = Command(**{**cmd("work").__dict__, "service": "slow"})
    pending = asyncio.create_task(
        raw.request(command.subject, command.body(), timeout=TIMEOUT_S, headers=command.headers())
    )
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done(), "stop waits for the handler"
    assert server.in_flight == 1
    release.set()
    await stopping
    msg = await pending
    assert Reply.decode(headers=msg.headers, body=msg.data) == Reply.succeeded({"done": True})


async def test_a_participant_without_commands_cannot_serve(nats_server: NatsServer) -> None:
    with pytest.raises(DefinitionError, match="no commands"):
        await Participant("empty").serve(nats_server.url)
