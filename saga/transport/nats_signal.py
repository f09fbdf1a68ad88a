"""Outside events and completion announcements over NATS, on the coordinator's connection.

Every coordinator subscribes to ``saga.event`` in the queue group ``saga-coordinators``, so
NATS hands each event request to one of them, which answers once to its reply subject
(idempotency across coordinators comes from the shared log, as for ``saga.start``). Every
coordinator also subscribes to ``saga.completions`` without a queue group: each hears every
announcement, and the one that owns the saga acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from saga.errors import ProtocolError, TransportError
from saga.protocol import COMPLETIONS_SUBJECT, MAX_PAYLOAD_BYTES
from saga.transport.base import CompletionHandler, SignalHandler
from saga.transport.completions import Completion
from saga.transport.signals import (
    EVENT_QUEUE,
    EVENT_SUBJECT,
    INTERNAL,
    SignalAnswer,
    SignalRefusal,
    SignalReply,
    SignalRequest,
    decode_answer,
    encode_answer,
)

logger = logging.getLogger(__name__)

MAX_EVENTS_IN_FLIGHT = 256
"""Event requests a coordinator answers at once; more wait in the subscription's queue."""
DEFAULT_EVENT_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 10.0


async def _stop(nc: Client, subscription: Subscription | None, subject: str) -> None:
    """Drain ``subscription`` (messages received are handled), bounded in time."""
    if subscription is None or nc.is_closed:
        return
    try:
        if nc.is_connected:
            # nats-py 2.16 leaves Subscription.drain unannotated.
            draining = subscription.drain()  # type: ignore[no-untyped-call]
            await asyncio.wait_for(draining, _STOP_TIMEOUT_S)
        else:  # a drain would wait for the server; the UNSUB goes out on reconnect
            await subscription.unsubscribe()
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        logger.warning("draining the %s subscription failed: %s", subject, exc)


class NatsSignalServer:
    """Answers ``saga.event`` requests on one connection, several at a time, never raising."""

    def __init__(
        self,
        nc: Client,
        handler: SignalHandler,
        *,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        max_in_flight: int = MAX_EVENTS_IN_FLIGHT,
    ) -> None:
        self._nc = nc
        self._handler = handler
        self._max_payload_bytes = max_payload_bytes
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None
        self.answered = 0
        """Event requests answered (taken or refused) since ``start``."""
        self.refused = 0
        """Of those, the refusals (each logged in one line, here or by the handler)."""

    async def start(self) -> None:
        """Subscribe in the coordinators' queue group; TransportError if that fails."""
        try:
            self._subscription = await self._nc.subscribe(
                EVENT_SUBJECT, queue=EVENT_QUEUE, cb=self._on_request
            )
        except (OSError, nats.errors.Error) as exc:
            raise TransportError(f"cannot subscribe to {EVENT_SUBJECT}: {exc}") from exc

    async def stop(self) -> None:
        """Stop taking requests (those already received are answered), then wait for the
        answers being made; the rest are cancelled after 10 s. Idempotent."""
        subscription, self._subscription = self._subscription, None
        await _stop(self._nc, subscription, EVENT_SUBJECT)
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=_STOP_TIMEOUT_S)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _on_request(self, msg: Msg) -> None:
        # nats-py awaits this callback for one message at a time: hand each event to a task
        # (it waits for a log commit), a bounded number at once.
        await self._slots.acquire()
        task = asyncio.create_task(self._answer(msg), name="saga-event")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, msg: Msg) -> None:
        reply_to: str = msg.reply
        if not reply_to:
            # Nobody would hear the answer: an event must be a request, so its sender knows
            # whether it was taken (and repeats it with the same id otherwise).
            self.refused += 1
            logger.warning("ignored a message on %s without a reply subject", EVENT_SUBJECT)
            return
        answer = await self._decide(msg.data)
        self.answered += 1
        if isinstance(answer, SignalRefusal):
            self.refused += 1
        try:
            await self._nc.publish(reply_to, encode_answer(answer))
        except (OSError, ProtocolError, nats.errors.Error) as exc:
            logger.warning("could not answer an event: %s", exc)

    async def _decide(self, data: bytes) -> SignalAnswer:
        try:
            request = SignalRequest.decode(data, self._max_payload_bytes)
        except ProtocolError as exc:
            refusal = SignalRefusal.of(exc)
            # One line, without the request's contents (the message names the field at fault).
            logger.info("refused an event from nats (%s): %s", refusal.code, refusal.message)
            return refusal
        try:
            return await self._handler(request)
        except Exception:  # the handler must not raise; never let it end the loop
            logger.exception("answering an event failed")
            return SignalRefusal(
                code=INTERNAL,
                message="the coordinator failed to answer the event (see its log)",
                details={"saga_id": request.saga_id},
            )


