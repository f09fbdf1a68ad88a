"""inventory: stock on hand per SKU; an order reserves all its line items or none of them.

Business state: ``stock`` (units available), ``stock_reservations`` (one row per order, unique:
the business-level idempotency key), ``stock_reservation_lines`` (what it holds) and
``stock_ledger`` (one row per effect per SKU, deliberately not unique).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from saga import CommandContext, Participant, Rejected
from saga.participant import IdempotencyStore
from services.common import Database, insert_missing, now_ms

metadata = sa.MetaData()

stock = sa.Table(
    "stock",
    metadata,
    sa.Column("sku", sa.String(100), primary_key=True),
    sa.Column("available", sa.Integer, nullable=False),
    sa.CheckConstraint("available >= 0", name="available_not_negative"),
)

reservations = sa.Table(
    "stock_reservations",
    metadata,
    sa.Column("order_id", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # reserved | released
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

lines = sa.Table(
    "stock_reservation_lines",
    metadata,
    sa.Column("order_id", sa.String(200), primary_key=True),
    sa.Column("sku", sa.String(100), primary_key=True),
    sa.Column("qty", sa.Integer, nullable=False),
)

ledger = sa.Table(
    "stock_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(200), nullable=False),
    sa.Column("sku", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # reserve | release
    sa.Column("qty", sa.Integer, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

DEMO_STOCK: Mapping[str, int] = {"apple": 100_000, "pear": 100_000, "fig": 20, "plum": 0}
"""Units on hand: plum is out of stock, fig runs out soon."""


async def seed(db: Database, units: Mapping[str, int] = DEMO_STOCK) -> int:
    async with db.begin() as conn:
        return await insert_missing(
            conn, stock, [{"sku": sku, "available": n} for sku, n in units.items()]
        )


def build(db: Database, store: IdempotencyStore, *, instance: str | None = None) -> Participant:
    inventory = Participant(
        "inventory", store=store, instance=instance, description="stock per SKU"
    )

    @inventory.command("reserve", transactional=store.joins_transactions)
    async def reserve(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
        order_id, wanted = _order(req), _items(req)
        async with db.effect(ctx) as conn:
            status = await _status(conn, order_id)
            if status == "released":
                raise Rejected(f"order {order_id} was cancelled", code="order_cancelled")
            if status == "reserved":
                return {"order_id": order_id, "items": await _lines(conn, order_id)}
            for sku, qty in sorted(wanted.items()):  # a fixed order: no lock cycles between orders
                taken = await conn.execute(
                    sa.update(stock)
                    .where(stock.c.sku == sku, stock.c.available >= qty)
                    .values(available=stock.c.available - qty)
                    .returning(stock.c.sku)
                )
                if taken.first() is None:
                    # Raising rolls back the lines reserved so far: all or nothing.
                    raise Rejected(f"{sku}: fewer than {qty} in stock", code="out_of_stock")
            await conn.execute(
                reservations.insert().values(
                    order_id=order_id, status="reserved", updated_ms=now_ms()
                )
            )
            for sku, qty in wanted.items():
                await conn.execute(lines.insert().values(order_id=order_id, sku=sku, qty=qty))
                await _record(conn, order_id, sku, qty, "reserve")
        return {"order_id": order_id, "items": [{"sku": s, "qty": q} for s, q in wanted.items()]}

    @inventory.command("release", transactional=store.joins_transactions)
    async def release(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
        order_id = _order(req)
        async with db.effect(ctx) as conn:
            status = await _status(conn, order_id)
            if status is None:
                # Nothing was reserved: leave a tombstone so a late reserve is refused.
                await conn.execute(
                    reservations.insert().values(
                        order_id=order_id, status="released", updated_ms=now_ms()
                    )
                )
                return {"order_id": order_id, "items": []}
            held = await _lines(conn, order_id)
            moved = await conn.execute(
                sa.update(reservations)
                .where(reservations.c.order_id == order_id, reservations.c.status == "reserved")
                .values(status="released", updated_ms=now_ms())
                .returning(reservations.c.order_id)
            )
            if moved.first() is not None:
                for line in held:
                    await conn.execute(
                        sa.update(stock)
                        .where(stock.c.sku == line["sku"])
                        .values(available=stock.c.available + line["qty"])
                    )
                    await _record(conn, order_id, line["sku"], line["qty"], "release")
        return {"order_id": order_id, "items": held}

    return inventory


def _order(req: dict[str, Any]) -> str:
    order_id = req.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise Rejected("the request has no order_id", code="bad_request")
    return order_id


def _items(req: dict[str, Any]) -> Counter[str]:
    wanted: Counter[str] = Counter()
    items = req.get("items")
    if not isinstance(items, list) or not items:
        raise Rejected("the request has no line items", code="bad_request")
    for item in items:
        sku, qty = (item.get("sku"), item.get("qty")) if isinstance(item, dict) else (None, None)
        if not isinstance(sku, str) or not isinstance(qty, int) or qty <= 0:
            raise Rejected(f"bad line item {item!r}", code="bad_request")
        wanted[sku] += qty
    return wanted


async def _status(conn: AsyncConnection, order_id: str) -> str | None:
    found = await conn.execute(
        sa.select(reservations.c.status).where(reservations.c.order_id == order_id)
    )
    row = found.first()
    return None if row is None else str(row.status)


async def _lines(conn: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    found = await conn.execute(
        sa.select(lines.c.sku, lines.c.qty)
        .where(lines.c.order_id == order_id)
        .order_by(lines.c.sku)
    )
    return [{"sku": row.sku, "qty": row.qty} for row in found]


async def _record(conn: AsyncConnection, order_id: str, sku: str, qty: int, kind: str) -> None:
    await conn.execute(
        ledger.insert().values(order_id=order_id, sku=sku, kind=kind, qty=qty, at_ms=now_ms())
    )
