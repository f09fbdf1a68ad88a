"""InMemoryTransport: each fault does what it says, and every delivery is recorded."""

from __future__ import annotations

from typing import Any

import pytest

from saga import CommandContext, Participant
from saga.protocol import Command, Direction, Outcome, Reply
from saga.testing import Fault, InMemoryTransport
from saga.testing.transport import INJECTED_FAILURE, INJECTED_REJECTION, current_delivery


def shop() -> tuple[Participant, list[str]]:
    ran: list[str] = []
    participant = Participant("shop")

    @participant.command("buy")
    async def buy(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        delivery = current_delivery()
        assert delivery is not None
        ran.append(f"{ctx.direction.value}:{delivery.index}")
        return {"ok": True}

    @participant.command("refund")
    async def refund(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        ran.append("refund")
        return {}

    return participant, ran


def command(direction: Direction = Direction.FORWARD, step: str = "buy") -> Command:
    return Command(
        saga_id="s1",
        saga_name="order",
        step=step,
        direction=direction,
        attempt=1,
        service="shop",
        command="buy" if direction is Direction.FORWARD else "refund",
    )


async def send(fault: Fault, cmd: Command | None = None) -> tuple[list[Reply], list[str], Any]:
    participant, ran = shop()
    replies: list[Reply] = []

    async def on_reply(_command: Command, reply: Reply) -> None:
        replies.append(reply)

    transport = InMemoryTransport([participant], intercept=lambda _c: fault)
    await transport.open(on_reply)
    await transport.send(cmd or command())
    await transport.settle()
    await transport.close()
    return replies, ran, transport.deliveries[0]


async def test_deliver_runs_the_handler_and_passes_the_reply_on() -> None:
    replies, ran, delivery = await send(Fault.DELIVER)
    assert [r.outcome for r in replies] == [Outcome.SUCCEEDED]
    assert ran == ["forward:0"]
    assert delivery.replies == replies
    assert delivery.passed_on == 1
    assert delivery.done


async def test_reject_says_no_without_running_the_handler() -> None:
    replies, ran, delivery = await send(Fault.REJECT)
    assert ran == []
    assert [r.outcome for r in replies] == [Outcome.REJECTED]
    assert replies[0].error is not None
    assert replies[0].error.code == INJECTED_REJECTION
    assert delivery.fault is Fault.REJECT


async def test_reject_leaves_a_compensation_alone() -> None:
    replies, _, _ = await send(Fault.REJECT, command(Direction.COMPENSATE))
    # Delivered as is: the participant never ran the step, so it fences and says done.
    assert [r.outcome for r in replies] == [Outcome.SUCCEEDED]
    assert replies[0].result == {"fenced": True}


async def test_fail_answers_a_transient_failure_without_running_the_handler() -> None:
    replies, ran, _ = await send(Fault.FAIL)
    assert ran == []
    assert [r.outcome for r in replies] == [Outcome.FAILED]
    assert replies[0].error is not None
    assert replies[0].error.code == INJECTED_FAILURE


@pytest.mark.parametrize(
    ("fault", "handled", "passed_on"),
    [
        (Fault.LOSE_COMMAND, 0, 0),
        (Fault.LOSE_REPLY, 1, 0),
        (Fault.DUPLICATE_REPLY, 1, 2),
        (Fault.DUPLICATE_COMMAND, 2, 1),
    ],
)
async def test_network_faults_are_recorded(fault: Fault, handled: int, passed_on: int) -> None:
    replies, ran, delivery = await send(fault)
    assert len(delivery.replies) == handled
    assert delivery.passed_on == passed_on
    assert len(replies) == passed_on
    assert len(ran) == min(handled, 1)  # a duplicate command is answered from the record
