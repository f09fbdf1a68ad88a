"""NatsTransport: commands as NATS publishes, replies on one per-instance wildcard subscription.

Each command is published to ``<service>.<command>`` with a reply subject
``_SAGA_REPLY.<nuid>.<token>``; one subscription on ``_SAGA_REPLY.<nuid>.*`` receives every
reply, and the token maps it back to its command. No per-request inbox, no timers: step
timeouts are durable and belong to the coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.nuid import NUID
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from saga import tracing
from saga.errors import ProtocolError, TransportError
from saga.protocol import (
    COMPLETIONS_SUBJECT,
    HEADER_MAX_REPLY,
    MAX_PAYLOAD_BYTES,
    STORE_METADATA_KEY,
    Command,
    Reply,
)
from saga.redact import redact_url
from saga.transport.base import (
    CompletionHandler,
    ReplyHandler,
    SignalHandler,
    StartHandler,
    Transport,
)
from saga.transport.nats_signal import NatsCompletions, NatsSignalServer
from saga.transport.nats_start import NatsStartServer
from saga.transport.security import NatsSecurity
from saga.transport.signals import EVENT_SUBJECT
from saga.transport.starts import START_SUBJECT

logger = logging.getLogger(__name__)

REPLY_PREFIX = "_SAGA_REPLY"
STORE_CHECK_INTERVAL_S = 60.0
"""How often an open NatsTransport asks the participants which idempotency store they use."""
STORE_CHECK_WAIT_S = 0.5
"""How long a check collects ``$SRV.INFO`` answers."""
PENDING_REPLY_TTL_S = 3600.0
"""A command with no reply after this long is forgotten; a later reply counts as unmatched."""
INITIAL_CONNECT_ATTEMPTS = 3
"""Tries of the first connect (each one tries every server twice); after that the client
reconnects forever."""
_TRIES_PER_SERVER = 1
"""nats-py's ``max_reconnect_attempts`` within one first-connect try: each server twice."""
_CLOSE_TIMEOUT_S = 10.0
_FLUSH_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class _Pending:
    command: Command
    sent_at: float


async def flush_pending(nc: Client) -> None:
    """Wait until the server has processed everything sent so far, subscriptions included.

    nats-py 2.16's ``flush()`` writes its PING straight to the socket, ahead of commands still
    buffered for the flusher task (a fresh SUB, say), so its PONG proves nothing about them.
    By the time that PONG is back the flusher has written the buffer, so a second round trip
    does prove it.
    """
    await nc.flush(timeout=_FLUSH_TIMEOUT_S)
    await nc.flush(timeout=_FLUSH_TIMEOUT_S)


async def _log_error(exc: Exception) -> None:
    logger.warning("NATS connection error: %r", exc)


class NatsErrorWatch:
    """A nats-py ``error_cb`` that logs errors and counts the server's permission refusals.

    NATS answers a denied publish or subscribe with an asynchronous ``-ERR``; this is where
    it surfaces. Checked after a flush, it tells whether a subscription was refused.
    """

    def __init__(self) -> None:
        self.violations = 0
        """Permission violations so far (each is logged with the subject it names)."""
        self.refused_subscriptions: list[str] = []
        """The server's text for each refused subscription (a few per connection at most)."""

    async def on_error(self, exc: Exception) -> None:
        """The callback to pass as nats-py's ``error_cb`` (a coroutine function)."""
        text = str(exc)
        if "permissions violation" not in text.lower():
            await _log_error(exc)
            return
        self.violations += 1
        logger.error("NATS refused an operation: %s", text)
        if "subscription" in text.lower() and len(self.refused_subscriptions) < 100:
            self.refused_subscriptions.append(text)


async def _log_disconnected() -> None:
    logger.info("disconnected from NATS")


async def _log_reconnected() -> None:
    logger.info("reconnected to NATS")


def server_urls(servers: str | Sequence[str]) -> list[str]:
    """Every NATS URL in ``servers``: one URL, a comma-separated list of a cluster's URLs
    (as ``SAGA_NATS_URL`` and ``--nats`` take them), or a sequence of either; blanks dropped.

    >>> server_urls("nats://a:4222, nats://b:4222")
    ['nats://a:4222', 'nats://b:4222']
    """
    items = [servers] if isinstance(servers, str) else list(servers)
    return [url.strip() for item in items for url in item.split(",") if url.strip()]


