"""The current step's attempt number in the sagas table, for the list view.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Existing sagas get no value (null); the coordinator writes it with the saga's next append.
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
    with op.batch_alter_table("sagas") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        batch.drop_column("attempt")
