"""Alembic environment: migrates the connection SqlIdempotencyStore passes in its config."""

from __future__ import annotations

from alembic import context

from saga.participant.sql import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "idempotency store migrations run from SqlIdempotencyStore.open() "
        "(saga.participant.migrate.upgrade), which passes a live connection; offline SQL "
        "generation is not supported"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=config.attributes["version_table"],
    render_as_batch=True,  # SQLite can only ALTER through batch (copy-and-move) operations
)
with context.begin_transaction():
    context.run_migrations()
