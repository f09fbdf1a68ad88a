"""The async SQLAlchemy engine for the saga log, with the per-connection SQLite settings."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from saga.sqlconnect import WRITE, SqliteSetup
from saga.sqlpool import PoolOptions

__all__ = ["SQLITE", "WRITE", "dumps_json", "make_engine"]

SQLITE = SqliteSetup(
    # FULL: a committed append survives power loss, not only a process crash.
    synchronous="FULL",
    busy_timeout=timedelta(seconds=10),
    foreign_keys=True,
    # Readers begin deferred; a writer (WRITE) takes the lock at BEGIN and waits its turn.
    immediate="on_write",
)
"""How the saga log sets up each SQLite connection."""

dumps_json = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode
"""How the log's JSON columns are encoded (SQLAlchemy's serialiser, and the SQLite writer's)."""

IDLE_IN_TRANSACTION_TIMEOUT_MS = 15_000
"""PostgreSQL ends a log session idle this long inside a transaction. The log's transactions
never wait between statements, so only a coordinator that was paused (or cut off) mid-commit
hits it; its row locks are then released, and the sagas it held can be taken over instead of
waiting for it to resume. Its commit fails and is fenced when retried."""


def make_engine(url: str, *, echo: bool = False, pool: PoolOptions | None = None) -> AsyncEngine:
    """An engine for a normalised URL (``sqlite+aiosqlite`` or ``postgresql+asyncpg``)."""
    postgres = url.startswith("postgresql")
    engine = create_async_engine(
        url,
        echo=echo,
        connect_args=(
            {
                "server_settings": {
                    "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_TIMEOUT_MS)
                }
            }
            if postgres
            else {}
        ),
        json_serializer=dumps_json,
        json_deserializer=json.loads,
        # Pre-ping (on by default) costs a round trip per checkout, but a group commit checks
        # out once for many sagas, and it keeps a server restart from failing the first
        # statement on every pooled connection; transient errors are retried in log.py.
        **(pool or PoolOptions()).engine_options(),
    )
    SQLITE.install(engine)
    return engine
