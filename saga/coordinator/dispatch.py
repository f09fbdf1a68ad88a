"""Flow control: at most a limit of commands in flight per service, the rest wait their turn.

Without it a burst of sagas publishes every command at once; they queue at the participant
(in its subscription buffer), and the time spent queued counts against each step's timeout,
so load turns into timeouts, retries (more load) and compensations. The ``Dispatcher``
keeps per service (``Command.service``) at most ``limit`` commands sent and unanswered; the
others wait in a queue per service *in the coordinator*, where waiting costs nothing:
the coordinator holds a queued command's timeout (``engine.hold``) and starts it only when
the command is actually sent (``engine.dispatched``).

A slot is keyed by (saga id, step, direction, attempt), so releasing one twice is harmless.
It is released by a reply (any outcome), by the attempt's timeout, by the saga settling, and,
should all of those be lost, once it has been held for its step's timeout: a lost reply never
leaks a slot forever.

``AdaptiveLimit`` moves the limit between 1 and the configured maximum (AIMD): one more per
reply that came back within a sixteenth of its step's timeout while the service was busy,
half on a reply slower than a quarter of its step's timeout, or on a timeout (but a
timeout not below where the limit started: see ``AdaptiveLimit.on_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from saga.clock import Clock
from saga.errors import ConfigError
from saga.protocol import Command, Direction

logger = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT_PER_SERVICE = 64
"""The default bound: the participant SDK's default ``max_concurrency``, so one replica of a
service is kept busy but never queues commands in its subscription buffer. At 10 ms a command
the worst wait at such a replica is 0.64 s, well under a quarter of the default 10 s step
timeout; slower services are found out by the adaptive limit."""

SLOW_FRACTION = 4
"""A reply slower than 1/SLOW_FRACTION of its step's timeout means the service is overloaded."""
FAST_FRACTION = 16
"""Only a reply faster than 1/FAST_FRACTION of its step's timeout lets the limit grow: the
queue at the participant then stays so short that the service may slow down several times
over (up to FAST_FRACTION times) before a command already sent runs out of time."""

SlotKey = tuple[str, str, Direction, int]
"""(saga id, step, direction, attempt): one attempt of one command."""
Priority = tuple[int, str]
"""(the saga's start in epoch ms, its id): queued commands go in this order, so the sagas
started first finish first, and a burst does not send every saga's first step before any
saga's second."""


def slot_key(command: Command) -> SlotKey:
    return (command.saga_id, command.step, command.direction, command.attempt)


