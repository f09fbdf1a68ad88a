"""The saga log's tables as SQLAlchemy Core metadata: ``sagas`` and ``saga_events``.

The migrations in ``migrations/versions`` create exactly this schema; a test compares them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def saga_id_type() -> TypeEngine[str]:
    """Saga ids compare bytewise everywhere, so keyset pages order the same on every backend.

    SQLite's default collation is already bytewise; PostgreSQL's depends on the database's
    locale unless the column says "C".
    """
    return String().with_variant(String(collation="C"), "postgresql")


metadata = MetaData(naming_convention=NAMING_CONVENTION)

sagas = Table(
    "sagas",
    metadata,
    Column("saga_id", saga_id_type(), primary_key=True),
    Column("name", String, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String, nullable=False),
    Column("input", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("current_step", String, nullable=True),
    Column("attempt", Integer, nullable=True),
    Column("health", String, nullable=True),
    # One index per list filter; saga_id last so the keyset order needs no extra sort.
    Index(None, "status", "created_ms", "saga_id"),
    Index(None, "name", "created_ms", "saga_id"),
    Index(None, "created_ms", "saga_id"),
    Index(None, "health", "created_ms", "saga_id"),
    Index(None, "current_step", "created_ms", "saga_id"),
    Index(None, "updated_ms", "saga_id"),
)

saga_events = Table(
    "saga_events",
    metadata,
    Column("saga_id", saga_id_type(), ForeignKey("sagas.saga_id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String, nullable=False),
    Column("data", JSON, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    # The format ``data`` is encoded in (saga.events.EVENT_FORMAT when written); events stored
    # before the column existed are format 1, which its server default says.
    Column("format", Integer, nullable=False, server_default="1"),
    # Two writers can never both store seq n of one saga.
    PrimaryKeyConstraint("saga_id", "seq"),
)
