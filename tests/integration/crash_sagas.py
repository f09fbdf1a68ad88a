"""The saga the crash tests run in a coordinator subprocess (``--sagas`` imports this)."""

from __future__ import annotations

from datetime import timedelta

from saga import RetryPolicy, Saga, Step

FAST = RetryPolicy(initial_interval=timedelta(milliseconds=50), max_attempts=5)

ORDER = Saga(
    name="crash_order",
    steps=tuple(
        Step(
            name=name,
            service=service,
            command="do",
            compensation="undo",
            retry=FAST,
            compensation_retry=FAST,
            timeout=timedelta(seconds=3),
        )
        for name, service in (("create", "orders"), ("credit", "payments"), ("stock", "inventory"))
    ),
)
