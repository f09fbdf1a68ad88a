"""Saga health in the sagas table, and indexes for the health, step and updated-time filters.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Existing unfinished sagas get a best-guess health from their status (stuck, or progressing);
the coordinator writes the exact value with the saga's next append.
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
    with op.batch_alter_table("sagas") as batch:
        batch.add_column(sa.Column("health", sa.String(), nullable=True))
    op.execute("UPDATE sagas SET health = 'stuck' WHERE status = 'stuck'")
    op.execute(
        "UPDATE sagas SET health = 'progressing' WHERE status IN ('running', 'compensating')"
    )
    op.create_index(
        "ix_sagas_health_created_ms_saga_id", "sagas", ["health", "created_ms", "saga_id"]
    )
    op.create_index(
        "ix_sagas_current_step_created_ms_saga_id",
        "sagas",
        ["current_step", "created_ms", "saga_id"],
    )
    op.create_index("ix_sagas_updated_ms_saga_id", "sagas", ["updated_ms", "saga_id"])


def downgrade() -> None:
    op.drop_index("ix_sagas_updated_ms_saga_id", table_name="sagas")
    op.drop_index("ix_sagas_current_step_created_ms_saga_id", table_name="sagas")
    op.drop_index("ix_sagas_health_created_ms_saga_id", table_name="sagas")
    with op.batch_alter_table("sagas") as batch:
        batch.drop_column("health")
