"""A random shop for the tests; the shop's books and their invariants live in ``services.world``."""

from __future__ import annotations

import random

from examples.order_saga import order_input
from services.world import World, check_invariants, effects_twice, seed

__all__ = ["World", "check_invariants", "effects_twice", "random_world", "seed"]


def random_world(rng: random.Random, n: int) -> World:
    """A shop of ``n`` orders at random, priced as the example order saga prices them."""
    # Some customers can afford nothing, some a little, most plenty; likewise the stock.
    credit = {f"c{i}": rng.choice([0, 2_000, 20_000, 1_000_000, 1_000_000]) for i in range(8)}
    stock = {f"sku{i}": rng.choice([0, 10, 40, 1_000, 1_000, 1_000]) for i in range(8)}
    orders = []
    for i in range(n):
        skus = rng.sample(sorted(stock), k=rng.randint(1, 2))
        order = order_input(
            rng.choice(sorted(credit)), {s: rng.randint(1, 3) for s in skus}, f"order-{i:04d}"
        )
        for item in order["items"]:
            item["unit_price"] = rng.choice([50, 120, 400])
        orders.append(order)
    return World(credit=credit, stock=stock, orders=orders)
