"""The async SQLAlchemy engine for the saga log, with the per-connection SQLite settings."""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from saga.sqlpool import PoolOptions

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another writer's lock before failing."""

WRITE = {"saga_write": True}
"""Execution options for a connection that will write: on SQLite it takes the write lock at
BEGIN (BEGIN IMMEDIATE), so it waits politely instead of failing on a stale read snapshot."""

_dumps = functools.partial(json.dumps, allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def make_engine(url: str, *, echo: bool = False, pool: PoolOptions | None = None) -> AsyncEngine:
    """An engine for a normalised URL (``sqlite+aiosqlite`` or ``postgresql+asyncpg``)."""
    engine = create_async_engine(
        url,
        echo=echo,
        json_serializer=_dumps,
        json_deserializer=json.loads,
        # Pre-ping (on by default) costs a round trip per checkout, but a group commit checks
        # out once for many sagas, and it keeps a server restart from failing the first
        # statement on every pooled connection; transient errors are retried in log.py.
        **(pool or PoolOptions()).engine_options(),
    )
    if engine.dialect.name == "sqlite":
        locked: type[Exception] = engine.dialect.loaded_dbapi.OperationalError

        def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            _sqlite_connect(dbapi_connection, locked)

        event.listen(engine.sync_engine, "connect", on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: DBAPIConnection, locked: type[Exception]) -> None:
    # The sqlite3 driver's own transaction handling skips BEGIN before SELECT and DDL, which
    # would make migrations non-transactional; SQLAlchemy emits BEGIN instead (_sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # FULL: a committed append survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Converting a new file to WAL can fail at once, without waiting for the busy timeout,
        # when another connection is converting it at the same moment. That happens only while
        # a database is first created, so short blocking sleeps are acceptable here (this
        # hook cannot await).
        for attempt in Retrying(
            retry=retry_if_exception_type(locked),
            stop=stop_after_delay(SQLITE_BUSY_TIMEOUT_MS / 1000),
            wait=wait_fixed(0.01),
            reraise=True,
        ):
            with attempt:
                cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    options: dict[str, Any] = dict(conn.get_execution_options())
    conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("saga_write") else "BEGIN")
