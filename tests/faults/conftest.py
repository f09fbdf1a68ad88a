"""A private PostgreSQL server per test, which the test may stop and start at will.

It is a throwaway cluster (initdb into a temp dir, run as the ``postgres`` OS user, on a free
loopback port), so restarting it never disturbs the machine's shared PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from saga.transport.nats_server import free_port
from tests.conftest import REQUIRE_POSTGRES_ENV


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """initdb + pg_ctl for one temp cluster."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}\n{done.stderr}")

    def init(self) -> None:
        self.data.parent.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.data.parent, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
        log_file = str(self.data.parent / "postgres.log")
        # -l: the server must not inherit our pipes, or waiting for pg_ctl never ends.
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", log_file, "-w", "-t", "30",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
async def private_postgres(tmp_path: Path) -> AsyncIterator[PrivatePostgres]:
    bin_dir = _bin_dir()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail("the PostgreSQL server binaries (initdb, pg_ctl) are required in CI")
        pytest.skip("needs PostgreSQL server binaries (initdb, pg_ctl) to run a private server")
    root = Path("/tmp") / f"saga-pg-{os.getpid()}-{free_port()}"
    server = PrivatePostgres(bin_dir, root)
    await asyncio.to_thread(server.init)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            await asyncio.to_thread(server.stop, "immediate")
        shutil.rmtree(root, ignore_errors=True)
