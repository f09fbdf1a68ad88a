"""What saga dev, saga soak and saga bench start never outlives them, even when they are
SIGKILLed (so their own clean-up never runs)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

PARENT = """
import asyncio, sys
from pathlib import Path
from saga.dev import Children

async def main():
    children = Children(log_dir=Path(sys.argv[1]), cwd=Path(sys.argv[1]))
    child = await children.start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"])
    print(child.process.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def gone(pid: int) -> bool:
    """No such process, or only its zombie (dead, waiting for whoever adopted it to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("paused", [False, True], ids=["running", "sigstopped"])
async def test_a_child_dies_with_its_sigkilled_parent(tmp_path: Path, paused: bool) -> None:
    """Even a child the soak has paused (SIGSTOP), which would not act on SIGTERM."""
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PARENT, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    assert parent.stdout is not None
    child: int | None = None
    try:
        child = int(await asyncio.wait_for(parent.stdout.readline(), 30))
        assert not gone(child), "the child should be running while its parent is"
        if paused:
            os.kill(child, signal.SIGSTOP)
        parent.send_signal(signal.SIGKILL)
        await parent.wait()
        async with asyncio.timeout(10):
            while not gone(child):  # noqa: ASYNC110 - polling /proc: there is no event
                await asyncio.sleep(0.05)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        if child is not None and not gone(child):
            os.kill(child, signal.SIGKILL)
