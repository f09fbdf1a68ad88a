"""Failpoints: kill this process with SIGKILL at a named point, for crash tests.

Set ``SAGA_FAILPOINT=<point>@<step>[/<direction>]`` in a coordinator's environment, where
point is one of ``on_reply`` (a reply arrived, not yet recorded), ``after_record`` (the
step's outcome is in the log, nothing sent after it yet) or ``after_send`` (the step's
command was recorded and sent). Unset, the check is a dictionary lookup that never matches.
"""

from __future__ import annotations

import os
import signal

ENV = "SAGA_FAILPOINT"
POINTS = ("on_reply", "after_record", "after_send")


def _parse(value: str) -> tuple[str, str, str | None] | None:
    if not value:
        return None
    point, _, target = value.partition("@")
    step, _, direction = target.partition("/")
    if point not in POINTS or not step:
        raise ValueError(f"{ENV}={value!r}: expected <{'|'.join(POINTS)}>@<step>[/<direction>]")
    return point, step, direction or None


_ARMED = _parse(os.environ.get(ENV, ""))


def crash_if(point: str, step: str, direction: str) -> None:
    """SIGKILL this process if the armed failpoint matches."""
    if _ARMED is None:
        return
    armed_point, armed_step, armed_direction = _ARMED
    if (armed_point, armed_step) == (point, step) and armed_direction in (None, direction):
        os.kill(os.getpid(), signal.SIGKILL)
