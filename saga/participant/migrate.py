"""The idempotency store's schema migrations: Alembic, run from inside the installed package.

The store keeps its own history (``saga_idempotency_version``), apart from the saga log's and
from any application's own Alembic history, since all three may share one database. A
database made before the store had migrations (its tables created by ``create_all``, no
version row) is adopted: stamped at the revision its tables match, then upgraded, keeping
every record.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from saga.errors import IdempotencyStoreError

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
"""Alembic's script directory, shipped as package data."""

VERSION_TABLE = "saga_idempotency_version"
"""The store's own version table (the saga log's is ``saga_alembic_version``)."""

_ADOPTED = (("saga_idempotency_store", "0002"), ("saga_idempotency", "0001"))
"""For a database without a version row: a table made by ``create_all`` and the revision
whose schema holds it, newest first."""

_PG_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"saga-coordinator:idempotency-migrations").digest()[:8], "big", signed=True
)
"""The PostgreSQL advisory lock that serialises replicas upgrading at the same time."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the idempotency store's migrations; no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


def head_revision() -> str:
    """The newest schema revision of the idempotency store this release knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its revisions
        raise IdempotencyStoreError(f"no idempotency store migrations found in {MIGRATIONS}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database's idempotency store is at (None: never migrated)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


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
                if engine.dialect.name == "postgresql":
                    await conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
                    )
                await conn.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    config = alembic_config(connection)
    try:
        if current_revision(connection) is None:
            adopted = _adopted_revision(connection)
            if adopted is not None:
                logger.info(
                    "idempotency store: adopting tables made before migrations, at revision %s",
                    adopted,
                )
                command.stamp(config, adopted)
        command.upgrade(config, "head")
    except CommandError as exc:
        found = current_revision(connection)
        raise IdempotencyStoreError(
            f"cannot migrate the idempotency store from schema revision {found!r} to"
            f" {head_revision()!r} (was the database made by a newer saga-coordinator?): {exc}"
        ) from exc


def _adopted_revision(connection: Connection) -> str | None:
    inspector = sa.inspect(connection)
    for table, revision in _ADOPTED:
        if inspector.has_table(table):
            return revision
    return None
