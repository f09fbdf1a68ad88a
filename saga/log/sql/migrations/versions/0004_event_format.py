"""Each stored event's payload format, so a later format can be added while old sagas replay.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Every event stored before this revision is format 1 (the only format there was), which the
column's server default fills in; new events carry the format they were encoded in.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("saga_events") as batch:
        batch.add_column(sa.Column("format", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("saga_events") as batch:
        batch.drop_column("format")
