"""The Transport port: send commands to participants, hand their replies back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from saga.protocol import Command, Reply

ReplyHandler = Callable[[Command, Reply], Awaitable[None]]
"""Called with the command an arriving reply answers, and the reply. Transports await it for
one reply at a time, in arrival order: it should return promptly and hand long work to a task
(the coordinator's does)."""


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
