"""The store's identity: one row with a random id, made by the first process to open it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Replicas announce the identity so that two replicas on different stores are noticed. The row
itself is written by ``SqlIdempotencyStore.open()``, not here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saga_idempotency_store",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("saga_idempotency_store")
