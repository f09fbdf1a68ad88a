"""orders: create a pending order, approve it (the saga's pivot) or reject it (compensation)."""

from services.orders.service import build, history, metadata, orders, seed

__all__ = ["build", "history", "metadata", "orders", "seed"]
