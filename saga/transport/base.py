"""The Transport port: send commands to participants, hand their replies back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from saga.protocol import Command, Direction, Reply
from saga.transport.signals import SignalAnswer, SignalRequest
from saga.transport.starts import StartAnswer, StartRequest

ReplyHandler = Callable[[Command, Reply], Awaitable[None]]
"""Called with the command an arriving reply answers, and the reply. Transports await it for
one reply at a time, in arrival order: it should return promptly and hand long work to a task
(the coordinator's does)."""

StartHandler = Callable[[StartRequest], Awaitable[StartAnswer]]
"""Answers one saga start that arrived over the transport (the coordinator's calls its
``start``). It must not raise: every refusal is a StartRefusal. Transports may await several
at once."""

SignalHandler = Callable[[SignalRequest], Awaitable[SignalAnswer]]
"""Answers one outside event that arrived over the transport (the coordinator's calls its
``signal``). It must not raise: every refusal is a SignalRefusal. Transports may await several
at once."""

CompletionHandler = Callable[[str, str, Direction], Awaitable[None]]
"""Called with (saga id, step, direction) when a participant announces that it completed (or
heartbeated) an accepted command (``saga.protocol.COMPLETIONS_SUBJECT``). Transports await it
for one announcement at a time: it should return promptly. An announcement may be lost,
repeated or forged: it only says "ask again", never what the outcome was."""


class Transport(ABC):
    """Commands out, replies in. Implementations: NatsTransport, InMemoryTransport.

    The transport does no timing of its own: step timeouts are durable and live in the
    coordinator. It may deliver a reply more than once, late, or never.
    """

    @abstractmethod
    async def open(self, on_reply: ReplyHandler) -> None:
        """Connect and start delivering replies to ``on_reply``."""

    @abstractmethod
    async def send(self, command: Command) -> None:
        """Send one command without waiting for its reply; raises TransportError."""

    @abstractmethod
    async def close(self) -> None:
        """Stop delivering replies and disconnect. Idempotent."""

    async def serve_starts(self, handler: StartHandler) -> None:
        """Start answering saga starts that arrive over this transport with ``handler``;
        after ``open``. This default takes no starts (a transport without a start subject).
        Raises TransportError if the transport cannot begin to serve them."""
        del handler

    async def stop_starts(self) -> None:
        """Stop taking starts and wait for those being answered. Idempotent; ``close`` does
        it too. The default has none to stop."""
        return None

    async def serve_signals(self, handler: SignalHandler) -> None:
        """Start answering outside events that arrive over this transport with ``handler``;
        after ``open``. This default takes none. Raises TransportError if the transport
        cannot begin to serve them."""
        del handler

    async def stop_signals(self) -> None:
        """Stop taking outside events and wait for those being answered. Idempotent;
        ``close`` does it too. The default has none to stop."""
        return None

    async def serve_completions(self, handler: CompletionHandler) -> None:
        """Start handing participants' completion announcements to ``handler``; after
        ``open``. Every coordinator hears every announcement (no queue group). This default
        hears none: accepted commands are then only polled. Raises TransportError if the
        transport cannot subscribe."""
        del handler