class NatsCompletions:
    """Hands ``saga.completions`` announcements to a handler: a plain subscription (every
    coordinator hears each one), one at a time, never raising."""

    def __init__(self, nc: Client, handler: CompletionHandler) -> None:
        self._nc = nc
        self._handler = handler
        self._subscription: Subscription | None = None
        self.received = 0
        """Announcements handed to the handler since ``start``."""
        self.malformed = 0
        """Announcements whose headers could not be read (debug-logged, dropped)."""
        self.handler_errors = 0
        """Exceptions the handler raised (logged, not re-raised)."""

    async def start(self) -> None:
        """Subscribe; TransportError if that fails."""
        try:
            self._subscription = await self._nc.subscribe(COMPLETIONS_SUBJECT, cb=self._on_message)
        except (OSError, nats.errors.Error) as exc:
            raise TransportError(f"cannot subscribe to {COMPLETIONS_SUBJECT}: {exc}") from exc

    async def stop(self) -> None:
        """Stop hearing announcements (those received are handled). Idempotent."""
        subscription, self._subscription = self._subscription, None
        await _stop(self._nc, subscription, COMPLETIONS_SUBJECT)

    async def _on_message(self, msg: Msg) -> None:
        headers: dict[str, str] | None = msg.headers
        try:
            completion = Completion.from_headers(headers)
        except ProtocolError as exc:
            # Anyone allowed to publish here may send garbage; it costs nothing, so it is not
            # worth a warning per message.
            self.malformed += 1
            logger.debug("dropping a malformed completion announcement: %s", exc.message)
            return
        self.received += 1
        try:
            await self._handler(completion.saga_id, completion.step, completion.direction)
        except Exception:
            self.handler_errors += 1
            logger.exception(
                "handling the completion of saga %s step %s (%s) failed",
                completion.saga_id, completion.step, completion.direction.value,
            )  # fmt: skip


async def request_signal(
    nc: Client, request: SignalRequest, timeout_s: float = DEFAULT_EVENT_TIMEOUT_S
) -> SignalReply:
    """Send one event request and return the coordinator's reply.

    Raises what ``Coordinator.signal`` raises for a refusal (ProtocolError, SagaNotFoundError,
    StateError; LogError when its log is down), and TransportError (with the saga id) when no
    coordinator answers in time or none serves events.
    """
    saga_id = request.saga_id
    body = request.encode()  # ProtocolError: not JSON, or over the size limit
    try:
        msg = await nc.request(EVENT_SUBJECT, body, timeout=timeout_s)
    except nats.errors.NoRespondersError as exc:
        raise TransportError(
            f"no coordinator serves {EVENT_SUBJECT}: is one running, with this NATS?",
            saga_id=saga_id,
        ) from exc
    except (TimeoutError, nats.errors.TimeoutError) as exc:
        raise TransportError(
            f"no coordinator answered the event within {timeout_s:g} s: it may have been"
            " recorded; repeat it with the same id to find out",
            saga_id=saga_id,
        ) from exc
    except (OSError, nats.errors.Error) as exc:
        raise TransportError(f"cannot send the event: {exc}", saga_id=saga_id) from exc
    answer = decode_answer(msg.data)
    if isinstance(answer, SignalRefusal):
        raise answer.error()
    return answer
