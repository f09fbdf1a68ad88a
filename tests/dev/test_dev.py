"""``saga dev``: one command starts everything, prints it, and leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click
import pytest

from saga.checkout import find_checkout
from saga.dev import demo_orders

REPO = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"^demo: (\d+) sagas: (\d+) completed, (\d+) compensated, (\d+) still retrying, (\d+) stuck$",
    re.M,
)

pytestmark = pytest.mark.slow


def saga_dev(*args: str) -> list[str]:
    return [sys.executable, "-m", "saga", "dev", *args]


def started_pids(output: str) -> list[int]:
    """Every child process saga dev said it started (not its own, in-process coordinator),
    once each: under load, "waiting for X (pid N) to exit" lines name a child again."""
    pids = list(dict.fromkeys(int(p) for p in re.findall(r"^  \S+ .*?pid (\d+)", output, re.M)))
    return [pid for pid in pids if f"in this process, pid {pid}" not in output]


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_find_checkout_walks_up_and_explains_when_there_is_none(tmp_path: Path) -> None:
    assert find_checkout(REPO / "services" / "payments") == REPO
    with pytest.raises(click.ClickException, match="root of a saga-coordinator clone"):
        find_checkout(tmp_path)


def test_demo_orders_start_with_one_of_each_ending() -> None:
    import random

    from examples.order_saga import order_input

    orders = demo_orders(20, random.Random(1), order_input)
    assert len(orders) == 20
    assert [o["customer"] for o in orders[:3]] == ["alice", "carol", "bob"]
    assert len({o["order_id"] for o in orders}) == 20


def test_dev_demo_prints_a_summary_and_stops_everything(tmp_path: Path) -> None:
    done = subprocess.run(
        saga_dev(
            "--dir", str(tmp_path / "dev"), "--demo", "12", "--exit-after-demo",
            "--http", "127.0.0.1:0",
        ),
        cwd=REPO, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    match = SUMMARY.search(done.stdout)
    assert match is not None, done.stdout
    total, completed, compensated, retrying, stuck = map(int, match.groups())
    assert total == 12
    assert completed + compensated + retrying + stuck == 12
    assert completed >= 1
    assert compensated >= 2  # carol has no credit, plum is out of stock
    assert stuck == 0
    for name in ("nats-server", "orders-0", "payments-0", "inventory-0", "shipping-0", "travel"):
        assert re.search(rf"^  {name}\s", done.stdout, re.M), name
    pids = started_pids(done.stdout)
    assert len(pids) == 6
    assert [pid for pid in pids if alive(pid)] == []


def test_dev_runs_until_sigint_then_leaves_no_process(tmp_path: Path) -> None:
    process = subprocess.Popen(
        saga_dev("--dir", str(tmp_path / "dev"), "--replicas", "2", "--http", "127.0.0.1:0"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("running; Ctrl-C to stop") or time.monotonic() > deadline:
                break
        assert lines[-1:] == ["running; Ctrl-C to stop\n"], "".join(lines)
        served = re.search(r"HTTP API and dashboard on (http://127\.0\.0\.1:\d+)/", "".join(lines))
        assert served is not None, "".join(lines)
        assert any("no API tokens configured" in line for line in lines)
        with urllib.request.urlopen(f"{served.group(1)}/api/sagas", timeout=10) as response:
            assert response.status == 200
            assert "sagas" in json.loads(response.read())
        with urllib.request.urlopen(f"{served.group(1)}/", timeout=10) as response:
            assert b"<html" in response.read().lower()
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert "saga dev stopped" in output
    pids = started_pids(output)
    assert len(pids) == 10  # nats-server, two replicas of four services, travel
    assert [pid for pid in pids if alive(pid)] == []


def test_dev_outside_a_checkout_says_where_to_run_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        saga_dev(), cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 1
    assert "root of a saga-coordinator clone" in done.stderr
    assert not (tmp_path / ".saga").exists()
