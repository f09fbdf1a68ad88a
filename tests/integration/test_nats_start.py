"""Starting sagas over NATS (``saga.start``) with a real nats-server and real logs.

Two coordinators on one PostgreSQL share the starts (a queue group) and their idempotency (the
log); malformed requests are refused with a clear error and write nothing; serving survives a
NATS restart; the documented permissions let a coordinator serve starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from saga import Coordinator, NatsTransport, SagaStatus, SqlSagaLog
from saga.client import StartReply, start_saga
from saga.errors import InvalidStartError, SagaConflictError, TransportError, UnknownSagaError
from saga.log.base import SagaQuery
from saga.protocol import MAX_PAYLOAD_BYTES
from saga.transport.nats_server import NatsServer
from saga.transport.security import NatsSecurity
from saga.transport.starts import START_SUBJECT
from tests.integration.crash_sagas import ORDER
from tests.integration.services import CountingServices

pytestmark = [pytest.mark.nats, pytest.mark.timeout(180)]

STARTS = 50
TIMEOUT_S = 30.0
DOCS_CONFIG = Path(__file__).parents[2] / "docs" / "nats-permissions.conf"


@pytest.fixture
async def services(nats_server: NatsServer) -> AsyncIterator[CountingServices]:
    served = CountingServices()
    await served.serve(nats_server.url)
    yield served
    await served.stop()


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def sagas_in(log: SqlSagaLog) -> list[str]:
    page = await log.find(SagaQuery(limit=1000))
    return sorted(record.saga_id for record in page.sagas)


async def all_finished(log: SqlSagaLog, count: int) -> None:
    async with asyncio.timeout(TIMEOUT_S * 2):
        while True:
            page = await log.find(SagaQuery(statuses=[SagaStatus.COMPLETED], limit=1000))
            if len(page.sagas) >= count:
                return
            await asyncio.sleep(0.1)


@pytest.mark.postgres
async def test_starts_are_shared_by_two_coordinators_and_idempotent_across_them(
    nats_server: NatsServer,
    postgres_url: str,
    services: CountingServices,
    client: Client,
) -> None:
    log = SqlSagaLog(postgres_url)
    other_log = SqlSagaLog(postgres_url)  # another process's view of the same database
    async with (
        Coordinator(log, NatsTransport(nats_server.url), sagas=[ORDER], name="a") as a,
        Coordinator(other_log, NatsTransport(nats_server.url), sagas=[ORDER], name="b") as b,
    ):
        ids = [f"order-{i}" for i in range(STARTS)]
        firsts = await asyncio.gather(
            *(start_saga(client, "crash_order", {"i": i}, saga_id=ids[i]) for i in range(STARTS))
        )
        assert [reply.saga_id for reply in firsts] == ids
        assert all(reply.created for reply in firsts)
        assert all(reply.name == "crash_order" and reply.version == 1 for reply in firsts)
        # Each start was answered (and its saga created, so owned) by one of the two.
        answered = Counter(reply.owner for reply in firsts)
        assert set(answered) == {a.coordinator_id, b.coordinator_id}, answered

        # The same starts again, answered by either coordinator: the same sagas, none new.
        repeats = await asyncio.gather(
            *(start_saga(client, ORDER, {"i": i}, saga_id=ids[i]) for i in range(STARTS))
        )
        assert [(reply.saga_id, reply.created) for reply in repeats] == [
            (saga_id, False) for saga_id in ids
        ]
        assert await sagas_in(log) == sorted(ids)

        with pytest.raises(SagaConflictError) as conflict:
            await start_saga(client, "crash_order", {"i": -1}, saga_id=ids[0])
        assert conflict.value.saga_id == ids[0]
        assert conflict.value.differences == ("input",)

        await all_finished(log, STARTS)
        # Once finished, a repeat still names the saga and its status.
        late = await start_saga(client, "crash_order", {"i": 7}, saga_id=ids[7])
        assert (late.created, late.status) == (False, "completed")
        assert await sagas_in(log) == sorted(ids)
    # Every step of every saga ran once: no start was driven twice.
    assert len(services.runs) == 3 * STARTS
    assert set(services.runs.values()) == {1}


async def ask_raw(nc: Client, body: bytes) -> dict[str, object]:
    msg = await nc.request(START_SUBJECT, body, timeout=TIMEOUT_S)
    answer = json.loads(msg.data)
    assert isinstance(answer, dict)
    return answer


async def test_malformed_starts_are_refused_clearly_and_write_nothing(
    nats_server: NatsServer, sqlite_url: str, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    log = SqlSagaLog(sqlite_url)
    async with Coordinator(log, NatsTransport(nats_server.url), sagas=[ORDER]):
        secret = "do-not-log-this-value"
        cases = [
            (b"{not json", "invalid", "request", "not valid JSON"),
            (b"[1, 2]", "invalid", "request", "must be a JSON object, not list"),
            (b"", "invalid", "saga", "'saga' is missing"),
            (b'{"saga": "crash_order", "extra": 1}', "invalid", "request", "unknown fields"),
            (b'{"saga": "crash_order", "input": null}', "invalid", "input", "not null"),
            (b'{"saga": "crash_order", "input": ["' + secret.encode() + b'"]}', "invalid", "input",
             "must be a JSON object, not list"),
            (b'{"saga": "crash_order", "saga_id": "bad id"}', "invalid", "saga_id", "saga ids are"),
            (b'{"saga": "crash_order", "version": "1"}', "invalid", "version", "integer"),
            (b'{"saga": "nope"}', "unknown_saga", None, "no saga named 'nope'"),
            (b'{"saga": "crash_order", "version": 2}', "unknown_saga", None, "version 2"),
            (b'{"saga": "crash_order", "input": {"x": "' + b"a" * (MAX_PAYLOAD_BYTES + 8192)
             + b'"}}', "invalid", "request", "byte limit"),
            (b'{"saga": "crash_order", "input": {"x": "' + b"a" * (MAX_PAYLOAD_BYTES + 10)
             + b'"}}', "invalid", "input", f"over the {MAX_PAYLOAD_BYTES} byte limit"),
        ]  # fmt: skip
        for body, code, argument, words in cases:
            answer = await ask_raw(client, body)
            error = answer.get("error")
            assert isinstance(error, dict), (body[:80], answer)
            assert error["code"] == code, (body[:80], answer)
            assert error.get("argument") == argument, (body[:80], answer)
            assert words in error["message"], (body[:80], answer)
        # Still serving after all that: a good start goes through.
        good = await start_saga(client, "crash_order", {"ok": True}, saga_id="good-1")
        assert good.created
        assert await sagas_in(log) == ["good-1"]
    refusals = [r for r in caplog.records if "refused a saga start" in r.getMessage()]
    assert len(refusals) == len(cases)
    assert all(secret not in r.getMessage() for r in caplog.records)


async def test_the_client_raises_the_coordinators_errors(
    nats_server: NatsServer, sqlite_url: str, client: Client
) -> None:
    async with Coordinator(SqlSagaLog(sqlite_url), NatsTransport(nats_server.url), sagas=[ORDER]):
        with pytest.raises(InvalidStartError) as invalid:
            await start_saga(client, "crash_order", {}, saga_id="no/slash")
        assert invalid.value.argument == "saga_id"
        with pytest.raises(UnknownSagaError):
            await start_saga(client, "nope", {})
        # URLs instead of a client: one connection for the call.
        reply = await start_saga(nats_server.url, "crash_order", {"n": 1})
        assert isinstance(reply, StartReply)
        assert reply.created
        assert len(reply.saga_id) == 32  # chosen by the client, so a retry can repeat it


async def test_without_a_coordinator_the_client_gets_a_transport_error_with_the_id(
    nats_server: NatsServer, client: Client
) -> None:
    with pytest.raises(TransportError, match=r"no coordinator serves saga\.start") as caught:
        await start_saga(client, "crash_order", {}, saga_id="lonely-1", timeout_s=2)
    assert caught.value.saga_id == "lonely-1"


async def test_starts_are_served_again_after_nats_restarts(
    nats_server: NatsServer, sqlite_url: str
) -> None:
    # No participants: what the sagas do after their start does not matter here.
    log = SqlSagaLog(sqlite_url)
    transport = NatsTransport(nats_server.url, connect_options={"reconnect_time_wait": 0.2})
    async with Coordinator(log, transport, sagas=[ORDER]):
        assert (await start_saga(nats_server.url, ORDER, {}, saga_id="before")).created
        nats_server.kill()
        await nats_server.restart()
        # Repeat the same start until a coordinator answers: whichever try got through, it
        # is one saga.
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                try:
                    reply = await start_saga(nats_server.url, ORDER, {}, saga_id="after",
                                             timeout_s=2)  # fmt: skip
                    break
                except TransportError:
                    await asyncio.sleep(0.2)
        assert reply.saga_id == "after"
        assert transport.reconnects >= 1
        assert await sagas_in(log) == ["after", "before"]


async def test_the_documented_permissions_let_a_coordinator_serve_starts(
    sqlite_url: str,
) -> None:
    users = ("coordinator", "orders", "payments", "inventory", "shipping")
    variables = "".join(f'SAGA_{u.upper()}_PASSWORD: "pw-{u}"\n' for u in users)
    login = NatsSecurity(user="saga-coordinator", password="pw-coordinator")
    async with NatsServer(jetstream=False, config=variables + DOCS_CONFIG.read_text()) as server:
        transport = NatsTransport(server.url, security=login)
        async with Coordinator(SqlSagaLog(sqlite_url), transport, sagas=[ORDER]):
            reply = await start_saga(server.url, ORDER, {}, saga_id="allowed", security=login)
            assert reply.created
            assert transport.permission_violations == 0