async def connect_nats(
    servers: str | Sequence[str],
    *,
    name: str,
    options: Mapping[str, Any] | None = None,
    security: NatsSecurity | None = None,
) -> Client:
    """A nats-py client that fails fast on the first connect, then reconnects forever.

    ``servers`` are a cluster's URLs (see ``server_urls``): after a node's death the client
    reconnects to another one and re-subscribes; what it publishes meanwhile is buffered
    (nats-py's pending buffer) and sent on reconnect.

    ``options`` are passed to ``Client.connect``, after ``security``'s options (so an explicit
    option wins); ``max_reconnect_attempts`` in them applies after the first connect. Raises
    TransportError if no server answers at first or the server refuses the credentials.
    """
    urls = server_urls(servers)
    if not urls:
        raise TransportError("no NATS server URL given")
    merged: dict[str, Any] = {
        "name": name,
        "reconnect_time_wait": 1,
        "connect_timeout": 2,
        "error_cb": _log_error,
        "disconnected_cb": _log_disconnected,
        "reconnected_cb": _log_reconnected,
        **(security.to_connect_options() if security is not None else {}),
        **(options or {}),
    }
    reconnect_attempts = merged.pop("max_reconnect_attempts", -1)
    error_cb = merged["error_cb"]
    seen: list[BaseException] = []
    where = ", ".join(redact_url(url) for url in urls)

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "cannot connect to NATS at %s yet (try %d of %d, again in %.1f s): %s",
            where, state.attempt_number, INITIAL_CONNECT_ATTEMPTS, state.upcoming_sleep, error,
        )  # fmt: skip

    # A bounded number of first-connect tries (a server starting next to us may not listen
    # yet); a TLS failure or refused credentials cannot get better, so they end it at once.
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda exc: not _is_fatal_on_first_connect(exc)),
            stop=stop_after_attempt(INITIAL_CONNECT_ATTEMPTS),
            wait=wait_random_exponential(multiplier=0.5, max=float(merged["reconnect_time_wait"])),
            before_sleep=log_retry,
            reraise=True,
        ):
            with attempt:
                nc = await _connect_once(urls, merged, error_cb, seen)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        why = str(exc) or type(exc).__name__
        if isinstance(exc, ssl.SSLError):
            why = f"TLS handshake failed: {why}"
        last = seen[-1] if seen else None
        if last is not None and last is not exc:
            why += f" (last error: {last})"
        raise TransportError(f"cannot connect to NATS at {where}: {why}") from exc
    # Bounded attempts for the first connect only; once up, reconnect as configured.
    nc.options["max_reconnect_attempts"] = reconnect_attempts
    return nc


async def _connect_once(
    urls: list[str], options: dict[str, Any], error_cb: Any, seen: list[BaseException]
) -> Client:
    """One first-connect try: every server twice; raises the fatal or the last error.

    The last error nats-py reported (more telling than NoServersError) goes to ``seen``.
    """
    watch = _FirstConnect(error_cb)
    nc = Client()
    connecting = asyncio.create_task(
        nc.connect(
            urls,
            max_reconnect_attempts=_TRIES_PER_SERVER,
            **{**options, "error_cb": watch.on_error},
        )
    )
    limit_s = _first_connect_limit_s(options, len(urls))
    try:
        await watch.wait(connecting, limit_s)
    except (OSError, TimeoutError, nats.errors.Error):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), _FIRST_CLOSE_TIMEOUT_S)
        if watch.last_error is not None:
            seen.append(watch.last_error)
        raise
    finally:
        watch.connecting = False
    return nc


_FIRST_CLOSE_TIMEOUT_S = 2.0


def _first_connect_limit_s(options: Mapping[str, Any], servers: int) -> float:
    """An upper bound on nats-py's first connect: each attempt reads INFO, TLS, CONNECT, PONG."""
    per_attempt = 4 * float(options["connect_timeout"]) + float(options["reconnect_time_wait"])
    return per_attempt * (_TRIES_PER_SERVER + 1) * servers + 5.0


