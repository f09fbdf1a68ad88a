"""Running the coordinator's event loop: on uvloop when it is installed, asyncio's otherwise.

uvloop (``pip install 'saga-coordinator[fast]'``) is a drop-in event loop written on libuv; the
coordinator's hot path (sockets to NATS and PostgreSQL, tasks and futures for each saga) spends
less time in the loop on it. Nothing else changes: the same code runs on either loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` if uvloop is installed, else None (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, _T], *, uvloop: bool = True) -> _T:
    """``asyncio.run(main)``, on uvloop when it is installed (and ``uvloop`` is True)."""
    with asyncio.Runner(loop_factory=loop_factory() if uvloop else None) as runner:
        return runner.run(main)


def name(*, uvloop: bool = True) -> str:
    """The event loop ``run`` uses: ``uvloop`` or ``asyncio``."""
    return "uvloop" if uvloop and loop_factory() is not None else "asyncio"
