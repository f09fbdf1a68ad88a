"""Starts handed to a coordinator by its transport (saga.start): in-memory parts.

Two coordinators share one in-memory log, as two processes share PostgreSQL; the handler each
gives its transport answers with Coordinator.start's idempotency and refusals, never raising.
tests/integration/test_nats_start.py runs the same over a real nats-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from saga import Coordinator, Participant, Saga, SagaStatus, Step
from saga.errors import LogError
from saga.log.base import NewSaga, SagaRecord
from saga.participant import CommandContext
from saga.testing import InMemorySagaLog, InMemoryTransport
from saga.transport.base import StartHandler
from saga.transport.starts import StartAnswer, StartRefusal, StartReply, StartRequest

TIMEOUT_S = 30.0

SAGA = Saga(
    name="greet",
    steps=(Step(name="hello", service="greeter", command="hello", compensation="bye"),),
)


def greeter() -> Participant:
    participant = Participant("greeter")

    @participant.command("hello")
    async def hello(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        return {"said": "hello"}

    @participant.command("bye")
    async def bye(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        return {}

    return participant


class StartsTransport(InMemoryTransport):
    """An in-memory transport that keeps the start handler it is given, as NATS would serve it."""

    def __init__(self) -> None:
        super().__init__([greeter()])
        self.handler: StartHandler | None = None
        self.calls: list[str] = []

    async def serve_starts(self, handler: StartHandler) -> None:
        self.calls.append("serve_starts")
        self.handler = handler

    async def stop_starts(self) -> None:
        self.calls.append("stop_starts")
        self.handler = None

    async def close(self) -> None:
        self.calls.append("close")
        await super().close()

    async def ask(self, request: StartRequest) -> StartAnswer:
        assert self.handler is not None, "the coordinator serves no starts"
        return await asyncio.wait_for(self.handler(request), TIMEOUT_S)


class FlakyLog(InMemorySagaLog):
    """An in-memory log whose creates fail while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def create_many(self, sagas: Sequence[NewSaga]) -> list[tuple[SagaRecord, bool]]:
        if self.down:
            raise LogError("the database is down")
        return await super().create_many(sagas)


async def test_a_start_over_the_transport_is_a_coordinator_start() -> None:
    log, transport = InMemorySagaLog(), StartsTransport()
    async with Coordinator(log, transport, sagas=[SAGA], name="a") as coordinator:
        assert transport.calls == ["serve_starts"]
        answer = await transport.ask(
            StartRequest(saga="greet", input={"to": "carol"}, saga_id="g-1")
        )
        assert isinstance(answer, StartReply)
        assert (answer.saga_id, answer.created, answer.name, answer.version) == (
            "g-1",
            True,
            "greet",
            1,
        )
        assert answer.owner == coordinator.coordinator_id
        assert answer.status == SagaStatus.RUNNING.value
        result = await asyncio.wait_for(coordinator.wait("g-1"), TIMEOUT_S)
        assert result.status is SagaStatus.COMPLETED
        record = await log.get("g-1")
        assert record is not None
        assert record.input == {"to": "carol"}
        # No id given: the coordinator picks one, as Coordinator.start does.
        fresh = await transport.ask(StartRequest(saga="greet"))
        assert isinstance(fresh, StartReply)
        assert fresh.created
        assert await log.get(fresh.saga_id) is not None
    # Starts stop first, while the transport can still send what they started.
    assert transport.calls == ["serve_starts", "stop_starts", "close"]


async def test_a_repeat_on_another_coordinator_finds_the_same_saga() -> None:
    log = InMemorySagaLog()
    a_transport, b_transport = StartsTransport(), StartsTransport()
    async with (
        Coordinator(log, a_transport, sagas=[SAGA], name="a") as a,
        Coordinator(log, b_transport, sagas=[SAGA], name="b"),
    ):
        request = StartRequest(saga="greet", input={"to": "dan"}, saga_id="g-2")
        first = await a_transport.ask(request)
        again = await b_transport.ask(request)
        assert isinstance(first, StartReply)
        assert isinstance(again, StartReply)
        assert first.created
        assert not again.created
        assert again.saga_id == first.saga_id == "g-2"
        await asyncio.wait_for(a.wait("g-2"), TIMEOUT_S)
        done = await b_transport.ask(request)
        assert isinstance(done, StartReply)
        assert (done.created, done.status, done.owner) == (False, "completed", a.coordinator_id)
        assert len((await log.find()).sagas) == 1


async def test_refusals_are_answers_and_write_nothing() -> None:
    log, transport = InMemorySagaLog(), StartsTransport()
    async with Coordinator(log, transport, sagas=[SAGA], name="a", max_input_bytes=1000):
        first = await transport.ask(StartRequest(saga="greet", input={"n": 1}, saga_id="g-3"))
        assert isinstance(first, StartReply)

        conflict = await transport.ask(StartRequest(saga="greet", input={"n": 2}, saga_id="g-3"))
        assert isinstance(conflict, StartRefusal)
        assert conflict.code == "conflict"
        assert conflict.details == {"saga_id": "g-3", "differences": ["input"]}

        refusals = [
            (StartRequest(saga="nope"), "unknown_saga", None),
            (StartRequest(saga="greet", version=9), "unknown_saga", None),
            (StartRequest(saga="greet", saga_id="has space"), "invalid", "saga_id"),
            (StartRequest(saga="greet", saga_id=12), "invalid", "saga_id"),
            (StartRequest(saga="greet", input=[1, 2]), "invalid", "input"),
            (StartRequest(saga="greet", version="1"), "invalid", "version"),
            (StartRequest(saga="greet", input={"x": "a" * 2000}), "invalid", "input"),
        ]
        for request, code, argument in refusals:
            answer = await transport.ask(request)
            assert isinstance(answer, StartRefusal), request
            assert answer.code == code, (request, answer)
            assert answer.details.get("argument") == argument, (request, answer)
        too_big = await transport.ask(StartRequest(saga="greet", input={"x": "a" * 2000}))
        assert isinstance(too_big, StartRefusal)
        assert too_big.details["limit_bytes"] == 1000
        assert [record.saga_id for record in (await log.find()).sagas] == ["g-3"]


async def test_a_log_that_cannot_write_is_unavailable_and_the_same_start_works_later() -> None:
    log, transport = FlakyLog(), StartsTransport()
    async with Coordinator(log, transport, sagas=[SAGA], name="a"):
        request = StartRequest(saga="greet", input={"n": 1}, saga_id="g-4")
        log.down = True
        refused = await transport.ask(request)
        assert isinstance(refused, StartRefusal)
        assert refused.code == "unavailable"
        assert "database is down" in refused.message
        log.down = False
        accepted = await transport.ask(request)
        assert isinstance(accepted, StartReply)
        assert accepted.created