def _is_fatal_on_first_connect(exc: BaseException) -> bool:
    """A TLS failure or refused credentials: trying again with the same settings cannot help."""
    if isinstance(exc, ssl.SSLError | nats.errors.AuthorizationError):
        return True
    text = str(exc).lower()
    return "authorization violation" in text or "authentication" in text


class _FirstConnect:
    """Wraps ``error_cb`` during the first connect: remembers the last error, stops on fatal ones.

    A TLS failure or refused credentials ends the first connect at once: retrying cannot help,
    and nats-py 2.16 never returns from ``connect`` after a failed TLS handshake (it waits for
    the plain socket it handed to ``start_tls`` to close, which never happens; nats.py issue
    718). A time limit backs that up.
    """

    def __init__(self, error_cb: Any) -> None:
        self._error_cb = error_cb
        self.connecting = True
        self.last_error: BaseException | None = None
        self._fatal: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def on_error(self, exc: Exception) -> None:
        if self.connecting:
            self.last_error = exc
            if _is_fatal_on_first_connect(exc) and not self._fatal.done():
                self._fatal.set_result(exc)
        await self._error_cb(exc)

    async def wait(self, connecting: asyncio.Task[None], limit_s: float) -> None:
        """Return once connected; raise the fatal error, or TimeoutError past ``limit_s``."""
        either: set[asyncio.Future[Any]] = {connecting, self._fatal}
        try:
            done, _ = await asyncio.wait(
                either,
                timeout=limit_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await connecting
        if self._fatal.done():
            raise self._fatal.result()
        if connecting in done:
            error = connecting.exception()
            if error is None:
                return
            raise error
        raise TimeoutError(f"no NATS server accepted a connection within {limit_s:.0f} s")


class NatsTransport(Transport):
    """The Transport over NATS core request/reply, with reconnect-forever semantics."""

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        name: str = "saga-coordinator",
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        connect_options: Mapping[str, Any] | None = None,
        security: NatsSecurity | None = None,
    ) -> None:
        self.servers: list[str] = server_urls(servers)
        if not self.servers:
            raise TransportError("NatsTransport needs at least one server URL")
        self.name = name
        self.max_payload_bytes = max_payload_bytes
        self._connect_options: dict[str, Any] = dict(connect_options or {})
        self.security = security
        """Credentials and TLS; its options are merged under ``connect_options``."""
        self._nc: Client | None = None
        self._subscription: Subscription | None = None
        self._on_reply: ReplyHandler | None = None
        self._prefix = ""
        self._tokens = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self.malformed_replies = 0
        """Replies that could not be decoded (logged, dropped)."""
        self.unmatched_replies = 0
        """Replies whose token is unknown: duplicates, late, or not ours (logged, dropped)."""
        self.expired_commands = 0
        """Commands forgotten after PENDING_REPLY_TTL_S without a reply."""
        self.reply_handler_errors = 0
        """Exceptions raised by ``on_reply`` (logged, not re-raised)."""
        self.store_mismatches: dict[str, set[str]] = {}
        """Services whose replicas announce different idempotency stores (last check)."""
        self.check_stores_every_s: float | None = STORE_CHECK_INTERVAL_S
        """Seconds between store checks while open; None turns them off."""
        self._warned: set[tuple[str, frozenset[str]]] = set()
        self._store_check: asyncio.Task[None] | None = None
        self._errors = NatsErrorWatch()
        self._starts: NatsStartServer | None = None
        self._signals: NatsSignalServer | None = None
        self._completions: NatsCompletions | None = None

    @property
    def permission_violations(self) -> int:
        """Publishes or subscriptions the server refused (logged; the command times out)."""
        return self._errors.violations

    @property
    def reply_prefix(self) -> str:
        """The subject prefix this instance receives replies on (empty before ``open``)."""
        return self._prefix

    @property
    def pending_replies(self) -> int:
        """Commands sent and not yet answered (and not yet expired)."""
        return len(self._pending)

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    @property
    def connected_url(self) -> str | None:
        """The server this transport is connected to now; None while closed or reconnecting.

        It may carry credentials (``nats://user:pass@...``): pass it through ``redact_url``
        before printing it.
        """
        nc = self._nc
        if nc is None or not nc.is_connected or nc.connected_url is None:
            return None
        url: str = nc.connected_url.geturl()
        return url

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established (another cluster node, or the
        same server back) since ``open``."""
        return int(self._nc.stats["reconnects"]) if self._nc is not None else 0

    async def open(self, on_reply: ReplyHandler) -> None:
        """Connect, subscribe for replies; raises TransportError if no server answers."""
        if self._nc is not None:
            raise TransportError("NatsTransport is already open")
        options: dict[str, Any] = {
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "error_cb": self._errors.on_error,
            **self._connect_options,
        }
        nc = await connect_nats(
            self.servers, name=self.name, options=options, security=self.security
        )
        self._prefix = f"{REPLY_PREFIX}.{NUID().next().decode()}"
        self._on_reply = on_reply
        self._nc = nc
        try:
            self._subscription = await nc.subscribe(f"{self._prefix}.*", cb=self._on_message)
            await flush_pending(nc)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            await self.close()
            raise TransportError(f"cannot subscribe for replies: {exc}") from exc
        refused = self._errors.refused_subscriptions
        if refused:
            # Commands would go out and every reply would be lost: refuse to start instead.
            await self.close()
            raise TransportError(
                f"NATS does not let this user subscribe to {self._prefix}.*"
                f" ({refused[0]}); allow subscribe on {REPLY_PREFIX}.>"
            )
        if self.check_stores_every_s is not None:
            self._store_check = asyncio.create_task(
                self._check_stores_forever(self.check_stores_every_s), name="saga-store-check"
            )

    async def check_participant_stores(
        self, wait_s: float = STORE_CHECK_WAIT_S
    ) -> dict[str, set[str]]:
        """Ask every ``nats.micro`` service for its INFO; return the services whose replicas
        announce different idempotency stores, and warn (once per difference) about each.

        Replicas with separate stores each run a retried command's handler: its effect is
        applied twice. They must share one store (one database for ``SqlIdempotencyStore``).
        """
        nc = self._nc
        if nc is None or not nc.is_connected:
            return {}
        infos: list[Any] = []

        async def collect(msg: Msg) -> None:
            with contextlib.suppress(ValueError):
                infos.append(json.loads(msg.data))

        subscription = await nc.subscribe(nc.new_inbox(), cb=collect)
        try:
            await nc.publish("$SRV.INFO", b"", reply=subscription.subject)
            await asyncio.sleep(wait_s)
        finally:
            with contextlib.suppress(OSError, nats.errors.Error):
                await subscription.unsubscribe()
        stores: dict[str, set[str]] = {}
        for info in infos:
            if not isinstance(info, dict) or not isinstance(info.get("metadata"), dict):
                continue
            identity = info["metadata"].get(STORE_METADATA_KEY)
            if isinstance(identity, str) and isinstance(info.get("name"), str):
                stores.setdefault(info["name"], set()).add(identity)
        mismatches = {name: ids for name, ids in stores.items() if len(ids) > 1}
        for name, ids in sorted(mismatches.items()):
            if (name, frozenset(ids)) not in self._warned:
                self._warned.add((name, frozenset(ids)))
                logger.warning(
                    "replicas of service %r use %d different idempotency stores (%s): a retry"
                    " that lands on another replica runs its handler again; give every"
                    " replica the same store (one database for SqlIdempotencyStore)",
                    name, len(ids), ", ".join(sorted(ids)),
                )  # fmt: skip
        self.store_mismatches = mismatches
        return mismatches

    async def _check_stores_forever(self, every_s: float) -> None:
        while True:
            try:
                await self.check_participant_stores()
            except (OSError, nats.errors.Error) as exc:
                logger.debug("the idempotency store check failed: %s", exc)
            await asyncio.sleep(every_s)

    async def serve_starts(self, handler: StartHandler) -> None:
        """Answer ``saga.start`` requests with ``handler``, in the queue group
        ``saga-coordinators`` (see ``saga.transport.nats_start``); served again after a
        reconnect. A server that refuses the subscription is logged, not fatal: the
        coordinator still runs, and starts reach it over HTTP or from Python."""
        nc = self._nc
        if nc is None or nc.is_closed:
            raise TransportError("cannot serve starts: the NATS transport is closed")
        if self._starts is not None:
            raise TransportError("this NatsTransport serves starts already")
        starts = NatsStartServer(nc, handler, max_input_bytes=self.max_payload_bytes)
        refused_before = len(self._errors.refused_subscriptions)
        await starts.start()
        self._starts = starts
        try:
            await flush_pending(nc)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise TransportError(f"cannot subscribe to {START_SUBJECT}: {exc}") from exc
        if len(self._errors.refused_subscriptions) > refused_before:
            logger.error(
                "NATS does not let this user subscribe to %s in its queue group: starts over"
                " NATS do not reach this coordinator (allow subscribe on \"%s saga-coordinators\")",
                START_SUBJECT, START_SUBJECT,
            )  # fmt: skip

    async def stop_starts(self) -> None:
        """Stop answering ``saga.start`` (requests already received are answered). Idempotent."""
        starts, self._starts = self._starts, None
        if starts is not None:
            await starts.stop()

    async def serve_signals(self, handler: SignalHandler) -> None:
        """Answer ``saga.event`` requests with ``handler``, in the queue group
        ``saga-coordinators`` (see ``saga.transport.nats_signal``); served again after a
        reconnect. A server that refuses the subscription is logged, not fatal: events still
        reach this coordinator over HTTP."""
        nc = self._open_client("serve events")
        if self._signals is not None:
            raise TransportError("this NatsTransport serves events already")
        signals = NatsSignalServer(nc, handler, max_payload_bytes=self.max_payload_bytes)
        await self._subscribed(signals.start, EVENT_SUBJECT, f"{EVENT_SUBJECT} saga-coordinators")
        self._signals = signals

    async def stop_signals(self) -> None:
        """Stop answering ``saga.event`` (requests already received are answered). Idempotent."""
        signals, self._signals = self._signals, None
        if signals is not None:
            await signals.stop()

    async def serve_completions(self, handler: CompletionHandler) -> None:
        """Hand ``saga.completions`` announcements to ``handler`` (a plain subscription: every
        coordinator hears each one; see ``saga.transport.nats_signal``). Malformed ones are
        dropped with a debug line. A server that refuses the subscription is logged, not
        fatal: accepted commands are still polled (``Step.poll_every``)."""
        nc = self._open_client("hear completions")
        if self._completions is not None:
            raise TransportError("this NatsTransport hears completions already")
        completions = NatsCompletions(nc, handler)
        await self._subscribed(completions.start, COMPLETIONS_SUBJECT, COMPLETIONS_SUBJECT)
        self._completions = completions

    @property
    def completions(self) -> NatsCompletions | None:
        """The completions subscription and its counters, while served."""
        return self._completions

    @property
    def signals(self) -> NatsSignalServer | None:
        """The ``saga.event`` server and its counters, while served."""
        return self._signals

    def _open_client(self, what: str) -> Client:
        nc = self._nc
        if nc is None or nc.is_closed:
            raise TransportError(f"cannot {what}: the NATS transport is closed")
        return nc

    async def _subscribed(self, subscribe: Callable[[], Awaitable[None]], subject: str,
                          allow: str) -> None:  # fmt: skip
        """Subscribe, wait until the server has it, and log (not raise) a refusal."""
        nc = self._open_client(f"subscribe to {subject}")
        refused_before = len(self._errors.refused_subscriptions)
        await subscribe()
        try:
            await flush_pending(nc)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise TransportError(f"cannot subscribe to {subject}: {exc}") from exc
        if len(self._errors.refused_subscriptions) > refused_before:
            logger.error(
                "NATS does not let this user subscribe to %s: its messages do not reach this"
                " coordinator (allow subscribe on \"%s\")",
                subject, allow,
            )  # fmt: skip

    async def send(self, command: Command) -> None:
        """Publish one command; raises TransportError when closed, ProtocolError when oversize.

        While the client reconnects, nats-py buffers the publish and sends it on reconnect.
        """
        nc = self._nc
        if nc is None or nc.is_closed:
            raise TransportError(
                f"cannot send {command.subject}: the NATS transport is closed",
                saga_id=command.saga_id,
                step=command.step,
                attempt=command.attempt,
            )
        body = command.body(self.max_payload_bytes)
        token = str(next(self._tokens))
        self._expire_pending()
        self._pending[token] = _Pending(command, time.monotonic())
        headers = {**command.headers(), HEADER_MAX_REPLY: str(self.max_payload_bytes)}
        tracing.inject(headers)  # W3C traceparent of the attempt's span, when tracing
        try:
            await nc.publish(
                command.subject, body, reply=f"{self._prefix}.{token}", headers=headers
            )
        except (OSError, nats.errors.Error) as exc:
            self._pending.pop(token, None)
            raise TransportError(
                f"cannot send {command.subject}: {exc}",
                saga_id=command.saga_id,
                step=command.step,
                attempt=command.attempt,
            ) from exc

    async def flush(self) -> None:
        """Wait (up to 10 s) until the server has received everything published so far."""
        nc = self._nc
        if nc is None or nc.is_closed:
            raise TransportError("cannot flush: the NATS transport is closed")
        try:
            await flush_pending(nc)
        except (OSError, nats.errors.Error) as exc:
            raise TransportError(f"flush failed: {exc}") from exc

    async def close(self) -> None:
        """Drain the reply subscription, wait for ``on_reply`` calls, disconnect. Idempotent."""
        nc, self._nc = self._nc, None
        if nc is None:
            return
        await self.stop_starts()
        await self.stop_signals()
        completions, self._completions = self._completions, None
        if completions is not None:
            await completions.stop()
        check, self._store_check = self._store_check, None
        if check is not None:
            check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await check
        if nc.is_connected:
            try:
                await asyncio.wait_for(nc.drain(), _CLOSE_TIMEOUT_S)
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                logger.warning("draining the NATS connection failed: %s", exc)
        if not nc.is_closed:
            await nc.close()
        self._subscription = None
        self._pending.clear()

    def _expire_pending(self) -> None:
        # Tokens are issued in time order and dicts keep insertion order: the oldest come first.
        cutoff = time.monotonic() - PENDING_REPLY_TTL_S
        while self._pending:
            token, pending = next(iter(self._pending.items()))
            if pending.sent_at >= cutoff:
                break
            del self._pending[token]
            self.expired_commands += 1

    async def _on_message(self, msg: Msg) -> None:
        subject: str = msg.subject
        headers: dict[str, str] | None = msg.headers
        data: bytes = msg.data
        token = subject.rpartition(".")[2]
        try:
            reply = Reply.decode(headers=headers, body=data, max_bytes=self.max_payload_bytes)
        except ProtocolError as exc:
            # Our participant SDK never sends more than the limit each command announces
            # (HEADER_MAX_REPLY): it answers a final "result_too_large" instead. So this is
            # garbage, or a participant that is not ours; a real reply may still come.
            self.malformed_replies += 1
            logger.warning("dropping a malformed reply on %s: %s", subject, exc.message)
            return
        pending = self._pending.pop(token, None)
        if pending is None:
            self.unmatched_replies += 1
            logger.info("dropping a reply on %s: no command waits for it", subject)
            return
        # Awaited here, in arrival order: on_reply returns at once (the coordinator hands
        # each reply to a task of its own), so no task per reply is made here too.
        await self._deliver(pending.command, reply)

    async def _deliver(self, command: Command, reply: Reply) -> None:
        on_reply = self._on_reply
        if on_reply is None:
            return
        try:
            await on_reply(command, reply)
        except Exception:
            self.reply_handler_errors += 1
            logger.exception(
                "on_reply failed for saga %s step %s (%s)",
                command.saga_id,
                command.step,
                command.direction.value,
            )

    async def _on_disconnected(self) -> None:
        if self._nc is not None:
            logger.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        # Which node: after a cluster node's death the operator wants to see where we went.
        url = self.connected_url
        logger.info("reconnected to NATS at %s", redact_url(url) if url else "?")
