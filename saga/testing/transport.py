"""InMemoryTransport: delivers commands to Participant objects in this process, with faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

from saga.errors import TransportError
from saga.participant import Participant
from saga.protocol import Command, Reply
from saga.transport.base import ReplyHandler, Transport


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


Interceptor = Callable[[Command], Fault]


class InMemoryTransport(Transport):
    """A Transport to in-process participants: the same SDK semantics as over NATS.

    ``intercept`` chooses a Fault for each command (default: deliver). ``sent`` records every
    command in order, so tests can check what the coordinator sent.
    """

    def __init__(
        self, participants: Iterable[Participant], *, intercept: Interceptor | None = None
    ) -> None:
        self._participants = {p.name: p for p in participants}
        self.intercept: Interceptor = intercept or (lambda _command: Fault.DELIVER)
        self.sent: list[Command] = []
        self._on_reply: ReplyHandler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self, on_reply: ReplyHandler) -> None:
        self._on_reply = on_reply

    async def send(self, command: Command) -> None:
        if self._on_reply is None:
            raise TransportError("in-memory transport is not open")
        command.body()  # the same size and JSON checks as on the wire
        self.sent.append(command)
        fault = self.intercept(command)
        if fault is Fault.LOSE_COMMAND:
            return
        task = asyncio.create_task(self._deliver(command, fault))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, command: Command, fault: Fault) -> None:
        participant = self._participants.get(command.service)
        if participant is None or command.command not in participant.commands:
            reply = Reply.failed("no_responders", f"nobody serves {command.subject}")
        else:
            reply = await participant.handle(command)
            if fault is Fault.DUPLICATE_COMMAND:
                reply = await participant.handle(command)
        if fault is Fault.LOSE_REPLY or self._on_reply is None:
            return
        await self._on_reply(command, reply)
        if fault is Fault.DUPLICATE_REPLY:
            await self._on_reply(command, reply)

    async def settle(self) -> None:
        """Wait until every delivery in progress has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self._on_reply = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
