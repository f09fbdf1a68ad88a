"""orders: an order is created pending, then approved (the pivot) or rejected (compensation).

Business state: ``orders`` (one row per order id, unique: the business-level idempotency key)
and ``order_history`` (one row per transition, deliberately not unique).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from saga import CommandContext, Participant, Rejected
from saga.participant import IdempotencyStore
from services.common import Database, now_ms

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(200), primary_key=True),
    sa.Column("customer", sa.String(100), nullable=False),
    sa.Column("items", sa.Text, nullable=False),  # JSON: [{"sku", "qty", "unit_price"}]
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | approved | rejected
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

history = sa.Table(
    "order_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)


async def seed(db: Database) -> int:
    """Orders start empty; nothing to seed."""
    return 0


def build(db: Database, store: IdempotencyStore, *, instance: str | None = None) -> Participant:
    service = Participant(
        "orders", store=store, instance=instance, description="orders and their approval"
    )

    @service.command("create", transactional=store.joins_transactions)
    async def create(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
        order_id, customer, items = _order(req), req.get("customer"), _items(req)
        if not isinstance(customer, str) or not customer:
            raise Rejected("the order names no customer", code="bad_request")
        total = sum(item["qty"] * item["unit_price"] for item in items)
        async with db.effect(ctx) as conn:
            existing = await _get(conn, order_id)
            if existing is None:
                await conn.execute(
                    orders.insert().values(
                        order_id=order_id, customer=customer, items=json.dumps(items),
                        total=total, status="pending", updated_ms=now_ms(),
                    )
                )  # fmt: skip
                await _record(conn, order_id, "pending")
            elif existing["status"] == "rejected":
                raise Rejected(f"order {order_id} was rejected", code="order_rejected")
            else:
                total = existing["total"]
        return {"order_id": order_id, "total": total}

    @service.command("approve", transactional=store.joins_transactions)
    async def approve(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
        order_id = _order(req)
        async with db.effect(ctx) as conn:
            if not await _move(conn, order_id, "pending", "approved"):
                existing = await _get(conn, order_id)
                if existing is None or existing["status"] != "approved":
                    status = "missing" if existing is None else existing["status"]
                    raise Rejected(f"order {order_id} is {status}", code="not_pending")
        return {"order_id": order_id, "status": "approved"}

    @service.command("reject", transactional=store.joins_transactions)
    async def reject(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
        order_id = _order(req)
        async with db.effect(ctx) as conn:
            existing = await _get(conn, order_id)
            if existing is None:
                # The create never ran here: record the order as rejected, so a late create
                # is refused rather than leaving a pending order behind.
                await conn.execute(
                    orders.insert().values(
                        order_id=order_id, customer=str(req.get("customer", "")), items="[]",
                        total=0, status="rejected", reason="compensated", updated_ms=now_ms(),
                    )
                )  # fmt: skip
                await _record(conn, order_id, "rejected")
            elif existing["status"] == "approved":
                raise Rejected(f"order {order_id} is approved already", code="approved")
            else:
                await _move(conn, order_id, "pending", "rejected")
        return {"order_id": order_id, "status": "rejected"}

    return service


def _order(req: dict[str, Any]) -> str:
    order_id = req.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise Rejected("the request has no order_id", code="bad_request")
    return order_id


def _items(req: dict[str, Any]) -> list[dict[str, Any]]:
    items = req.get("items")
    if not isinstance(items, list) or not items:
        raise Rejected("the order has no line items", code="bad_request")
    clean = []
    for item in items:
        fields = (
            [item.get(k) for k in ("sku", "qty", "unit_price")] if isinstance(item, dict) else []
        )
        if len(fields) != 3 or not isinstance(fields[0], str):
            raise Rejected(f"bad line item {item!r}", code="bad_request")
        sku, qty, price = fields
        if not isinstance(qty, int) or not isinstance(price, int) or qty <= 0 or price < 0:
            raise Rejected(f"bad line item {item!r}", code="bad_request")
        clean.append({"sku": sku, "qty": qty, "unit_price": price})
    return clean


async def _get(conn: AsyncConnection, order_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(orders).where(orders.c.order_id == order_id))).first()
    return None if row is None else dict(row._mapping)


async def _move(conn: AsyncConnection, order_id: str, old: str, new: str) -> bool:
    moved = await conn.execute(
        sa.update(orders)
        .where(orders.c.order_id == order_id, orders.c.status == old)
        .values(status=new, updated_ms=now_ms())
        .returning(orders.c.order_id)
    )
    if moved.first() is None:
        return False
    await _record(conn, order_id, new)
    return True


async def _record(conn: AsyncConnection, order_id: str, status: str) -> None:
    await conn.execute(history.insert().values(order_id=order_id, status=status, at_ms=now_ms()))
