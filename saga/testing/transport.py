"""InMemoryTransport: delivers commands to Participant objects in this process, with faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from saga.errors import TransportError
from saga.participant import CommandContext, Participant
from saga.participant.context import Accepted, JsonObject
from saga.protocol import Command, Direction, Reply
from saga.transport.base import CompletionHandler, ReplyHandler, Transport

INJECTED_REJECTION = "injected_rejection"
"""The error code of a rejection made by ``Fault.REJECT``."""
INJECTED_FAILURE = "injected_failure"
"""The error code of a failure made by ``Fault.FAIL``."""
INJECTED_FAILURE_AFTER_EFFECT = "injected_failure_after_effect"
"""The message of the exception ``Fault.EFFECT_THEN_FAIL`` raises after the handler returned."""


class Fault(StrEnum):
    """What the in-memory network does to one command."""

    DELIVER = "deliver"
    LOSE_COMMAND = "lose_command"
    """The participant never sees the command (and so never replies)."""
    LOSE_REPLY = "lose_reply"
    """The participant acts, but its reply is lost."""
    DUPLICATE_REPLY = "duplicate_reply"
    """The participant's reply arrives twice."""
    DUPLICATE_COMMAND = "duplicate_command"
    """The command is delivered twice (the participant must deduplicate)."""
    REJECT = "reject"
    """A business "no" for a forward command, answered without running the handler.

    Use it only on a command the participant has never seen: a participant that acted on
    an idempotency key never says no to it afterwards. A compensation is delivered as is.
    """
    FAIL = "fail"
    """A transient failure reply (the service was down), without running the handler."""
    EFFECT_THEN_FAIL = "effect_then_fail"
    """The handler runs and takes its effect, then the attempt raises (a downstream call after
    the handler's own commit failed): the participant answers a transient failure."""


Interceptor = Callable[[Command], Fault]


@dataclass
class Delivery:
    """One command the transport was asked to send, and what became of it."""

    index: int
    """Its position in ``InMemoryTransport.deliveries``."""
    command: Command
    fault: Fault
    replies: list[Reply] = field(default_factory=list)
    """What came back: one reply per hand-over to the participant (two when duplicated)."""
    passed_on: int = 0
    """How many replies reached the coordinator."""
    handler_returned: bool = False
    """With ``Fault.EFFECT_THEN_FAIL``: the handler returned (took effect) before the raise."""
    done: bool = False


_current: ContextVar[Delivery | None] = ContextVar("saga_testing_delivery", default=None)


def current_delivery() -> Delivery | None:
    """The delivery being handled right now, seen from inside a participant (or its store)."""
    return _current.get()


class InMemoryTransport(Transport):
    """A Transport to in-process participants: the same SDK semantics as over NATS.

    ``intercept`` chooses a Fault for each command (default: deliver). ``sent`` records every
    command in order, so tests can check what the coordinator sent, and ``deliveries`` what
    became of each one. The transport can be closed and opened again (a coordinator restart).
    """

    def __init__(
        self, participants: Iterable[Participant], *, intercept: Interceptor | None = None
    ) -> None:
        self._participants = {p.name: p for p in participants}
        self.intercept: Interceptor = intercept or (lambda _command: Fault.DELIVER)
        self.sent: list[Command] = []
        self.deliveries: list[Delivery] = []
        self._on_reply: ReplyHandler | None = None
        self._on_completion: CompletionHandler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.announced: list[tuple[str, str, Direction]] = []
        """Every completion announced (saga id, step, direction), heard or not."""

    @property
    def pending(self) -> int:
        """Deliveries still in progress."""
        return len(self._tasks)

    async def open(self, on_reply: ReplyHandler) -> None:
        self._on_reply = on_reply

    async def send(self, command: Command) -> None:
        if self._on_reply is None:
            raise TransportError("in-memory transport is not open")
        command.body()  # the same size and JSON checks as on the wire
        self.sent.append(command)
        fault = self.intercept(command)
        delivery = Delivery(index=len(self.deliveries), command=command, fault=fault)
        self.deliveries.append(delivery)
        if fault is Fault.LOSE_COMMAND:
            delivery.done = True
            return
        task = asyncio.create_task(self._deliver(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        command, fault = delivery.command, delivery.fault
        try:
            if fault is Fault.REJECT and command.direction is Direction.FORWARD:
                delivery.replies.append(
                    Reply.rejected(INJECTED_REJECTION, "the test kit said no to this command")
                )
            elif fault is Fault.FAIL:
                delivery.replies.append(
                    Reply.failed(INJECTED_FAILURE, "the test kit made this command fail")
                )
            else:
                times = 2 if fault is Fault.DUPLICATE_COMMAND else 1
                for _ in range(times):
                    delivery.replies.append(await self._hand_over(delivery))
            if fault is Fault.LOSE_REPLY:
                return
            for _ in range(2 if fault is Fault.DUPLICATE_REPLY else 1):
                if self._on_reply is None:
                    return
                delivery.passed_on += 1
                await self._on_reply(command, delivery.replies[-1])
        finally:
            delivery.done = True

    async def _hand_over(self, delivery: Delivery) -> Reply:
        command = delivery.command
        participant = self._participants.get(command.service)
        if participant is None or command.command not in participant.commands:
            return Reply.failed("no_responders", f"nobody serves {command.subject}")
        token = _current.set(delivery)
        try:
            if delivery.fault is Fault.EFFECT_THEN_FAIL:
                return await _handle_then_fail(participant, delivery)
            return await participant.handle(command)
        finally:
            _current.reset(token)

    async def serve_completions(self, handler: CompletionHandler) -> None:
        """Hand completion announcements (``announce_completion``) to ``handler``."""
        if self._on_reply is None:
            raise TransportError("in-memory transport is not open")
        self._on_completion = handler

    async def announce_completion(
        self, saga_id: str, step: str, direction: Direction = Direction.FORWARD
    ) -> bool:
        """What a participant publishes on ``saga.completions`` after it completed (or
        heartbeated) an accepted command: the coordinator serving completions hears it now.

        Returns whether a coordinator heard it (False while closed or not serving, as an
        announcement over NATS with no coordinator up is lost: accepted commands are polled).
        Exceptions from the coordinator's handler propagate, so a test sees its bugs.
        """
        self.announced.append((saga_id, step, direction))
        handler = self._on_completion
        if handler is None:
            return False
        await handler(saga_id, step, direction)
        return True

    async def settle(self) -> None:
        """Wait until every delivery in progress has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self._on_reply = None
        self._on_completion = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _handle_then_fail(participant: Participant, delivery: Delivery) -> Reply:
    """``participant.handle`` with this command's handler raising right after it returns."""
    name = delivery.command.command
    # The participant's own handler table: swapped for this one delivery, so the SDK's real
    # handling of a raise is what is tested. Other commands of a graph may reach the same
    # handler meanwhile (branches in flight at once): they run the original.
    original = participant._handlers[name]

    async def effect_then_fail(
        ctx: CommandContext, request: JsonObject
    ) -> JsonObject | Accepted | None:
        if current_delivery() is not delivery:
            return await original(ctx, request)
        await original(ctx, request)
        delivery.handler_returned = True
        raise RuntimeError(INJECTED_FAILURE_AFTER_EFFECT)

    participant._handlers[name] = effect_then_fail
    try:
        return await participant.handle(delivery.command)
    finally:
        participant._handlers[name] = original
