"""The saga log's tables as SQLAlchemy Core metadata: ``sagas``, ``saga_events``, and for
ownership ``saga_coordinators`` and ``saga_owners``.

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
    text,
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


UNFINISHED_SQL = "status IN ('running', 'compensating', 'stuck')"
"""The statuses a saga can still move from (``SagaStatus.is_final`` is the rest), in SQL."""

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
    # Ownership (saga.log.ownership): the coordinator driving the saga and the epoch of its
    # claim; every write checks the epoch in the same statement. Sagas stored before these
    # columns existed are unowned (epoch 0) and claimed by the first coordinator that looks.
    Column("owner", String, nullable=True),
    Column("epoch", Integer, nullable=False, server_default="0"),
    # What the saga waits for now (a wait step's outside event) and its earliest deadline
    # among accepted long-running steps and waits; None for sagas stored before them.
    Column("waiting_for", String, nullable=True),
    Column("due_ms", BigInteger, nullable=True),
    # One index per list filter; saga_id last so the keyset order needs no extra sort.
    Index(None, "status", "created_ms", "saga_id"),
    Index(None, "name", "created_ms", "saga_id"),
    Index(None, "created_ms", "saga_id"),
    Index(None, "health", "created_ms", "saga_id"),
    Index(None, "current_step", "created_ms", "saga_id"),
    Index(None, "waiting_for", "created_ms", "saga_id"),
    Index(None, "updated_ms", "saga_id"),
    # Claims look for unfinished sagas with no owner or a dead one; a partial index keeps
    # finished sagas (nearly all of them, in time) out of it and off its upkeep.
    Index(
        "ix_sagas_owner_unfinished",
        "owner",
        postgresql_where=text(UNFINISHED_SQL),
        sqlite_where=text(UNFINISHED_SQL),
    ),
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
    # The owner's epoch when the event was written (None before ownership existed): with
    # ``saga_owners`` it shows that no two coordinators' decisions interleave.
    Column("epoch", Integer, nullable=True),
    # Two writers can never both store seq n of one saga.
    PrimaryKeyConstraint("saga_id", "seq"),
)

saga_coordinators = Table(
    "saga_coordinators",
    metadata,
    # One row per coordinator process start (an incarnation): ``<name>-<random>``.
    Column("coordinator_id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("started_ms", BigInteger, nullable=False),
    Column("renewed_ms", BigInteger, nullable=False),
    # The lease, in the database's clock: alive while lease_until_ms is in the future.
    Column("lease_until_ms", BigInteger, nullable=False),
    Column("stopped_ms", BigInteger, nullable=True),
    Column("api_url", String, nullable=True),
    # Load and counters as of the last renewal.
    Column("sagas", Integer, nullable=False, server_default="0"),
    Column("in_flight", Integer, nullable=False, server_default="0"),
    Column("fenced_writes", Integer, nullable=False, server_default="0"),
    Index(None, "lease_until_ms"),
)

saga_owners = Table(
    "saga_owners",
    metadata,
    # Every claim of a saga: who took it at which epoch, from whom (None: it had no owner),
    # and the saga's last seq then (its events after that seq are the new owner's).
    Column("saga_id", saga_id_type(), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("owner", String, nullable=False),
    Column("previous", String, nullable=True),
    Column("after_seq", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("saga_id", "epoch"),
)