class AdaptiveLimit:
    """An AIMD concurrency limit between 1 and ``maximum``, driven by reply latency.

    It starts at a quarter of the maximum (at least 1) and grows by one per reply faster than
    ``timeout / FAST_FRACTION`` that came back while at least half the limit was in use (an
    idle service proves nothing). A reply slower than ``timeout / SLOW_FRACTION``, or a
    timeout, halves it; in between it holds. Replies to commands sent before the last cut
    do not cut again, so one overloaded window halves the limit once, not once per command
    in it (TCP's rule).
    """

    def __init__(self, maximum: int) -> None:
        if maximum < 1:
            raise ConfigError(f"the in-flight maximum must be >= 1, not {maximum}")
        self.maximum = maximum
        self.initial = max(1, maximum // 4)
        """Where the limit starts, and the lowest a timeout (not a slow reply) takes it."""
        self._value = float(self.initial)
        self._cut_at_ms: int | None = None

    @property
    def value(self) -> int:
        return int(self._value)

    def on_reply(self, *, sent_ms: int, now_ms: int, timeout_ms: int, in_flight: int) -> None:
        """A reply came back ``now_ms - sent_ms`` after it was sent (``in_flight`` before)."""
        latency_ms = now_ms - sent_ms
        if latency_ms * SLOW_FRACTION > timeout_ms:
            self._cut(sent_ms, now_ms)
        elif latency_ms * FAST_FRACTION < timeout_ms and in_flight * 2 >= self.value:
            self._value = min(float(self.maximum), self._value + 1)

    def on_timeout(self, *, sent_ms: int, now_ms: int) -> None:
        """No reply within the step's timeout: halve, but not below where the limit started.

        A timeout says nothing about load: a frozen or cut-off service answers nothing
        however few commands it gets. Taken down to 1, the limit would serialise the
        discovery of an outage (N queued sagas, N timeouts one after the other), and
        retry policies ("give up after three attempts") would stretch by the queue length.
        Slow replies are the load signal; they take it down to 1.
        """
        self._cut(sent_ms, now_ms, floor=min(self.initial, self.value))

    def _cut(self, sent_ms: int, now_ms: int, floor: int = 1) -> None:
        if self._cut_at_ms is not None and sent_ms < self._cut_at_ms:
            return
        self._value = max(float(floor), self._value / 2)
        self._cut_at_ms = now_ms


@dataclass
class _Sent:
    sent_ms: int
    timeout_ms: int


@dataclass
class _Service:
    """One service's slots, queue and limit."""

    name: str
    maximum: int | None
    adaptive: AdaptiveLimit | None
    in_flight: dict[SlotKey, _Sent] = field(default_factory=dict)
    queue: dict[SlotKey, tuple[Command, int]] = field(default_factory=dict)
    """Waiting commands and their step timeouts (a dict: O(1) removal)."""
    order: list[tuple[Priority, int, SlotKey]] = field(default_factory=list)
    """A heap of the queue's keys, the oldest saga first; entries whose key has left the
    queue are skipped when they come up."""

    @property
    def limit(self) -> int | None:
        return self.adaptive.value if self.adaptive is not None else self.maximum

    def has_room(self) -> bool:
        limit = self.limit
        return limit is None or len(self.in_flight) < limit


@dataclass(frozen=True)
class ServiceLoad:
    """One service's flow control as it stands (``GET /api/services``, metrics)."""

    service: str
    """The participant service's name (``Command.service``)."""
    queued: int
    """Commands waiting for a slot, not sent yet."""
    in_flight: int
    """Commands sent and not answered (nor timed out) yet."""
    limit: int | None
    """The current bound (adaptive, at most the configured maximum); None: unbounded."""


Transmit = Callable[[Command], Awaitable[None]]
"""Hands a command to the transport (and never raises a transport error)."""
Claim = Callable[[Command, int], bool]
"""Called when a queued command's turn comes, with its step timeout: True to send it now
(the coordinator starts its timeout), False to drop it (the saga moved on)."""


class Dispatcher:
    """Every command the coordinator sends goes through ``submit``; see the module docstring.

    ``limit`` None sends everything at once (no flow control). ``adaptive`` lets the limit
    move between 1 and ``limit`` with the services' latency.
    """

    def __init__(
        self,
        clock: Clock,
        transmit: Transmit,
        claim: Claim,
        *,
        limit: int | None = DEFAULT_MAX_IN_FLIGHT_PER_SERVICE,
        adaptive: bool = True,
    ) -> None:
        if limit is not None and limit < 1:
            raise ConfigError(f"max_in_flight_per_service must be >= 1 or None, not {limit}")
        self._clock = clock
        self._transmit = transmit
        self._claim = claim
        self._limit = limit
        self._adaptive = adaptive and limit is not None
        self._services: dict[str, _Service] = {}
        self._by_saga: dict[str, set[tuple[str, SlotKey]]] = {}
        self._outbox: deque[Command] = deque()
        self._queued = 0
        self._sender: asyncio.Future[None] | None = None

    # -- what the coordinator calls --------------------------------------------------------

    async def submit(
        self, command: Command, timeout_ms: int, priority: Priority | None = None
    ) -> bool:
        """Send ``command`` now if its service has room (True), else queue it (False).

        Queued commands are sent by ``priority`` (the saga's start time and id; by default
        the order they were queued in). A command already in flight under the same key (a
        re-send) is sent again in its slot; one already queued stays queued once.
        """
        service = self._service(command.service)
        key = slot_key(command)
        if key in service.queue:
            return False
        if key not in service.in_flight:
            if service.queue or not service.has_room():
                self._pump(service.name)  # frees slots held past their timeout, if any
            if service.queue or not service.has_room():
                service.queue[key] = (command, timeout_ms)
                self._queued += 1
                entry = (priority or (self._queued, ""), self._queued, key)
                heapq.heappush(service.order, entry)
                self._index(command.saga_id, command.service, key)
                return False
            service.in_flight[key] = _Sent(self._clock.now_ms(), timeout_ms)
            self._index(command.saga_id, command.service, key)
        await self._transmit(command)
        return True

    def on_reply(self, command: Command) -> None:
        """A reply to ``command`` arrived (any outcome, even for a saga no longer active)."""
        self._release(command.service, slot_key(command), timed_out=False)

    def on_timeout(self, key: SlotKey) -> None:
        """The attempt ``key`` timed out (its StepFailed is recorded)."""
        for name, held in list(self._by_saga.get(key[0], ())):
            if held == key:
                self._release(name, key, timed_out=True)

    def forget(self, saga_id: str) -> None:
        """The saga settled or was dropped: free its slots and drop what it has queued."""
        for name, key in self._by_saga.pop(saga_id, ()):
            service = self._services[name]
            service.queue.pop(key, None)
            if not service.queue:
                service.order.clear()  # only keys that left the queue were in it
            if service.in_flight.pop(key, None) is not None:
                self._pump(name)

    def load(self) -> list[ServiceLoad]:
        """Every service seen so far, by name."""
        return [
            ServiceLoad(name, len(s.queue), len(s.in_flight), s.limit)
            for name, s in sorted(self._services.items())
        ]

    async def close(self) -> None:
        """Cancel the sends under way; what is queued stays unsent (recovery re-sends it)."""
        sender, self._sender = self._sender, None
        self._outbox.clear()
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        self._services.clear()
        self._by_saga.clear()

    # -- the machinery ---------------------------------------------------------------------

    def _service(self, name: str) -> _Service:
        service = self._services.get(name)
        if service is None:
            adaptive = AdaptiveLimit(self._limit) if self._adaptive and self._limit else None
            service = self._services[name] = _Service(name, self._limit, adaptive)
        return service

    def _index(self, saga_id: str, service: str, key: SlotKey) -> None:
        self._by_saga.setdefault(saga_id, set()).add((service, key))

    def _unindex(self, service: str, key: SlotKey) -> None:
        keys = self._by_saga.get(key[0])
        if keys is not None:
            keys.discard((service, key))
            if not keys:
                del self._by_saga[key[0]]

    def _release(self, name: str, key: SlotKey, *, timed_out: bool) -> None:
        service = self._services.get(name)
        if service is None:
            return
        sent = service.in_flight.pop(key, None)
        if sent is None:
            return
        self._unindex(name, key)
        if service.adaptive is not None:
            now = self._clock.now_ms()
            if timed_out:
                service.adaptive.on_timeout(sent_ms=sent.sent_ms, now_ms=now)
            else:
                service.adaptive.on_reply(
                    sent_ms=sent.sent_ms,
                    now_ms=now,
                    timeout_ms=sent.timeout_ms,
                    in_flight=len(service.in_flight) + 1,
                )
        self._pump(name)

    def _expire(self, service: _Service) -> None:
        """Free slots held past their step's timeout (their replies and timeouts were lost).

        ``in_flight`` is in the order the commands were sent, so only its oldest entries are
        looked at: the scan stops at the first that is not past its timeout (a shorter
        timeout behind it waits for that one, which is fine for a backstop).
        """
        if service.has_room():
            return
        now = self._clock.now_ms()
        expired = []
        for key, sent in service.in_flight.items():
            if now < sent.sent_ms + sent.timeout_ms:
                break
            expired.append((key, sent))
        for key, sent in expired:
            del service.in_flight[key]
            self._unindex(service.name, key)
            if service.adaptive is not None:
                service.adaptive.on_timeout(sent_ms=sent.sent_ms, now_ms=now)

    def _pump(self, name: str) -> None:
        """Send queued commands while the service has room; drop those no longer wanted."""
        service = self._services[name]
        self._expire(service)
        while service.queue and service.has_room():
            key = heapq.heappop(service.order)[2]
            if key not in service.queue:
                continue  # left the queue (its saga settled), or queued again later
            command, timeout_ms = service.queue.pop(key)
            try:
                wanted = self._claim(command, timeout_ms)
            except Exception:
                logger.exception("could not dispatch %s for saga %s", command.subject, key[0])
                wanted = False
            if not wanted:
                self._unindex(name, key)
                continue
            service.in_flight[key] = _Sent(self._clock.now_ms(), timeout_ms)
            self._outbox.append(command)
        if self._outbox and self._sender is None:
            self._sender = asyncio.ensure_future(self._send_outbox())

    async def _send_outbox(self) -> None:
        """Transmit the commands ``_pump`` let through, in order: one task for a whole run of
        them (under load it keeps going as replies free more slots), not one per command."""
        try:
            while self._outbox:
                command = self._outbox.popleft()
                try:
                    await self._transmit(command)
                except Exception:  # transmit logs transport errors; anything else is a bug
                    logger.exception("could not send %s for saga %s", command.subject,
                                     command.saga_id)  # fmt: skip
        finally:
            self._sender = None
