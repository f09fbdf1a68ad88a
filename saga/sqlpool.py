"""Connection pools and transient-error retries shared by the SQL adapters (log, idempotency store).

Both ``SqlSagaLog`` (``saga.log.sql``) and ``SqlIdempotencyStore`` (``saga.participant.sql``)
take a ``PoolOptions`` and retry the same transient errors with tenacity; this module sits
below both layers so neither has to import the other.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from saga.errors import ConfigError

RETRY_ATTEMPTS = 10
"""Tries of one operation (the first included) while its errors are transient."""
RETRY_WITHIN_S = 30.0
"""No new try starts this long after the first: long enough for a database restart."""
RETRY_MAX_WAIT_S = 3.0
"""The longest pause between two tries (exponential from 50 ms, with full jitter)."""

_CONNECTION_SQLSTATES = ("08",)
"""SQLSTATE class 08, connection exception: the connection failed or was never made."""
_TRANSIENT_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: pg_terminate_backend, or a fast/immediate server stop
        "57P02",  # crash_shutdown: another backend crashed, the server resets
        "57P03",  # cannot_connect_now: the server is starting up or shutting down
        "53300",  # too_many_connections: the server's or the role's limit is reached
    }
)
_SQLITE_BUSY = ("database is locked", "database table is locked")


@dataclass(frozen=True, kw_only=True)
class PoolOptions:
    """How many database connections one engine may hold, and for how long.

    The defaults keep one connection open while idle and open up to four more for bursts,
    closing each of those as soon as it is given back: a process holds 1 connection at rest
    and at most 5 under load, so many services can share a server's ``max_connections``.
    """

    size: int = 1
    """Connections kept open while idle (SQLAlchemy's ``pool_size``)."""
    overflow: int = 4
    """Further connections opened for a burst and closed as soon as they are given back."""
    timeout: timedelta = timedelta(seconds=10)
    """How long an operation waits for a free connection before failing (``LogError``)."""
    recycle: timedelta = timedelta(minutes=30)
    """A connection older than this is closed and replaced at its next checkout, so one that
    a proxy or firewall dropped while idle is not reused forever."""
    pre_ping: bool = True
    """Check each connection with a cheap round trip at checkout, so one the server closed
    (a restart, ``pg_terminate_backend``) is replaced before a statement runs on it."""

    def __post_init__(self) -> None:
        # pool_size 0 would mean "no limit" to SQLAlchemy's QueuePool.
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"PoolOptions.size must be an integer >= 1, not {self.size!r}")
        if isinstance(self.overflow, bool) or not isinstance(self.overflow, int):
            raise ConfigError(f"PoolOptions.overflow must be an integer, not {self.overflow!r}")
        if self.overflow < 0:
            raise ConfigError(f"PoolOptions.overflow must be >= 0, not {self.overflow}")
        for name in ("timeout", "recycle"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise ConfigError(f"PoolOptions.{name} must be a positive timedelta, not {value!r}")

    @property
    def limit(self) -> int:
        """The most connections the pool ever holds at once."""
        return self.size + self.overflow

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_async_engine``."""
        return {
            "pool_size": self.size,
            "max_overflow": self.overflow,
            "pool_timeout": self.timeout.total_seconds(),
            "pool_recycle": int(self.recycle.total_seconds()),
            "pool_pre_ping": self.pre_ping,
        }


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the driver error it wraps, and their causes (each once)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo.extend([orig if isinstance(orig, BaseException) else None, current.__cause__])


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may succeed: a lost or refused connection, or a busy SQLite file.

    A lost connection's transaction was rolled back by the server unless its COMMIT got
    through; callers that write decide what a retry after an unknown COMMIT means.
    """
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    for cause in _causes(exc):
        if isinstance(cause, ConnectionError):  # refused, reset, broken pipe
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith(_CONNECTION_SQLSTATES)
        ):
            return True
        name = type(cause).__name__
        if name in ("ConnectionDoesNotExistError", "ConnectionFailureError"):
            return True
        text = str(cause).lower()
        if name == "InterfaceError" and "connection" in text and "closed" in text:
            return True
        if isinstance(cause, sqlite3.OperationalError) and text.startswith(_SQLITE_BUSY):
            return True
        if name == "OperationalError" and text.startswith(_SQLITE_BUSY):
            return True
    return False


def retrying(logger: logging.Logger, action: str) -> AsyncRetrying:
    """tenacity's loop for one operation: transient errors are tried again, bounded, with
    jittered exponential waits, each retry logged at warning on ``logger``."""

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "%s failed on try %d of %d, trying again in %.2f s: %s",
            action, state.attempt_number, RETRY_ATTEMPTS, state.upcoming_sleep, error,
        )  # fmt: skip

    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_after_delay(RETRY_WITHIN_S),
        wait=wait_random_exponential(multiplier=0.05, max=RETRY_MAX_WAIT_S),
        before_sleep=log_retry,
        reraise=True,
    )


def pool_problem(exc: BaseException, pool: PoolOptions) -> str | None:
    """A sentence naming the limit that was hit when no connection could be had, else None."""
    if isinstance(exc, sa_exc.TimeoutError):
        return (
            f"no database connection came free within {pool.timeout.total_seconds():g} s: all"
            f" {pool.limit} of this pool's connections are in use (PoolOptions size={pool.size}"
            f" + overflow={pool.overflow}); raise them, or lower the load"
        )
    for cause in _causes(exc):
        if getattr(cause, "sqlstate", None) == "53300":
            return (
                f"the database server refused a new connection ({cause}): its max_connections"
                f" or the role's CONNECTION LIMIT is reached; this pool may hold up to"
                f" {pool.limit} (PoolOptions size={pool.size} + overflow={pool.overflow}):"
                f" lower the pools of the processes sharing the server, or raise its limit"
            )
    return None
