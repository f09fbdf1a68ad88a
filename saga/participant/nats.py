"""ParticipantServer: serves a participant's commands as a ``nats.micro`` service.

``ParticipantServer.start(participant, url)`` is what ``Participant.serve(url)`` calls. This
module knows the transport-free core (``saga.participant.service``); the core never knows it.

One micro endpoint per command on ``<service>.<command>``, all in the queue group named after
the participant so replicas share load; ``nats micro ls/info/stats`` discover it. Each request
runs in its own task (a micro endpoint's callback is sequential), bounded by the participant's
``max_concurrency``, and in-flight requests finish before ``stop()`` returns.

While it serves, the participant announces its completions (``participant.complete`` and
friends) on ``saga.completions`` over the server's connection (``completion_announcer``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import nats.errors
from nats import micro
from nats.aio.client import Client
from nats.micro.request import Handler, Request
from nats.micro.service import EndpointStats, Service

from saga import tracing
from saga.errors import DefinitionError, ProtocolError, TransportError
from saga.participant.completions import Announce
from saga.participant.service import ParticipantCore
from saga.protocol import (
    COMPLETIONS_SUBJECT,
    STORE_METADATA_KEY,
    Command,
    Outcome,
    Reply,
    max_reply_bytes,
    subject_for,
)
from saga.transport.nats import NatsErrorWatch, connect_nats, flush_pending
from saga.transport.security import NatsSecurity
from saga.version import __version__

VERSION_METADATA_KEY = "saga.version"
"""``$SRV.INFO`` metadata: the saga-coordinator package version the participant runs."""
INSTANCE_METADATA_KEY = "saga.instance"
"""``$SRV.INFO`` metadata: the replica's instance name (``<hostname>-<pid>`` when unnamed)."""

logger = logging.getLogger(__name__)

_MAX_HEADER_CHARS = 256
_HEADER_ROOM_BYTES = 4096
_STOP_TIMEOUT_S = 30.0
_UNSUBSCRIBE_TIMEOUT_S = 10.0
_ANNOUNCE_FLUSH_S = 5


def completion_announcer(client: Client) -> Announce:
    """Announces completions on ``COMPLETIONS_SUBJECT`` with ``client`` (core NATS publish,
    flushed so that a worker about to exit has sent it)."""

    async def announce(headers: Mapping[str, str]) -> None:
        await client.publish(COMPLETIONS_SUBJECT, b"", headers=dict(headers))
        await client.flush(timeout=_ANNOUNCE_FLUSH_S)

    return announce


def _micro_code(reply: Reply) -> str:
    """An HTTP-like status for the micro error header, as NATS tooling expects."""
    code = reply.error.code if reply.error is not None else ""
    if code == "bad_request":
        return "400"
    if code == "unknown_command":
        return "404"
    return "422" if reply.outcome is Outcome.REJECTED else "500"


def _header_text(text: str) -> str:
    # Header values must stay on one line and short.
    return " ".join(text.split())[:_MAX_HEADER_CHARS]


