"""inventory: stock per SKU. Reserve stock for an order's line items, release it."""

from services.inventory.service import (
    DEMO_STOCK,
    build,
    ledger,
    lines,
    metadata,
    reservations,
    seed,
    stock,
)

__all__ = ["DEMO_STOCK", "build", "ledger", "lines", "metadata", "reservations", "seed", "stock"]
