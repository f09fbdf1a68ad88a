"""The bench's saga definitions: N trivial steps on the bench participant, no request logic.

Each step sends ``bench.do`` with the saga's input (``{"i": n}``, plus ``"reject_at": k``
when the participant is to reject step k, 1-based) and compensates with ``bench.undo``.
``saga coordinator --sagas saga.bench.sagas:RECOVERY_SAGAS`` loads the recovery ones.
"""

from __future__ import annotations

from datetime import timedelta

from saga.definition import Saga, Step

SERVICE = "bench"
"""The participant's name, so its NATS queue group."""
FORWARD = "do"
COMPENSATE = "undo"
MAX_STEPS = 20
STEP_TIMEOUT = timedelta(seconds=10)
"""The Step default: a bench with a slow participant shows the timeouts a user would get."""
RECOVERY_TIMEOUT = timedelta(minutes=30)
"""The recovery workload holds every reply for as long as a restart takes: no step may
time out meanwhile, or a retry would be counted as a re-send."""


def step_name(index: int) -> str:
    """The name of step ``index`` (1-based): ``s1``, ``s2``..."""
    return f"s{index}"


def step_index(name: str) -> int:
    """The 1-based index in a step name made by ``step_name`` (0 for any other name)."""
    return int(name[1:]) if name.startswith("s") and name[1:].isdigit() else 0


def bench_saga(steps: int, *, timeout: timedelta = STEP_TIMEOUT, prefix: str = "bench") -> Saga:
    """A saga of ``steps`` compensatable steps, all on the bench participant."""
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be 1 to {MAX_STEPS}, not {steps}")
    return Saga(
        name=f"{prefix}-{steps}",
        steps=tuple(
            Step(
                name=step_name(i), service=SERVICE, command=FORWARD, compensation=COMPENSATE,
                timeout=timeout,
            )
            for i in range(1, steps + 1)
        ),
    )  # fmt: skip


SAGAS = [bench_saga(n) for n in range(1, MAX_STEPS + 1)]
"""One definition per step count, ``bench-1`` to ``bench-20``."""
RECOVERY_SAGAS = [
    bench_saga(n, timeout=RECOVERY_TIMEOUT, prefix="bench-recovery")
    for n in range(1, MAX_STEPS + 1)
]
"""The same with step timeouts long enough to hold replies across a coordinator restart."""
