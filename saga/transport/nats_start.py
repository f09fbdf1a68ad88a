"""Saga starts over NATS: a coordinator's ``saga.start`` queue subscription, and the client call.

Every coordinator subscribes to ``saga.start`` in the queue group ``saga-coordinators``, so
NATS hands each request to one of them; each answers once, to the request's reply subject
(what ``allow_responses`` permits). Idempotency across coordinators comes from the shared log:
a repeated start with the same saga id finds the saga whichever coordinator answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from saga.errors import InvalidStartError, ProtocolError, TransportError
from saga.protocol import MAX_PAYLOAD_BYTES
from saga.transport.base import StartHandler
from saga.transport.starts import (
    INTERNAL,
    START_QUEUE,
    START_SUBJECT,
    StartAnswer,
    StartRefusal,
    StartReply,
    StartRequest,
    decode_answer,
    encode_answer,
)

logger = logging.getLogger(__name__)

MAX_STARTS_IN_FLIGHT = 256
"""Start requests a coordinator answers at once; more wait in the subscription's queue."""
DEFAULT_START_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 10.0


class NatsStartServer:
    """Answers ``saga.start`` requests on one connection, several at a time, never raising."""

    def __init__(
        self,
        nc: Client,
        handler: StartHandler,
        *,
        max_input_bytes: int = MAX_PAYLOAD_BYTES,
        max_in_flight: int = MAX_STARTS_IN_FLIGHT,
    ) -> None:
        self._nc = nc
        self._handler = handler
        self._max_input_bytes = max_input_bytes
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None
        self.answered = 0
        """Start requests answered (accepted or refused) since ``start``."""
        self.refused = 0
        """Of those, the refusals (each logged in one line)."""

    async def start(self) -> None:
        """Subscribe in the coordinators' queue group; TransportError if that fails."""
        try:
            self._subscription = await self._nc.subscribe(
                START_SUBJECT, queue=START_QUEUE, cb=self._on_request
            )
        except (OSError, nats.errors.Error) as exc:
            raise TransportError(f"cannot subscribe to {START_SUBJECT}: {exc}") from exc

    async def stop(self) -> None:
        """Stop taking requests (those already received are answered), then wait for the
        answers being made; the rest are cancelled after 10 s. Idempotent."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None and not self._nc.is_closed:
            try:
                if self._nc.is_connected:
                    # nats-py 2.16 leaves Subscription.drain unannotated.
                    draining = subscription.drain()  # type: ignore[no-untyped-call]
                    await asyncio.wait_for(draining, _STOP_TIMEOUT_S)
                else:  # a drain would wait for the server; the UNSUB goes out on reconnect
                    await subscription.unsubscribe()
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                logger.warning("draining the %s subscription failed: %s", START_SUBJECT, exc)
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=_STOP_TIMEOUT_S)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _on_request(self, msg: Msg) -> None:
        # nats-py awaits this callback for one message at a time: hand each start to a task
        # (a start waits for a log commit), a bounded number at once.
        await self._slots.acquire()
        task = asyncio.create_task(self._answer(msg), name="saga-start")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, msg: Msg) -> None:
        reply_to: str = msg.reply
        if not reply_to:
            # Nobody would hear the answer, or an error: a start must be a request.
            self.refused += 1
            logger.warning("ignored a message on %s without a reply subject", START_SUBJECT)
            return
        answer = await self._decide(msg.data)
        self.answered += 1
        if isinstance(answer, StartRefusal):
            self.refused += 1
            # One line per refusal, without the request's contents (the message names the
            # field at fault, the saga id and sizes, never the input).
            logger.info("refused a saga start (%s): %s", answer.code, answer.message)
        try:
            await self._nc.publish(reply_to, encode_answer(answer))
        except (OSError, ProtocolError, nats.errors.Error) as exc:
            logger.warning("could not answer a saga start: %s", exc)

    async def _decide(self, data: bytes) -> StartAnswer:
        try:
            request = StartRequest.decode(data, self._max_input_bytes)
        except ProtocolError as exc:
            return StartRefusal.of(exc)
        try:
            return await self._handler(request)
        except Exception:  # the handler must not raise; never let it end the loop
            logger.exception("answering a saga start failed")
            return StartRefusal(
                code=INTERNAL, message="the coordinator failed to answer the start (see its log)"
            )


async def request_start(
    nc: Client, request: StartRequest, timeout_s: float = DEFAULT_START_TIMEOUT_S
) -> StartReply:
    """Send one start request and return the coordinator's reply.

    Raises what ``Coordinator.start`` raises for a refusal (InvalidStartError,
    UnknownSagaError, SagaConflictError; LogError when its log is down), and TransportError
    (with the request's saga id) when no coordinator answers in time or none serves starts.
    """
    saga_id = request.saga_id if isinstance(request.saga_id, str) else None
    try:
        body = request.encode()
    except ProtocolError as exc:
        raise InvalidStartError(exc.message, argument="input", saga_id=saga_id) from exc
    try:
        msg = await nc.request(START_SUBJECT, body, timeout=timeout_s)
    except nats.errors.NoRespondersError as exc:
        raise TransportError(
            f"no coordinator serves {START_SUBJECT}: is one running, with this NATS?",
            saga_id=saga_id,
        ) from exc
    except (TimeoutError, nats.errors.TimeoutError) as exc:
        raise TransportError(
            f"no coordinator answered the start within {timeout_s:g} s: it may have started;"
            " repeat it with the same saga_id to find out",
            saga_id=saga_id,
        ) from exc
    except (OSError, nats.errors.Error) as exc:
        raise TransportError(f"cannot send the start: {exc}", saga_id=saga_id) from exc
    answer = decode_answer(msg.data)
    if isinstance(answer, StartRefusal):
        raise answer.error()
    return answer
