"""The idempotency store's schema migrations: Alembic, run from inside the installed package.

The store keeps its own history (``saga_idempotency_version``), apart from the saga log's and
from any application's own Alembic history, since all three may share one database. A
database made before the store had migrations (its tables created by ``create_all``, no
version row) is adopted: stamped at the revision its tables match, then upgraded, keeping
every record.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from saga.errors import IdempotencyStoreError
from saga.sqlmigrate import MigrationHistory

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
"""Alembic's script directory, shipped as package data."""

VERSION_TABLE = "saga_idempotency_version"
"""The store's own version table (the saga log's is ``saga_alembic_version``)."""

HISTORY = MigrationHistory(
    scripts=MIGRATIONS,
    version_table=VERSION_TABLE,
    what="idempotency store",
    error=IdempotencyStoreError,
    lock_name="saga-coordinator:idempotency-migrations",
)
alembic_config = HISTORY.config
head_revision = HISTORY.head

_ADOPTED = (("saga_idempotency_store", "0002"), ("saga_idempotency", "0001"))
"""For a database without a version row: a table made by ``create_all`` and the revision
whose schema holds it, newest first."""


def current_revision(connection: Connection) -> str | None:
    """The revision a database's idempotency store is at (None: never migrated)."""
    return HISTORY.current(connection)


async def upgrade(engine: AsyncEngine) -> None:
    """Create, adopt or upgrade the store's schema to head, in one transaction.

    Safe from several replicas at once: on PostgreSQL a transaction-scoped advisory lock
    serialises them; on SQLite the store's engine begins with BEGIN IMMEDIATE (the database's
    write lock). An engine the caller made may not, so a clash on creating a table is tried
    again: the transaction rolled back, and the next try finds the schema at head.
    """
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(
            (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError)
        ),
        stop=stop_after_attempt(3),
        wait=wait_random(0.05, 0.2),
        reraise=True,
    ):
        with attempt:
            async with engine.begin() as conn:
                await HISTORY.lock(conn)
                await conn.run_sync(HISTORY.upgrade, _adopt)


def _adopt(connection: Connection, config: Config) -> None:
    """Stamp a database whose tables ``create_all`` made (before migrations) at their revision."""
    if current_revision(connection) is not None:
        return
    inspector = sa.inspect(connection)
    for table, revision in _ADOPTED:
        if inspector.has_table(table):
            logger.info(
                "idempotency store: adopting tables made before migrations, at revision %s",
                revision,
            )
            command.stamp(config, revision)
            return
