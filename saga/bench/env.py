"""What a bench run stands on: its database, NATS, the participant process, and the floors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nats.aio.client import Client

from saga.bench.participant import CONTROL_PREFIX, RAW_SUBJECT, READY_LINE
from saga.dev import Child, Children
from saga.errors import SagaError
from saga.redact import redact_text, redact_url
from saga.testing.postgres import admin_url, create_databases, database_url, drop_databases
from saga.transport.nats import connect_nats
from saga.transport.nats_server import NatsServer

Echo = Callable[[str], None]
STOP_GRACE_S = 10.0
CONTROL_TIMEOUT_S = 10.0


class BenchError(Exception):
    """The bench could not run: one line for the user, no traceback."""


def one_line(exc: BaseException) -> str:
    """The first line of an error's message, credentials hidden."""
    text = str(exc).strip() or type(exc).__name__
    return redact_text(text.splitlines()[0])


# -- the database -----------------------------------------------------------------------------


@dataclass
class BenchDb:
    """The saga log's URL and where the commit floor runs, and how to remove both."""

    url: str
    kind: str
    """``sqlite`` or ``postgresql``."""
    shown: str
    sqlite_path: Path | None = None
    server_url: str | None = None
    created: list[str] = field(default_factory=list)

    async def remove(self) -> None:
        if self.server_url and self.created:
            with contextlib.suppress(Exception):
                await drop_databases(self.server_url, self.created)
        if self.sqlite_path is not None:
            await asyncio.to_thread(_unlink, [self.sqlite_path, self.floor_path])

    @property
    def floor_path(self) -> Path:
        """SQLite: the commit floor's file, beside the log's (same file system)."""
        assert self.sqlite_path is not None
        return self.sqlite_path.with_name(self.sqlite_path.name + ".floor")

    @property
    def pg_url(self) -> str:
        """PostgreSQL: the bench database as asyncpg takes it."""
        return admin_url(self.url)


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _fresh_file(file: str) -> Path:
    path = Path(file).resolve()
    if path.exists():
        raise BenchError(f"--db: {path} exists; the bench needs a fresh file")
    if not path.parent.is_dir():
        raise BenchError(f"--db: no directory {path.parent}")
    return path


async def prepare_db(db_url: str | None, folder: Path) -> BenchDb:
    """A fresh saga log: a SQLite file under ``folder`` by default, a new file at a given
    ``sqlite:///`` path, or a new database on a given PostgreSQL server (dropped after)."""
    if db_url is None:
        path = folder / "bench.db"
        return BenchDb(url=f"sqlite:///{path}", kind="sqlite", shown="sqlite (temp file)",
                       sqlite_path=path)  # fmt: skip
    scheme = urlsplit(db_url).scheme.lower()
    if scheme.startswith("sqlite"):
        file = db_url.partition(":///")[2]
        if not file or file == ":memory:":
            raise BenchError(f"--db {db_url!r}: expected sqlite:///FILE")
        path = await asyncio.to_thread(_fresh_file, file)
        return BenchDb(url=f"sqlite:///{path}", kind="sqlite", shown=f"sqlite {path}",
                       sqlite_path=path)  # fmt: skip
    if scheme.startswith("postgres"):
        name = f"saga_bench_{uuid.uuid4().hex[:10]}"
        try:
            await asyncio.wait_for(create_databases(db_url, [name]), 30)
        except Exception as exc:
            raise BenchError(
                f"cannot create a database on {redact_url(db_url)}: {one_line(exc)}"
            ) from exc
        return BenchDb(url=database_url(db_url, name), kind="postgresql",
                       shown=f"postgresql {name} (fresh, dropped after)", server_url=db_url,
                       created=[name])  # fmt: skip
    raise BenchError(f"--db {redact_url(db_url)!r}: expected postgresql://... or sqlite:///FILE")


