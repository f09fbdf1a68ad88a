"""What each saga waits for, and when it is next due, in the sagas table, for the list view.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

``waiting_for`` is the outside event a saga's wait step waits for now, with an index for the
list filter; ``due_ms`` the earliest deadline among its accepted long-running steps and its
waits. Sagas stored before this revision get neither (null): none of them can be waiting or
accepted, since the events that say so did not exist; the coordinator writes both with the
saga's next append.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        batch.add_column(sa.Column("waiting_for", sa.String(), nullable=True))
        batch.add_column(sa.Column("due_ms", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_sagas_waiting_for_created_ms_saga_id",
        "sagas",
        ["waiting_for", "created_ms", "saga_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_sagas_waiting_for_created_ms_saga_id", table_name="sagas")
    with op.batch_alter_table("sagas") as batch:
        batch.drop_column("due_ms")
        batch.drop_column("waiting_for")
