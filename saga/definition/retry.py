"""RetryPolicy: how often and how long a step or compensation is retried."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from saga.errors import DefinitionError


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Retry with exponential back-off.

    ``max_attempts`` counts every attempt including the first; ``None`` means no limit on the
    count. ``max_elapsed`` bounds the time from the first attempt's start; ``None`` means no
    limit on time. With both ``None`` the step is retried until it succeeds.
    """

    initial_interval: timedelta = timedelta(milliseconds=200)
    backoff: float = 2.0
    max_interval: timedelta = timedelta(seconds=30)
    max_attempts: int | None = 3
    max_elapsed: timedelta | None = None

    def __post_init__(self) -> None:
        if self.initial_interval < timedelta(0):
            raise DefinitionError("RetryPolicy.initial_interval must not be negative")
        if self.max_interval < self.initial_interval:
            raise DefinitionError("RetryPolicy.max_interval must be >= initial_interval")
        if self.backoff < 1.0:
            raise DefinitionError("RetryPolicy.backoff must be >= 1.0")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise DefinitionError("RetryPolicy.max_attempts must be >= 1 or None")
        if self.max_elapsed is not None and self.max_elapsed <= timedelta(0):
            raise DefinitionError("RetryPolicy.max_elapsed must be positive or None")

    def delay_ms(self, failed_attempt: int) -> int:
        """Milliseconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        initial = self.initial_interval.total_seconds() * 1000
        cap = self.max_interval.total_seconds() * 1000
        # Cap the exponent so a very long retry run cannot overflow a float.
        exponent = min(failed_attempt - 1, 64)
        return int(min(cap, initial * self.backoff**exponent))

    def allows_another(self, attempts_made: int, first_attempt_ms: int, retry_at_ms: int) -> bool:
        """Whether one more attempt, starting at ``retry_at_ms``, is within the policy."""
        if self.max_attempts is not None and attempts_made >= self.max_attempts:
            return False
        if self.max_elapsed is not None:
            budget_ms = int(self.max_elapsed.total_seconds() * 1000)
            if retry_at_ms - first_attempt_ms > budget_ms:
                return False
        return True


FOREVER = RetryPolicy(max_attempts=None)
"""Retry until success (capped back-off); the default for retriable steps."""
