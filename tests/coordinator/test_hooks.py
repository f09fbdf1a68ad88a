"""Test seams and start validation: explicit hooks (no failpoint read from the environment) and
one place that checks a start's saga id, input and version."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from saga import Coordinator, ProtocolError, SagaStatus, UnknownSagaError
from saga.coordinator import CoordinatorHooks
from saga.errors import InvalidStartError
from saga.events import EventType, NewEvent
from saga.protocol import Command
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.coordinator.shop import Shop, order_saga

REPO = Path(__file__).resolve().parents[2]


class Recorder(CoordinatorHooks):
    """Writes down each hook call, in order, as (hook, step, direction or event type)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def on_reply(self, command: Command) -> None:
        self.calls.append(("on_reply", command.step, command.direction.value))

    def after_record(self, events: Sequence[NewEvent]) -> None:
        for event in events:
            self.calls.append(("after_record", event.data.get("step", ""), event.type.value))

    def after_send(self, command: Command) -> None:
        self.calls.append(("after_send", command.step, command.direction.value))


async def test_hooks_are_called_in_order_write_ahead_of_each_send() -> None:
    shop, log, hooks = Shop(), InMemorySagaLog(), Recorder()
    saga = order_saga()
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[saga], hooks=hooks) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {"sku": "A"}), 10)
    assert result.status is SagaStatus.COMPLETED
    first = hooks.calls[:4]
    assert first == [
        ("after_record", "create", "step_sent"),  # recorded before it was sent
        ("after_send", "create", "forward"),
        ("on_reply", "create", "forward"),
        ("after_record", "create", "step_succeeded"),
    ]
    sends = [call for call in hooks.calls if call[0] == "after_send"]
    assert [step for _, step, _ in sends] == ["create", "credit", "stock"]
    assert hooks.calls[-1] == ("after_record", "", EventType.SAGA_COMPLETED.value)


async def test_the_default_hooks_do_nothing() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[saga], hooks=CoordinatorHooks()) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {"sku": "A"}), 10)
    assert result.status is SagaStatus.COMPLETED


def test_the_library_reads_no_failpoint_from_the_environment() -> None:
    """A failpoint variable left in a production environment changes nothing (it used to be
    parsed when saga.coordinator was imported, and a bad one stopped the process)."""
    env = {**os.environ, "SAGA_FAILPOINT": "after_send@create"}
    code = (
        "import saga.coordinator, saga.cli, sys;"
        "sys.exit(1 if 'saga.coordinator.failpoints' in sys.modules else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    env["SAGA_FAILPOINT"] = "not a failpoint"
    done = subprocess.run(
        [sys.executable, "-c", "import saga.coordinator"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("kwargs", "argument", "message"),
    [
        ({"input": ["a"]}, "input", "saga input must be a JSON object, not list"),
        ({"input": {}, "saga_id": "a/b"}, "saga_id", "saga_id 'a/b' is invalid: saga ids are"),
        ({"input": {}, "saga_id": 7}, "saga_id", "saga_id 7 is invalid"),
        ({"input": {}, "version": "1"}, "version", "version must be an integer, not str"),
        ({"input": {}, "version": True}, "version", "version must be an integer, not bool"),
        ({"input": {"at": object()}}, "input", "not JSON-serialisable"),
    ],
)
async def test_a_bad_start_names_its_argument_and_writes_nothing(
    kwargs: dict[str, object], argument: str, message: str
) -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        with pytest.raises(InvalidStartError, match=message) as caught:
            await coord.start(saga.name, **kwargs)  # type: ignore[arg-type]
        assert (await log.find()).sagas == []
    assert isinstance(caught.value, ProtocolError)  # what start raised before, still caught
    assert caught.value.argument == argument
    assert caught.value.limit_bytes is None
    assert shop.order == []


async def test_an_oversize_start_says_by_how_much_and_writes_nothing() -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    transport = InMemoryTransport(shop.participants)
    async with Coordinator(log, transport, sagas=[saga], max_input_bytes=100) as coord:
        with pytest.raises(InvalidStartError, match="over the 100 byte limit") as caught:
            await coord.start(saga, {"blob": "x" * 200})
        assert (await log.find()).sagas == []
        with pytest.raises(UnknownSagaError, match="version 9"):
            await coord.start(saga.name, {}, version=9)
    assert caught.value.argument == "input"
    assert caught.value.size_bytes == len('{"blob":""}') + 200
    assert caught.value.limit_bytes == 100
