"""Ownership: each unfinished saga's owner and epoch, the coordinators' leases, and the
history of claims.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Sagas stored before this revision have no owner (epoch 0): the first coordinator that looks
claims them, as recovery always resumed them. Their events keep no epoch (NULL).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNFINISHED = "status IN ('running', 'compensating', 'stuck')"


def _saga_id() -> sa.types.TypeEngine[str]:
    return sa.String().with_variant(sa.String(collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        batch.add_column(sa.Column("owner", sa.String(), nullable=True))
        batch.add_column(sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"))
    op.create_index(
        "ix_sagas_owner_unfinished",
        "sagas",
        ["owner"],
        postgresql_where=sa.text(_UNFINISHED),
        sqlite_where=sa.text(_UNFINISHED),
    )
    with op.batch_alter_table("saga_events") as batch:
        batch.add_column(sa.Column("epoch", sa.Integer(), nullable=True))
    op.create_table(
        "saga_coordinators",
        sa.Column("coordinator_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("renewed_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("stopped_ms", sa.BigInteger(), nullable=True),
        sa.Column("api_url", sa.String(), nullable=True),
        sa.Column("sagas", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("in_flight", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("fenced_writes", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("coordinator_id", name="pk_saga_coordinators"),
    )
    op.create_index("ix_saga_coordinators_lease_until_ms", "saga_coordinators", ["lease_until_ms"])
    op.create_table(
        "saga_owners",
        sa.Column("saga_id", _saga_id(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("previous", sa.String(), nullable=True),
        sa.Column("after_seq", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("saga_id", "epoch", name="pk_saga_owners"),
    )


def downgrade() -> None:
    op.drop_table("saga_owners")
    op.drop_index("ix_saga_coordinators_lease_until_ms", table_name="saga_coordinators")
    op.drop_table("saga_coordinators")
    with op.batch_alter_table("saga_events") as batch:
        batch.drop_column("epoch")
    op.drop_index("ix_sagas_owner_unfinished", table_name="sagas")
    with op.batch_alter_table("sagas") as batch:
        batch.drop_column("epoch")
        batch.drop_column("owner")