class ParticipantServer:
    """A running micro service for one participant; ``await stop()`` ends it."""

    def __init__(self, participant: ParticipantCore, client: Client, *, owns_client: bool) -> None:
        self.participant = participant
        self._client = client
        self._owns_client = owns_client
        self._service: Service | None = None
        self._endpoints: dict[str, Any] = {}
        self._slots = asyncio.Semaphore(participant.max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._errors: NatsErrorWatch | None = None
        self._detach_announcer: Callable[[], None] | None = None
        self.outcomes: dict[str, Counter[str]] = {name: Counter() for name in participant.commands}
        """Replies sent per command, by outcome (plus ``bad_request``); also in micro stats."""
        self.bad_requests = 0
        """Requests that could not be decoded and got a ``bad_request`` rejection."""

    @classmethod
    async def start(
        cls,
        participant: ParticipantCore,
        nats: str | Sequence[str] | Client,
        *,
        connect_options: Mapping[str, Any] | None = None,
        security: NatsSecurity | None = None,
    ) -> ParticipantServer:
        """Connect (if given a URL), register the micro service and its endpoints.

        ``security`` (credentials, TLS) applies when connecting to a URL. Raises
        TransportError when the server refuses the connection or a subscription.
        """
        if not participant.commands:
            raise DefinitionError(f"participant {participant.name!r} has no commands to serve")
        if not isinstance(nats, Client):
            errors = NatsErrorWatch()
            client = await connect_nats(
                nats,
                name=participant.name,
                options={"error_cb": errors.on_error, **(connect_options or {})},
                security=security,
            )
            server = cls(participant, client, owns_client=True)
            server._errors = errors
        else:
            if security is not None:
                raise TransportError("security applies to a URL, not to a connected client")
            server = cls(participant, nats, owns_client=False)
        try:
            await server._start()
        except BaseException:
            await server.stop()
            raise
        return server

    async def _start(self) -> None:
        participant = self.participant
        await participant.store.open()
        await participant.take_over()
        identity = participant.store.identity
        metadata = {
            VERSION_METADATA_KEY: __version__,
            INSTANCE_METADATA_KEY: participant.instance or f"{socket.gethostname()}-{os.getpid()}",
        }
        if identity is not None:
            # Replicas must share one store; the coordinator compares what they announce.
            metadata[STORE_METADATA_KEY] = identity
        service = await micro.add_service(
            self._client,
            name=participant.name,
            version=participant.version,
            description=participant.description,
            metadata=metadata,
            queue_group=participant.name,
            stats_handler=self._endpoint_data,
        )
        self._service = service
        for name in participant.commands:
            await service.add_endpoint(
                name=name,
                subject=subject_for(participant.name, name),
                queue_group=participant.name,
                handler=self._endpoint(name),
            )
            # Requests run in tasks of their own, so nats.micro never sees a handler fail:
            # the stats of a "failed" answer are counted here (see _respond).
            self._endpoints[name] = service._endpoints[-1]
        await flush_pending(self._client)
        refused = self._errors.refused_subscriptions if self._errors is not None else []
        if refused:
            raise TransportError(
                f"NATS does not let service {participant.name!r} subscribe: {refused[0]};"
                f" allow subscribe on {participant.name}.> and the $SRV subjects"
            )
        self._detach_announcer = participant.announce_with(completion_announcer(self._client))

    @property
    def service_id(self) -> str:
        """This replica's micro service id (``$SRV.INFO.<name>.<id>``)."""
        return self._service.id if self._service is not None else ""

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def info(self) -> dict[str, Any]:
        """The micro INFO document this replica answers with."""
        if self._service is None:
            return {}
        info: dict[str, Any] = self._service.info().to_dict()
        return info

    def _endpoint_data(self, stats: EndpointStats) -> dict[str, int]:
        return dict(self.outcomes.get(stats.name, Counter()))

    def _endpoint(self, command: str) -> Handler:
        async def on_request(request: Request) -> None:
            # Waiting here holds back this endpoint's subscription: that is the back-pressure.
            await self._slots.acquire()
            task = asyncio.create_task(self._process(command, request))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

        return on_request

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _process(self, command: str, request: Request) -> None:
        participant = self.participant
        try:
            await self._answer(command, request)
        except Exception:
            logger.exception(
                "serving a request on %s failed", subject_for(participant.name, command)
            )

    async def _answer(self, command: str, request: Request) -> None:
        participant = self.participant
        try:
            decoded = Command.decode(
                service=participant.name,
                command=command,
                headers=request.headers,
                body=request.data,
                max_bytes=participant.max_payload_bytes,
            )
        except ProtocolError as exc:
            self.bad_requests += 1
            logger.warning(
                "bad request on %s: %s", subject_for(participant.name, command), exc.message
            )
            await self._respond(command, request, Reply.rejected("bad_request", exc.message))
            return
        # The server refuses a message over its max_payload (headers included), and the
        # coordinator announced what it accepts: a reply that fits neither becomes a final
        # "result_too_large" (the effect is recorded; the compensation gets the result).
        limit = self._client.max_payload - _HEADER_ROOM_BYTES
        asked = max_reply_bytes(request.headers)
        with tracing.extracted(request.headers):  # the handler's span joins the saga's trace
            reply, body = await participant.handle_for_wire(
                decoded, limit if asked is None else min(asked, limit)
            )
        await self._respond(command, request, reply, body)

    async def _respond(
        self, command: str, request: Request, reply: Reply, body: bytes | None = None
    ) -> None:
        subject = subject_for(self.participant.name, command)
        if body is None:
            reply, body = self.participant.fit(reply)
        label = reply.error.code if reply.error and reply.error.code == "bad_request" else None
        self.outcomes.setdefault(command, Counter())[label or reply.outcome.value] += 1
        if reply.outcome is Outcome.FAILED:
            self._count_error(command, reply)
        try:
            if reply.outcome is Outcome.SUCCEEDED or reply.error is None:
                await request.respond(body)
            else:
                description = _header_text(f"{reply.error.code}: {reply.error.message}")
                await request.respond_error(_micro_code(reply), description, data=body)
        except ValueError:
            logger.warning("request on %s has no reply subject; nobody gets the reply", subject)
        except (OSError, nats.errors.Error) as exc:
            logger.warning("could not reply on %s: %s", subject, exc)

    def _count_error(self, command: str, reply: Reply) -> None:
        """A ``failed`` answer is an error in the endpoint's micro stats (``num_errors``,
        ``last_error``), as a raising micro handler would be; a business "no" is not."""
        endpoint = self._endpoints.get(command)
        if endpoint is None or not hasattr(endpoint, "_num_errors"):
            return
        endpoint._num_errors += 1
        error = reply.error
        endpoint._last_error = _header_text(f"{error.code}: {error.message}") if error else "failed"

    async def stop(self) -> None:
        """Stop taking requests, finish the ones in flight, disconnect if we connected."""
        if self._stopped:
            return
        self._stopped = True
        if self._detach_announcer is not None:
            self._detach_announcer()
        if self._service is not None:
            try:
                await asyncio.wait_for(self._service.stop(), _UNSUBSCRIBE_TIMEOUT_S)
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                logger.warning("stopping the micro service failed: %s", exc)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=_STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._owns_client and not self._client.is_closed:
            if self._client.is_connected:
                try:
                    await self._client.drain()
                except (OSError, TimeoutError, nats.errors.Error) as exc:
                    logger.warning("draining the NATS connection failed: %s", exc)
            if not self._client.is_closed:
                try:
                    await self._client.close()
                except (OSError, nats.errors.Error) as exc:
                    # The connection may be mid-reconnect (a broker restart): it is gone anyway.
                    logger.warning("closing the NATS connection failed: %s", exc)

    async def __aenter__(self) -> ParticipantServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "serving"
        return f"<ParticipantServer {self.participant.name} {self.service_id} {state}>"
