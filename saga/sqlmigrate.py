"""One Alembic history run from inside the installed package, for the saga log and the store.

Each has its own script directory and version table, so the saga log, the idempotency store
and an application's own Alembic history can share one database and keep apart. No
``alembic.ini``: the config is built here, and ``env.py`` migrates the live connection passed
in ``config.attributes`` (``run_env``); offline SQL generation is not supported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection

from saga.errors import SagaError

Adopt = Callable[[Connection, Config], None]
"""Called before an upgrade, inside its transaction: e.g. stamp tables made without Alembic."""


@dataclass(frozen=True, kw_only=True)
class MigrationHistory:
    """One package's migrations: where its scripts are, its version table, its errors."""

    scripts: Path
    """Alembic's script directory (shipped as package data)."""
    version_table: str
    """The table that records this history's revision."""
    what: str
    """What is migrated, for messages: ``"saga log"``."""
    error: type[SagaError]
    """The error raised when the history cannot be read or applied."""
    lock_name: str
    """Names the PostgreSQL advisory lock that serialises concurrent upgrades."""

    def config(self, connection: Connection | None = None) -> Config:
        """An Alembic config for these migrations, carrying ``connection`` to ``env.py``."""
        config = Config()
        config.set_main_option("script_location", str(self.scripts))
        config.set_main_option("path_separator", "os")
        config.attributes["connection"] = connection
        config.attributes["version_table"] = self.version_table
        return config

    def head(self) -> str:
        """The newest revision this release knows."""
        head = ScriptDirectory.from_config(self.config()).get_current_head()
        if head is None:  # pragma: no cover - the package ships its revisions
            raise self.error(f"no {self.what} migrations found in {self.scripts}")
        return head

    def known(self) -> set[str]:
        """Every revision this release knows."""
        return {rev.revision for rev in ScriptDirectory.from_config(self.config()).walk_revisions()}

    def current(self, connection: Connection) -> str | None:
        """The revision a database is at (None: this history never ran there)."""
        found = MigrationContext.configure(connection, opts={"version_table": self.version_table})
        return found.get_current_revision()

    async def lock(self, conn: AsyncConnection) -> None:
        """On PostgreSQL, a transaction-scoped advisory lock: concurrent upgrades take turns.
        (SQLite needs none: its upgrading transaction holds the database's write lock.)"""
        if conn.dialect.name == "postgresql":
            digest = hashlib.sha256(self.lock_name.encode()).digest()
            key = int.from_bytes(digest[:8], "big", signed=True)
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def upgrade(self, connection: Connection, adopt: Adopt | None = None) -> None:
        """Upgrade ``connection``'s database to head (``adopt`` runs first); ``error`` if the
        history cannot be applied (for example a newer release made the database)."""
        config = self.config(connection)
        try:
            if adopt is not None:
                adopt(connection, config)
            command.upgrade(config, "head")
        except CommandError as exc:
            raise self.error(
                f"cannot migrate the {self.what} from schema revision"
                f" {self.current(connection)!r} to {self.head()!r} (was the database created by"
                f" a newer saga-coordinator?): {exc}"
            ) from exc


def run_env(metadata: MetaData, runner: str) -> None:
    """The body of an ``env.py``: migrate the live connection the config carries.

    ``runner`` names the function that passes it, for the error when there is none.
    """
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None or context.is_offline_mode():
        raise RuntimeError(
            f"these migrations run from {runner}, which passes a live connection;"
            " offline SQL generation is not supported"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=config.attributes["version_table"],
        render_as_batch=True,  # SQLite can only ALTER through batch (copy-and-move) operations
    )
    with context.begin_transaction():
        context.run_migrations()
