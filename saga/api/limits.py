"""FailureWindow: recent failed authentications per client address, for answering 429."""

from __future__ import annotations

import math
from collections import OrderedDict, deque

from saga.api.config import AuthLimit
from saga.clock import Clock


class FailureWindow:
    """Recent failed authentications per client address, in a bounded amount of memory.

    Written here rather than taken from a rate-limit library: it counts failures, not
    requests, is read without counting (is this client blocked?), and says when the oldest
    failure expires (Retry-After); a few lines over a deque do exactly that.
    """

    def __init__(self, limit: AuthLimit, clock: Clock, *, max_clients: int = 10_000) -> None:
        self._limit = limit
        self._clock = clock
        self._window_ms = int(limit.window.total_seconds() * 1000)
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[int]] = OrderedDict()

    def _recent(self, client: str) -> deque[int]:
        times = self._failures.get(client, deque())
        cutoff = self._clock.now_ms() - self._window_ms
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            self._failures.pop(client, None)
        return times

    def retry_after_s(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again, or None if it is not blocked."""
        times = self._recent(client)
        if len(times) < self._limit.failures:
            return None
        return max(1, math.ceil((times[0] + self._window_ms - self._clock.now_ms()) / 1000))

    def fail(self, client: str) -> int:
        """Count a failure by ``client``; return how many it has in the window now."""
        times = self._recent(client)
        times.append(self._clock.now_ms())
        if len(times) > self._limit.failures:
            times.popleft()  # only the newest `failures` matter for the limit
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)  # forget the least recently failing client
        return len(times)
