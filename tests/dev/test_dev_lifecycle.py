"""``saga dev`` stops every process group it started however it is stopped: a closed output
pipe, SIGHUP from a closed terminal, and a child that ignores SIGTERM (which it names)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from saga.dev import Children
from tests.cli.procs import REPO, live_in_groups

pytestmark = pytest.mark.slow

RUNNING = "running; Ctrl-C to stop"


def saga_dev(folder: Path) -> list[str]:
    return [sys.executable, "-m", "saga", "dev", "--dir", str(folder), "--http", "127.0.0.1:0"]


def child_pids(output: str) -> set[int]:
    """The children saga dev said it started; each leads its own process group."""
    pids = {int(p) for p in re.findall(r"^  \S+ .*?pid (\d+)", output, re.M)}
    return {pid for pid in pids if f"in this process, pid {pid}" not in output}


def wait_for_running(stream: IO[str], timeout_s: float = 120) -> str:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    for line in stream:
        lines.append(line)
        if line.startswith(RUNNING) or time.monotonic() > deadline:
            break
    output = "".join(lines)
    assert lines[-1:] == [RUNNING + "\n"], output
    return output


def wait_until_gone(groups: set[int], timeout_s: float = 60) -> list[int]:
    """Live members of ``groups`` once they are gone or the timeout passed (generous: the
    processes were signalled, and a loaded machine may be slow to reap them)."""
    deadline = time.monotonic() + timeout_s
    while (left := live_in_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_groups(groups: set[int]) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def test_closing_the_output_pipe_then_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    """``saga dev | tee log``, then Ctrl-C: tee dies first, so saga dev cannot print."""
    with (tmp_path / "stderr").open("w") as sink:
        process = subprocess.Popen(
            saga_dev(tmp_path / "dev"), cwd=REPO, stdout=subprocess.PIPE, stderr=sink, text=True
        )
    assert process.stdout is not None
    groups: set[int] = set()
    try:
        output = wait_for_running(process.stdout)
        groups = child_pids(output)
        assert len(groups) == 6, output  # nats-server, four services, travel
        assert len(live_in_groups(groups)) >= 6
        process.stdout.close()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
        assert wait_until_gone(groups) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_groups(groups)
    stderr = (tmp_path / "stderr").read_text()
    assert process.returncode == 0, stderr
    assert "BrokenPipeError" not in stderr


def test_sighup_stops_every_process(tmp_path: Path) -> None:
    """A closed terminal sends SIGHUP: saga dev stops as it does on Ctrl-C."""
    out = tmp_path / "out"
    with out.open("w") as sink:
        process = subprocess.Popen(
            saga_dev(tmp_path / "dev"), cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
    groups: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while RUNNING not in out.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, out.read_text()
            time.sleep(0.2)
        groups = child_pids(out.read_text())
        assert len(groups) == 6, out.read_text()
        process.send_signal(signal.SIGHUP)
        process.wait(timeout=120)
        assert wait_until_gone(groups) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_groups(groups)
    assert process.returncode == 0, out.read_text()
    assert "saga dev stopped; every process it started has exited" in out.read_text()


STUBBORN = """trap '' TERM; sleep 600 & echo ' ready: ignoring SIGTERM'; wait"""
"""A frozen service: it ignores SIGTERM, and so does its own child in its process group."""


async def test_a_child_ignoring_sigterm_is_named_then_killed_with_its_group(
    tmp_path: Path,
) -> None:
    children = Children(log_dir=tmp_path / "logs", cwd=tmp_path)
    stubborn = await children.start("frozen-0", ["sh", "-c", STUBBORN])
    polite = await children.start("polite-0", ["sleep", "600"])
    said: list[str] = []
    try:
        await children.wait_ready(stubborn)
        assert len(live_in_groups({stubborn.pid})) == 2  # sh and its sleep
        await children.stop(grace_s=3, echo=said.append, report_every_s=1)
    finally:
        for child in children.started:
            children.kill(child)
    waiting = [line for line in said if line.startswith("  waiting for ")]
    assert waiting, said
    assert all(f"frozen-0 (pid {stubborn.pid}) to exit; SIGKILL in " in w for w in waiting)
    assert stubborn.process.returncode == -signal.SIGKILL
    assert polite.process.returncode == -signal.SIGTERM
    deadline = asyncio.get_running_loop().time() + 30
    while live_in_groups({stubborn.pid, polite.pid}):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
