"""A busy ``--http`` port is one line naming the option, before anything was started."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.procs import REPO, live_mentioning, saga

pytestmark = pytest.mark.slow


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        saga(*args), cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def test_dev_names_the_option_and_starts_nothing(busy_port: int, tmp_path: Path) -> None:
    folder = tmp_path / "dev"
    done = run("dev", "--dir", str(folder), "--http", f"127.0.0.1:{busy_port}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        f"Error: 127.0.0.1:{busy_port} is already in use by another program:"
        " give another port with --http\n"
    )
    assert done.stdout == ""
    assert not (folder / "logs" / "nats-server.log").exists()
    assert live_mentioning(str(folder)) == []  # no nats-server, no service


def test_coordinator_names_the_option_and_opens_nothing(busy_port: int, tmp_path: Path) -> None:
    db = tmp_path / "saga.db"
    done = run(
        "coordinator", "--http", f"127.0.0.1:{busy_port}", "--db", f"sqlite:///{db}",
        "--nats", "nats://127.0.0.1:1", "--sagas", "examples.order_saga:ORDER_SAGA",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        f"Error: 127.0.0.1:{busy_port} is already in use by another program:"
        " give another port with --http\n"
    )
    assert done.stdout == ""
    assert not db.exists()  # the log was never opened


def test_an_address_that_cannot_be_served_is_one_line_too(tmp_path: Path) -> None:
    done = run("dev", "--dir", str(tmp_path / "dev"), "--http", "192.0.2.1:8080", "--insecure")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("Error: cannot serve on 192.0.2.1:8080: ")
    assert done.stderr.endswith("give another address with --http\n")
    assert done.stderr.count("\n") == 1
