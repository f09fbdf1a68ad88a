"""saga.eventloop: the coordinator's loop is uvloop when installed, asyncio's otherwise."""

from __future__ import annotations

import asyncio
import sys

import pytest

from saga import eventloop


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_uses_uvloop_when_it_is_installed() -> None:
    # uvloop is in the test extras (as in [fast]): the suite runs where it is installed.
    assert eventloop.name() == "uvloop"
    assert eventloop.run(loop_module()).startswith("uvloop")


def test_run_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert eventloop.name() == "asyncio"
    assert eventloop.run(loop_module()).startswith("asyncio")
