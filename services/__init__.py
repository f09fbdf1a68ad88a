"""Example participant services (orders, payments, inventory, shipping), built on the public SDK.

Each is a package runnable as ``python -m services.<name>``, with its own small database of
business state and the SDK's idempotency store beside it in the same database.
"""
