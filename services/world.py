"""The example shop's books: seeding credit and stock, and the business invariants they keep.

``saga soak`` (through ``saga.checkout``) and the test suite check a run with these. The
invariants are read from the services' own databases, never from the saga log, so they
say what the business sees: money and stock are conserved, every reservation is either
captured for a completed order or released, and no command had its effect twice (each
service's ledger has at most one row per order and kind of effect).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from services import inventory, orders, payments, shipping
from services.common import Database


@dataclass(frozen=True)
class World:
    """A shop before a run: each customer's credit, each SKU's stock, and the orders to run."""

    credit: dict[str, int]
    """Each customer's credit before the first order."""
    stock: dict[str, int]
    """Each SKU's stock before the first order."""
    orders: list[dict[str, Any]]
    """Saga inputs; each order id is also its saga id."""


async def seed(world: World, urls: dict[str, str]) -> None:
    """Put the world's credit and stock into the payments and inventory databases."""
    for service, amounts in ((payments, world.credit), (inventory, world.stock)):
        name = service.__name__.rsplit(".", 1)[-1]
        db = Database(urls[name], service.metadata)
        await db.open()
        try:
            await service.seed(db, amounts)
        finally:
            await db.close()


async def _rows(url: str, metadata: sa.MetaData, table: sa.Table) -> list[dict[str, Any]]:
    db = Database(url, metadata)
    try:
        async with db.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(sa.select(table))]
    finally:
        await db.close()


def _repeats(rows: list[dict[str, Any]], *key: str) -> int:
    seen = Counter(tuple(row[k] for k in key) for row in rows)
    return sum(n - 1 for n in seen.values())


async def effects_twice(urls: dict[str, str]) -> int:
    """How many effects the services' ledgers record once too often (0 in a sound shop)."""
    ledgers = [
        (urls["orders"], orders.metadata, orders.history, ("order_id", "status")),
        (urls["payments"], payments.metadata, payments.ledger, ("order_id", "kind")),
        (urls["inventory"], inventory.metadata, inventory.ledger, ("order_id", "sku", "kind")),
        (urls["shipping"], shipping.metadata, shipping.shipments, ("order_id",)),
    ]
    return sum([_repeats(await _rows(u, m, t), *key) for u, m, t, key in ledgers])


def _once_each(rows: list[dict[str, Any]], *key: str) -> None:
    seen = Counter(tuple(row[k] for k in key) for row in rows)
    twice = {k: n for k, n in seen.items() if n > 1}
    assert not twice, f"effects recorded more than once: {twice}"


async def check_invariants(world: World, completed: set[str], urls: dict[str, str]) -> None:
    """Every order is completed or compensated (the caller checked the log); now the business."""
    everyone = {o["order_id"] for o in world.orders}
    compensated = everyone - completed
    inputs = {o["order_id"]: o for o in world.orders}

    # orders: none pending; approved exactly for the completed sagas.
    order_rows = {
        r["order_id"]: r for r in await _rows(urls["orders"], orders.metadata, orders.orders)
    }
    assert set(order_rows) == everyone
    assert {k for k, r in order_rows.items() if r["status"] == "approved"} == completed
    assert {k for k, r in order_rows.items() if r["status"] == "rejected"} == compensated
    history = await _rows(urls["orders"], orders.metadata, orders.history)
    _once_each(history, "order_id", "status")

    # payments: captured for completed orders, released (or never reserved) otherwise.
    holds = {
        r["order_id"]: r
        for r in await _rows(urls["payments"], payments.metadata, payments.reservations)
    }
    assert not [k for k, r in holds.items() if r["status"] == "reserved"], "credit left reserved"
    assert {k for k, r in holds.items() if r["status"] == "captured"} == completed
    for order_id in completed:
        assert holds[order_id]["amount"] == order_rows[order_id]["total"]
        assert holds[order_id]["customer"] == inputs[order_id]["customer"]
    ledger = await _rows(urls["payments"], payments.metadata, payments.ledger)
    _once_each(ledger, "order_id", "kind")
    spent: Counter[str] = Counter()
    for row in ledger:
        spent[row["customer"]] += {"reserve": 1, "release": -1, "capture": 0}[row["kind"]] * row[
            "amount"
        ]
    accounts = await _rows(urls["payments"], payments.metadata, payments.accounts)
    captured: Counter[str] = Counter()
    for order_id in completed:
        captured[holds[order_id]["customer"]] += holds[order_id]["amount"]
    for account in accounts:
        customer = account["customer"]
        assert account["available"] + captured[customer] == world.credit[customer], customer
        assert world.credit[customer] - spent[customer] == account["available"], customer

    # inventory: every stock reservation belongs to a completed order; stock is conserved.
    reserved = await _rows(urls["inventory"], inventory.metadata, inventory.reservations)
    assert {r["order_id"] for r in reserved if r["status"] == "reserved"} == completed
    assert {r["order_id"] for r in reserved if r["status"] != "reserved"} <= compensated
    lines = await _rows(urls["inventory"], inventory.metadata, inventory.lines)
    held: Counter[str] = Counter()
    by_order: dict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        by_order[line["order_id"]][line["sku"]] += line["qty"]
        if line["order_id"] in completed:
            held[line["sku"]] += line["qty"]
    for order_id in completed:
        wanted: Counter[str] = Counter()
        for item in inputs[order_id]["items"]:
            wanted[item["sku"]] += item["qty"]
        assert by_order[order_id] == wanted, order_id
    stock_ledger = await _rows(urls["inventory"], inventory.metadata, inventory.ledger)
    _once_each(stock_ledger, "order_id", "sku", "kind")
    for row in await _rows(urls["inventory"], inventory.metadata, inventory.stock):
        assert row["available"] + held[row["sku"]] == world.stock[row["sku"]], row["sku"]

    # shipping: one delivery per completed order, none for the others.
    deliveries = await _rows(urls["shipping"], shipping.metadata, shipping.shipments)
    _once_each(deliveries, "order_id")
    assert {r["order_id"] for r in deliveries} == completed
