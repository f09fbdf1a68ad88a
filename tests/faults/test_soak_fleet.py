"""``saga soak``'s kill and pause schedules on real processes (stand-ins for coordinators):
a SIGKILL never lands on a paused process, pauses end with SIGCONT, and nothing is left."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from pathlib import Path

import pytest

from saga import soak_fleet
from saga.dev import Child, Children
from saga.soak_fleet import COORDINATOR_READY, CoordinatorProcess, Fleet

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(sys.platform != "linux", reason="reads process states from /proc"),
]

STAND_IN = f"import time; print({COORDINATOR_READY!r}, flush=True); time.sleep(300)"


def state(pid: int) -> str:
    """The process's state letter: R/S running or sleeping, T stopped, Z zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


async def test_kills_spare_paused_coordinators_and_every_pause_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    children = Children(log_dir=tmp_path / "logs", cwd=tmp_path)
    killed_states: list[str] = []
    kill = children.kill

    def kill_and_note(child: Child) -> None:
        killed_states.append(state(child.pid))
        kill(child)

    monkeypatch.setattr(children, "kill", kill_and_note)
    stopped_seen = 0

    def stop_and_note(child: Child | None, sig: signal.Signals) -> None:
        nonlocal stopped_seen
        signal_one(child, sig)
        if sig is signal.SIGSTOP and child is not None:
            stopped_seen += 1

    signal_one = soak_fleet._signal
    monkeypatch.setattr(soak_fleet, "_signal", stop_and_note)
    argv = [sys.executable, "-c", STAND_IN]
    members = [CoordinatorProcess(children, f"coord-{i}", argv, url=f"http://x{i}") for i in (0, 1)]
    fleet = Fleet(
        coordinators=members,
        lease_s=0.2,
        rng=random.Random(7),
    )
    try:
        await fleet.start()
        done = asyncio.Event()
        disrupting = asyncio.create_task(fleet.disrupt(0.3, 0.2, done))
        async with asyncio.timeout(60):
            while fleet.kills < 6 or fleet.pauses < 6:
                assert not disrupting.done(), disrupting
                await asyncio.sleep(0.05)
        done.set()
        await disrupting
        # Every pause ended: no coordinator is left stopped, and each still runs.
        for member in fleet.coordinators:
            assert member.child is not None
            assert not member.paused
            assert state(member.child.pid) in ("R", "S"), member.name
        assert stopped_seen == fleet.pauses
        # No SIGKILL landed on a stopped (paused) process.
        assert len(killed_states) == fleet.kills
        assert "T" not in killed_states, killed_states
    finally:
        await children.stop(grace_s=5)
    assert all(c.process.returncode is not None for c in children.started)
    assert len(children.started) == 2 + fleet.kills  # one start each, one per restart


async def test_a_failing_restart_ends_the_disruption_with_its_error(tmp_path: Path) -> None:
    children = Children(log_dir=tmp_path / "logs", cwd=tmp_path)
    member = CoordinatorProcess(
        children, name="coord-0", argv=[sys.executable, "-c", STAND_IN], url="http://x"
    )
    fleet = Fleet(coordinators=[member], lease_s=0.2, rng=random.Random(1))
    try:
        await fleet.start()
        member.argv = [sys.executable, "-c", "raise SystemExit(3)"]  # the restart fails
        done = asyncio.Event()
        with pytest.raises(Exception, match="exited with code 3"):
            await asyncio.wait_for(fleet.disrupt(0.1, 0.1, done), 60)
        assert not member.paused
    finally:
        await children.stop(grace_s=5)