# -- NATS and the participant -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ParticipantOptions:
    replicas: int = 1
    max_concurrency: int = 64
    delay_ms: float = 0.0
    slow_after: int = 0
    slow_delay_ms: float = 0.0
    hold: bool = False
    tap: bool = False

    def argv(self, nats_url: str) -> list[str]:
        argv = [sys.executable, "-m", "saga.bench.participant", "--nats", nats_url,
                "--replicas", str(self.replicas), "--max-concurrency", str(self.max_concurrency),
                "--delay-ms", str(self.delay_ms), "--slow-after", str(self.slow_after),
                "--slow-delay-ms", str(self.slow_delay_ms)]  # fmt: skip
        return argv + (["--hold"] if self.hold else []) + (["--tap"] if self.tap else [])


@dataclass
class Env:
    """A running NATS (embedded or given), the participant process and a client to both."""

    nats_url: str
    nc: Client
    children: Children
    participant: Child

    async def control(self, what: str) -> dict[str, Any]:
        """Ask the participant process (``hold``, ``release``, ``mark``, ``count``)."""
        msg = await self.nc.request(f"{CONTROL_PREFIX}.{what}", b"", timeout=CONTROL_TIMEOUT_S)
        answer: dict[str, Any] = json.loads(msg.data or b"{}")
        return answer


@asynccontextmanager
async def environment(
    nats_url: str | None, participant: ParticipantOptions, folder: Path, echo: Echo
) -> AsyncIterator[Env]:
    """NATS, the participant process and a client; all stopped when the block ends."""
    children = Children(log_dir=folder / "logs", cwd=folder)
    server: NatsServer | None = None
    nc: Client | None = None
    try:
        if nats_url is None:
            server = NatsServer(jetstream=False)
            try:
                await server.start()
            except SagaError as exc:
                raise BenchError(f"cannot start the embedded nats-server: {one_line(exc)}") from exc
            nats_url = server.url
        # Its retries would log a warning each: the failure below says it in one line.
        quiet = logging.getLogger("saga.transport.nats")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            nc = await connect_nats(nats_url, name="saga-bench")
        except SagaError as exc:
            raise BenchError(one_line(exc)) from exc
        finally:
            quiet.setLevel(level)
        child = await children.start("participant", participant.argv(nats_url))
        try:
            await children.wait_ready(child, marker=READY_LINE)
        except Exception as exc:
            raise BenchError(f"the bench participant did not start: {one_line(exc)}"
                             f" (log {child.log_path})") from exc  # fmt: skip
        yield Env(nats_url=nats_url, nc=nc, children=children, participant=child)
    finally:
        await children.stop(grace_s=STOP_GRACE_S)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        if server is not None:
            await server.stop()


# -- the floors -------------------------------------------------------------------------------


async def nats_floor(env: Env, concurrency: int, seconds: float) -> float:
    """Requests per second of a raw request/reply loop (empty bodies) at ``concurrency``."""
    done = 0
    began = time.perf_counter()
    deadline = began + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await env.nc.request(RAW_SUBJECT, b"", timeout=10)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - began)


async def commit_floor(db: BenchDb, seconds: float) -> float:
    """Commits per second of one connection doing single-row INSERT + COMMIT transactions,
    with the log's durability (SQLite: WAL, synchronous=FULL; PostgreSQL: the server's)."""
    if db.kind == "sqlite":
        return await _sqlite_floor(db.floor_path, seconds)
    return await _pg_floor(db.pg_url, seconds)


async def _sqlite_floor(path: Path, seconds: float) -> float:
    import aiosqlite

    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("CREATE TABLE floor (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        done = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO floor (v) VALUES (?)", (f"row {done}",))
            await conn.execute("COMMIT")
            done += 1
        return done / (time.perf_counter() - began)


async def _pg_floor(url: str, seconds: float) -> float:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE bench_floor (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
        insert = "INSERT INTO bench_floor (v) VALUES ($1)"
        done = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            await conn.execute(insert, f"row {done}")  # one statement, one transaction
            done += 1
        return done / (time.perf_counter() - began)
    finally:
        await conn.close()
