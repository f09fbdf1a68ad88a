"""payments: each customer has credit; an order reserves part of it, then captures or releases it.

Business state: ``accounts`` (credit still available), ``credit_reservations`` (one row per
order, unique: the business-level idempotency key) and ``credit_ledger`` (one row per effect,
deliberately not unique, so a command that acted twice would show as two rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from saga import CommandContext, Participant, Rejected
from saga.participant import IdempotencyStore
from services.common import Database, insert_missing, now_ms

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("customer", sa.String(100), primary_key=True),
    sa.Column("credit_limit", sa.BigInteger, nullable=False),
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.CheckConstraint("available >= 0", name="available_not_negative"),
)

reservations = sa.Table(
    "credit_reservations",
    metadata,
    sa.Column("order_id", sa.String(200), primary_key=True),
    sa.Column("customer", sa.String(100), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # reserved | released | captured
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

ledger = sa.Table(
    "credit_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(200), nullable=False),
    sa.Column("customer", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # reserve | release | capture
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

DEMO_ACCOUNTS: Mapping[str, int] = {
    "alice": 10_000_000,
    "bob": 10_000_000,
    "dave": 60_000,
    "carol": 100,
}
"""Credit in cents. carol can afford almost nothing; dave runs out after a few orders."""


async def seed(db: Database, credit: Mapping[str, int] = DEMO_ACCOUNTS) -> int:
    rows = [{"customer": c, "credit_limit": n, "available": n} for c, n in credit.items()]
    async with db.begin() as conn:
        return await insert_missing(conn, accounts, rows)


def build(db: Database, store: IdempotencyStore, *, instance: str | None = None) -> Participant:
    payments = Participant(
        "payments", store=store, instance=instance, description="customer credit"
    )

    @payments.command("reserve", transactional=store.joins_transactions)
    async def reserve(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
        order_id, customer, amount = _order(req), str(req.get("customer", "")), req.get("amount")
        if not isinstance(amount, int) or amount <= 0:
            raise Rejected(f"amount must be a positive integer, not {amount!r}", code="bad_amount")
        async with db.effect(ctx) as conn:
            existing = await _reservation(conn, order_id)
            if existing is not None:
                if existing["status"] == "released":
                    raise Rejected(f"order {order_id} was cancelled", code="order_cancelled")
                return _result(existing)
            taken = await conn.execute(
                sa.update(accounts)
                .where(accounts.c.customer == customer, accounts.c.available >= amount)
                .values(available=accounts.c.available - amount)
                .returning(accounts.c.available)
            )
            if taken.first() is None:
                known = await conn.execute(
                    sa.select(accounts.c.available).where(accounts.c.customer == customer)
                )
                row = known.first()
                if row is None:
                    raise Rejected(f"no customer {customer!r}", code="unknown_customer")
                raise Rejected(
                    f"{customer} has {row.available} available, the order needs {amount}",
                    code="insufficient_credit",
                )
            row_values = {"order_id": order_id, "customer": customer, "amount": amount}
            await conn.execute(
                reservations.insert().values(**row_values, status="reserved", updated_ms=now_ms())
            )
            await _record(conn, row_values, "reserve")
        return _result({**row_values, "status": "reserved"})

    @payments.command("release", transactional=store.joins_transactions)
    async def release(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
        order_id = _order(req)
        async with db.effect(ctx) as conn:
            existing = await _reservation(conn, order_id)
            if existing is None:
                # Nothing was reserved: leave a tombstone so a late reserve is refused.
                await conn.execute(
                    reservations.insert().values(
                        order_id=order_id, customer=str(req.get("customer", "")), amount=0,
                        status="released", updated_ms=now_ms(),
                    )
                )  # fmt: skip
                return {"order_id": order_id, "released": 0}
            if existing["status"] == "captured":
                raise Rejected(f"credit for {order_id} is captured already", code="captured")
            if await _set_status(conn, order_id, "reserved", "released"):
                await conn.execute(
                    sa.update(accounts)
                    .where(accounts.c.customer == existing["customer"])
                    .values(available=accounts.c.available + existing["amount"])
                )
                await _record(conn, existing, "release")
        return {"order_id": order_id, "released": existing["amount"]}

    @payments.command("capture", transactional=store.joins_transactions)
    async def capture(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
        order_id = _order(req)
        async with db.effect(ctx) as conn:
            existing = await _reservation(conn, order_id)
            if existing is None or existing["status"] == "released":
                # After the pivot this is a bug upstream, not a business "no": keep it visible
                # (retried, so the saga needs attention) rather than silently compensating.
                raise RuntimeError(f"no reserved credit to capture for order {order_id}")
            if await _set_status(conn, order_id, "reserved", "captured"):
                await _record(conn, existing, "capture")
        return {"order_id": order_id, "captured": existing["amount"]}

    return payments


def _order(req: dict[str, Any]) -> str:
    order_id = req.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise Rejected("the request has no order_id", code="bad_request")
    return order_id


def _result(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"order_id": row["order_id"], "customer": row["customer"], "amount": row["amount"]}


async def _reservation(conn: AsyncConnection, order_id: str) -> dict[str, Any] | None:
    found = await conn.execute(sa.select(reservations).where(reservations.c.order_id == order_id))
    row = found.first()
    return None if row is None else dict(row._mapping)


async def _set_status(conn: AsyncConnection, order_id: str, old: str, new: str) -> bool:
    """Move the reservation from ``old`` to ``new``; False if it was not in ``old`` (any more)."""
    moved = await conn.execute(
        sa.update(reservations)
        .where(reservations.c.order_id == order_id, reservations.c.status == old)
        .values(status=new, updated_ms=now_ms())
        .returning(reservations.c.order_id)
    )
    return moved.first() is not None


async def _record(conn: AsyncConnection, row: Mapping[str, Any], kind: str) -> None:
    await conn.execute(
        ledger.insert().values(
            order_id=row["order_id"], customer=row["customer"], kind=kind,
            amount=row["amount"], at_ms=now_ms(),
        )
    )  # fmt: skip
