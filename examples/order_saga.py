"""The order saga: create order -> reserve credit -> reserve stock -> approve (pivot) -> capture
credit -> schedule shipping, over the ``services/`` participants.

A rejection before the pivot (not enough credit, out of stock) compensates what was done, in
reverse: stock released, credit released, order rejected. After the pivot, capturing the credit
and scheduling the delivery are retried until they succeed.

Run one order against running services (``saga dev`` prints the NATS URL)::

    python -m examples.order_saga --nats nats://127.0.0.1:PORT alice apple:2 fig:1
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from saga import Coordinator, NatsTransport, RetryPolicy, Saga, SqlSagaLog, Step, StepKind

PRICES = {"apple": 120, "pear": 150, "fig": 900, "plum": 300}
"""Unit prices in cents of the SKUs ``services.inventory`` seeds."""

QUICK = RetryPolicy(initial_interval=timedelta(milliseconds=200), max_attempts=4)
AFTER_PIVOT = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    max_interval=timedelta(seconds=2),
    max_attempts=None,
)
"""Retried until it succeeds, at most two seconds apart."""


def _order_id(results: Mapping[str, Any]) -> str:
    return str(results["create_order"]["order_id"])


ORDER_SAGA = Saga(
    name="order",
    version=1,
    steps=(
        Step(
            name="create_order", service="orders", command="create", compensation="reject",
            retry=QUICK, timeout=timedelta(seconds=5),
        ),
        Step(
            name="reserve_credit", service="payments", command="reserve", compensation="release",
            request=lambda order, results: {
                "order_id": _order_id(results),
                "customer": order["customer"],
                "amount": results["create_order"]["total"],
            },
            retry=QUICK, timeout=timedelta(seconds=5),
        ),
        Step(
            name="reserve_stock", service="inventory", command="reserve", compensation="release",
            request=lambda order, results: {
                "order_id": _order_id(results),
                "items": [{"sku": i["sku"], "qty": i["qty"]} for i in order["items"]],
            },
            retry=QUICK, timeout=timedelta(seconds=5),
        ),
        Step(
            name="approve_order", service="orders", command="approve", kind=StepKind.PIVOT,
            request=lambda order, results: {"order_id": _order_id(results)},
            retry=QUICK, timeout=timedelta(seconds=5),
        ),
        Step(
            name="capture_credit", service="payments", command="capture",
            kind=StepKind.RETRIABLE, retry=AFTER_PIVOT, timeout=timedelta(seconds=5),
            request=lambda order, results: {"order_id": _order_id(results)},
        ),
        Step(
            name="schedule_shipping", service="shipping", command="schedule",
            kind=StepKind.RETRIABLE, retry=AFTER_PIVOT, timeout=timedelta(seconds=5),
            request=lambda order, results: {
                "order_id": _order_id(results),
                "customer": order["customer"],
                "items": order["items"],
            },
        ),
    ),
    deadline=timedelta(minutes=10),
)  # fmt: skip


def order_input(
    customer: str, items: dict[str, int], order_id: str | None = None
) -> dict[str, Any]:
    """The saga input for ``customer`` buying ``{sku: qty}`` at the catalogue prices."""
    return {
        "order_id": order_id or f"order-{uuid.uuid4().hex[:12]}",
        "customer": customer,
        "items": [
            {"sku": sku, "qty": qty, "unit_price": PRICES.get(sku, 100)}
            for sku, qty in items.items()
        ],
    }


def _parse_items(specs: Sequence[str]) -> dict[str, int]:
    items: dict[str, int] = {}
    for spec in specs:
        sku, _, qty = spec.partition(":")
        if not sku or not (qty or "1").isdigit():
            raise click.BadParameter(f"{spec!r}: expected SKU or SKU:QTY")
        items[sku] = items.get(sku, 0) + int(qty or "1")
    return items


@click.command()
@click.option("--nats", "nats_url", default="nats://127.0.0.1:4222", envvar="SAGA_NATS_URL")
@click.option("--db", "db_url", default="sqlite:///.saga/example-orders.db", show_default=True)
@click.argument("customer")
@click.argument("items", nargs=-1, required=True)
def main(nats_url: str, db_url: str, customer: str, items: tuple[str, ...]) -> None:
    """Run one order saga for CUSTOMER buying ITEMS (SKU or SKU:QTY) and print its outcome."""
    order = order_input(customer, _parse_items(items))
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    async def run() -> None:
        log = SqlSagaLog(db_url)
        async with Coordinator(log, NatsTransport(nats_url), sagas=[ORDER_SAGA]) as coordinator:
            result = await asyncio.wait_for(coordinator.execute(ORDER_SAGA, order), 120)
        click.echo(f"{order['order_id']}: {result.status.value}")
        if result.compensation_reason:
            click.echo(f"  why: {result.compensation_reason}")
        for step, value in result.results.items():
            click.echo(f"  {step}: {value}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
