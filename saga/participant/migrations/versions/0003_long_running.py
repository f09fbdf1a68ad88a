"""Long-running commands: a heartbeat count and the accepted attempt on each record.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A record may now be in state ``accepted`` (a handler answered ``ctx.accept()``); its
completion is recorded later on the same row. ``heartbeats`` counts the completer's heartbeats
while accepted; ``attempt`` is the command's attempt that was accepted, so that a failure its
completer records answers repeats of that attempt and only a retry runs the handler again.
The revision also keeps an older SDK, which cannot read an ``accepted`` record, from opening
the store (it refuses a schema newer than it knows).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A database adopted from create_all (see saga.participant.migrate) may have been made
    # from a metadata that holds these columns already.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("saga_idempotency")}
    if "heartbeats" not in present:
        op.add_column(
            "saga_idempotency",
            sa.Column("heartbeats", sa.BigInteger(), nullable=False, server_default="0"),
        )
    if "attempt" not in present:
        op.add_column("saga_idempotency", sa.Column("attempt", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("saga_idempotency") as batch:
        batch.drop_column("attempt")
        batch.drop_column("heartbeats")
