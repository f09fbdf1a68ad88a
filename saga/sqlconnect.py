"""Reaching a SQL database, shared by the SQL adapters (saga log, idempotency store).

One place turns what a user types into the async SQLAlchemy URL (``database_url``) and sets
up each new SQLite connection (``SqliteSetup.install``). Each adapter keeps its own rules
(which driver names it accepts, how durable a commit is) by passing a small frozen value;
this module sits below both layers, beside ``saga.sqlpool``, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from saga.redact import redact_url

SUPPORTED = "sqlite:///path/to/file.db or postgresql://user:password@host:port/database"
"""The URL forms every SQL adapter accepts, for error messages."""

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_BACKENDS = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}

WRITE = {"saga_write": True}
"""Execution options for a connection that will write: with ``SqliteSetup(immediate=
"on_write")`` it takes SQLite's write lock at BEGIN (BEGIN IMMEDIATE), so it waits politely
for another writer instead of failing on a stale read snapshot."""


@dataclass(frozen=True, kw_only=True)
class UrlRules:
    """What one adapter accepts as its database URL, and how it names itself in errors."""

    user: str
    """The adapter, as errors name it (``"SqlSagaLog"``)."""
    in_memory_instead: str
    """What to use instead of in-memory SQLite, for the error that refuses it."""
    any_driver: bool = False
    """Accept any SQLite or PostgreSQL driver name (``postgresql+psycopg2``) and swap in the
    async one; otherwise only the plain and the async forms are accepted."""
    require_database: bool = True
    """Refuse a PostgreSQL URL that names no database (rather than let the driver pick one)."""

    def __post_init__(self) -> None:
        if not self.user or not self.in_memory_instead:
            raise ValueError("UrlRules needs a user and an in-memory alternative to name")


def database_url(url: str | URL, rules: UrlRules) -> URL:
    """The async SQLAlchemy URL (``sqlite+aiosqlite``, ``postgresql+asyncpg``) for ``url``.

    ``postgres://`` is accepted for ``postgresql://``. In-memory SQLite is refused: each
    pooled connection would see its own empty database. Raises ValueError with a message
    for the user (the password hidden); each adapter turns it into its own error.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        raise ValueError(
            f"not a database URL: {shown!r}; {rules.user} expects {SUPPORTED}"
        ) from exc
    name = parsed.drivername.lower()
    backend_name, _, driver_name = name.partition("+")
    backend = _BACKENDS.get(backend_name)
    known = backend is not None and (
        rules.any_driver or driver_name in ("", _ASYNC_DRIVERS[backend].partition("+")[2])
    )
    if backend is None or not known:
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: {rules.user} supports"
            f" SQLite and PostgreSQL; expected {SUPPORTED}"
        )
    if backend == "sqlite" and _is_memory(parsed):
        raise ValueError(
            f"in-memory SQLite is not supported by {rules.user} (every pooled connection would"
            f" see a different database); give a file path, sqlite:///file.db, or use"
            f" {rules.in_memory_instead}"
        )
    if backend == "postgresql" and rules.require_database and not parsed.database:
        raise ValueError(f"the PostgreSQL URL names no database; {rules.user} expects {SUPPORTED}")
    return parsed.set(drivername=_ASYNC_DRIVERS[backend])


def _is_memory(parsed: URL) -> bool:
    database = parsed.database or ""
    return database == "" or ":memory:" in database or parsed.query.get("mode") == "memory"


@dataclass(frozen=True, kw_only=True)
class SqliteSetup:
    """How each new SQLite connection of an engine is set up (WAL, durability, locking).

    SQLAlchemy, not the sqlite3 driver, emits BEGIN: the driver skips it before SELECT and
    DDL (non-transactional migrations), and a read-then-write transaction that has to
    upgrade its lock is where deadlocks between processes on one file live.
    """

    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    """``FULL``: a commit survives power loss; ``NORMAL`` (with WAL): a process crash only."""
    busy_timeout: timedelta = timedelta(seconds=10)
    """How long a writer waits for another writer's lock before failing."""
    foreign_keys: bool = False
    """Enforce foreign keys (SQLite leaves them off by default)."""
    immediate: Literal["always", "on_write"] = "always"
    """``"always"``: every transaction takes the write lock at BEGIN (BEGIN IMMEDIATE);
    ``"on_write"``: only a connection with the ``WRITE`` execution options, others BEGIN."""

    def __post_init__(self) -> None:
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(
                f"SqliteSetup.synchronous must be FULL, NORMAL or EXTRA, not {self.synchronous!r}"
            )
        if not isinstance(self.busy_timeout, timedelta) or self.busy_timeout <= timedelta(0):
            raise ValueError(
                f"SqliteSetup.busy_timeout must be a positive timedelta, not {self.busy_timeout!r}"
            )
        if self.immediate not in ("always", "on_write"):
            raise ValueError(
                f"SqliteSetup.immediate must be 'always' or 'on_write', not {self.immediate!r}"
            )

    def install(self, engine: AsyncEngine) -> None:
        """Set up every connection ``engine`` opens, if it is a SQLite engine (else nothing)."""
        if engine.dialect.name != "sqlite":
            return
        locked: type[Exception] = engine.dialect.loaded_dbapi.OperationalError

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            self.configure(dbapi_connection, locked)

        event.listen(engine.sync_engine, "connect", on_connect)
        event.listen(engine.sync_engine, "begin", self._begin)

    def configure(self, dbapi_connection: Any, locked: type[Exception]) -> None:
        """Set up one DB-API connection (``sqlite3`` or SQLAlchemy's aiosqlite adapter): no
        driver-emitted BEGIN, then the pragmas. ``locked`` is the driver's OperationalError."""
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (see the class doc)
        timeout_ms = int(self.busy_timeout.total_seconds() * 1000)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute(f"PRAGMA synchronous = {self.synchronous}")
            if self.foreign_keys:
                cursor.execute("PRAGMA foreign_keys = ON")
            # Converting a new file to WAL can fail at once, without waiting for the busy
            # timeout, when another connection is converting it at the same moment. That
            # happens only while a database is first created, so short blocking sleeps are
            # acceptable here (this hook cannot await).
            for attempt in Retrying(
                retry=retry_if_exception_type(locked),
                stop=stop_after_delay(self.busy_timeout.total_seconds()),
                wait=wait_fixed(0.01),
                reraise=True,
            ):
                with attempt:
                    cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    def _begin(self, conn: Connection) -> None:
        immediate = self.immediate == "always" or bool(
            conn.get_execution_options().get("saga_write")
        )
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
