"""The initial saga log: the sagas table and the saga_events log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Spelled out rather than taken from schema.metadata, so that later schema changes arrive
through later revisions and this one never changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _saga_id() -> sa.types.TypeEngine[str]:
    return sa.String().with_variant(sa.String(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sagas",
        sa.Column("saga_id", _saga_id(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("current_step", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("saga_id", name="pk_sagas"),
    )
    op.create_index(
        "ix_sagas_status_created_ms_saga_id", "sagas", ["status", "created_ms", "saga_id"]
    )
    op.create_index("ix_sagas_name_created_ms_saga_id", "sagas", ["name", "created_ms", "saga_id"])
    op.create_index("ix_sagas_created_ms_saga_id", "sagas", ["created_ms", "saga_id"])
    op.create_table(
        "saga_events",
        sa.Column("saga_id", _saga_id(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["saga_id"], ["sagas.saga_id"], name="fk_saga_events_saga_id_sagas"
        ),
        sa.PrimaryKeyConstraint("saga_id", "seq", name="pk_saga_events"),
    )


def downgrade() -> None:
    op.drop_table("saga_events")
    op.drop_index("ix_sagas_created_ms_saga_id", table_name="sagas")
    op.drop_index("ix_sagas_name_created_ms_saga_id", table_name="sagas")
    op.drop_index("ix_sagas_status_created_ms_saga_id", table_name="sagas")
    op.drop_table("sagas")
