"""The idempotency records: one row per idempotency key.

Revision ID: 0001
Revises:
Create Date: 2026-11-30

Spelled out rather than taken from ``saga.participant.sql.metadata``, so that later schema
changes arrive through later revisions and this one never changes. A database made by
``create_all`` before the store had migrations holds exactly this table (and, from the
participant-edge release on, the one of 0002): ``saga.participant.migrate`` stamps it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saga_idempotency",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("claimed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("saga_idempotency")
