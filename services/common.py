"""What every example service shares: its database, its command line, and run-until-signal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import click
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from saga import (
    CommandContext,
    NatsSecurity,
    Participant,
    PoolOptions,
    SqlIdempotencyStore,
    redact_url,
)
from saga.participant.sql import async_database_url

NATS_ENV = "SAGA_NATS_URL"
DB_ENV = "SERVICE_DB_URL"
REPLICA_ENV = "SERVICE_REPLICA_ID"
SEED_ENV = "SERVICE_SEED"
INSTANCE_ENV = "SERVICE_INSTANCE"
HANDLER_DELAY_ENV = "SERVICE_HANDLER_DELAY_MS"
"""A testing aid, never for production: every handler of a service started with this set waits
that many milliseconds after writing its effect: inside its transaction (not yet committed)
for a transactional command, after its own commit otherwise. Either way a test's SIGKILL lands
mid-handler (tests/faults/test_participant_faults.py). Unset or 0: no delay."""
READY = "ready:"
"""Printed (after the service name) once a replica serves; ``saga dev`` and tests wait for it."""

POOL = PoolOptions(size=1, overflow=3)
"""A replica's one engine (business tables and idempotency store share it): one PostgreSQL
connection while idle and at most four under load, so a few replicas of four services stay
far below the server's default 100 (see README, Storage)."""
STOP_TIMEOUT_S = 15.0
"""How long a replica waits for its in-flight commands and NATS when it is told to stop."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def async_url(url: str) -> str:
    """A SQLite or PostgreSQL URL with its async driver (``postgres://`` accepted too), read
    as the idempotency store reads it: the business tables and the store share one database."""
    try:
        return async_database_url(url).render_as_string(hide_password=False)
    except ValueError as exc:
        raise click.BadParameter(f"service database {redact_url(url)!r}: {exc}") from exc


class Database:
    """A service's own database: its business tables, created when it opens."""

    def __init__(self, url: str, metadata: sa.MetaData) -> None:
        self.url = async_url(url)
        self.metadata = metadata
        self.engine: AsyncEngine = create_async_engine(self.url, **POOL.engine_options())
        self.handler_delay_s = _handler_delay_s()
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            sa.event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    async def open(self) -> None:
        # Replicas starting together on PostgreSQL may race to create the tables: the loser
        # of the race tries again and finds them (create_all is one transaction).
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(
                (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError)
            ),
            stop=stop_after_attempt(3),
            wait=wait_random(0.1, 0.3),
            reraise=True,
        ):
            with attempt:
                async with self.engine.begin() as conn:
                    await conn.run_sync(self.metadata.create_all)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; on SQLite it takes the write lock at once (BEGIN IMMEDIATE)."""
        async with self.engine.begin() as conn:
            yield conn
        if self.handler_delay_s:  # committed: see HANDLER_DELAY_ENV (tests only)
            await asyncio.sleep(self.handler_delay_s)

    @contextlib.asynccontextmanager
    async def effect(self, ctx: CommandContext) -> AsyncIterator[AsyncConnection]:
        """Where a handler writes its effect: for a transactional command, the transaction
        its idempotency record commits in (the transactional inbox); otherwise its own."""
        if ctx.connection is None:
            async with self.begin() as conn:
                yield conn
            return
        yield ctx.connection
        if self.handler_delay_s:  # written, not yet committed: see HANDLER_DELAY_ENV
            await asyncio.sleep(self.handler_delay_s)

    def store(self) -> SqlIdempotencyStore:
        """An idempotency store in this database, on this engine: one pool, and the effect
        and its record in one transaction."""
        return SqlIdempotencyStore(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()


def _handler_delay_s() -> float:
    value = os.environ.get(HANDLER_DELAY_ENV, "").strip()
    try:
        delay_ms = float(value) if value else 0.0
    except ValueError as exc:
        raise click.BadParameter(f"{HANDLER_DELAY_ENV}={value!r} is not a number") from exc
    return max(delay_ms, 0.0) / 1000


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=20000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
    # SQLAlchemy emits BEGIN itself (below), so a read-then-write transaction never has to
    # upgrade its lock: with several replicas on one file, that upgrade is where deadlocks live.
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


async def insert_missing(conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Insert the rows whose primary key is absent (so seeding is idempotent); how many were."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    added = 0
    for row in rows:
        result = await conn.execute(insert(table).values(row).on_conflict_do_nothing())
        added += result.rowcount
    return added


@dataclass(frozen=True, kw_only=True)
class ServiceOptions:
    """How one replica of a service was started."""

    name: str
    nats_url: str
    db_url: str
    replica_id: int
    seed: bool
    instance: str


def default_instance(name: str, replica_id: int) -> str:
    """``payments-0-<host>``: unique per replica and host, stable across restarts of one."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())
    return f"{name}-{replica_id}-{host}"


Build = Callable[..., Participant]
"""``build(db, store, *, instance, **extra_options) -> Participant``: the service's handlers."""
Seed = Callable[[Database], Awaitable[int]]


def service_command(
    name: str,
    metadata: sa.MetaData,
    build: Build,
    seed: Seed,
    *,
    help: str,
    extra: tuple[Callable[[Any], Any], ...] = (),
) -> click.Command:
    """The ``python -m services.<name>`` command: options, env vars, run until a signal.

    ``extra`` are click option decorators for this service alone; their values are passed to
    ``build`` as keyword arguments.
    """

    @click.command(name=name, help=help)
    @click.option(
        "--nats", "nats_url", default="nats://127.0.0.1:4222", show_default=True,
        envvar=NATS_ENV, show_envvar=True, help="NATS server URL(s), comma-separated.",
    )  # fmt: skip
    @click.option(
        "--db", "db_url", default=f"sqlite:///{name}.db", show_default=True, envvar=DB_ENV,
        show_envvar=True, help="This service's database: a SQLite or PostgreSQL URL.",
    )  # fmt: skip
    @click.option(
        "--replica-id", type=int, default=0, show_default=True, envvar=REPLICA_ENV,
        show_envvar=True, help="Which replica this is (replicas share one queue group).",
    )  # fmt: skip
    @click.option(
        "--instance", default=None, envvar=INSTANCE_ENV, show_envvar=True,
        help="A stable name for this replica; a replica restarted under the same name releases"
        " the claims its previous run left in progress.  [default: NAME-REPLICA_ID-HOSTNAME]",
    )  # fmt: skip
    @click.option(
        "--seed/--no-seed", "seed_data", default=False, envvar=SEED_ENV, show_envvar=True,
        help="Add the demo data (customers, stock) if it is missing.",
    )  # fmt: skip
    def command(
        nats_url: str, db_url: str, replica_id: int, instance: str | None, seed_data: bool,
        **rest: Any,
    ) -> None:  # fmt: skip
        options = ServiceOptions(
            name=name, nats_url=nats_url, db_url=db_url, replica_id=replica_id, seed=seed_data,
            instance=instance or default_instance(name, replica_id),
        )  # fmt: skip
        asyncio.run(
            run(options, Database(db_url, metadata), functools.partial(build, **rest), seed)
        )

    for option in reversed(extra):
        command = option(command)
    return command


async def run(options: ServiceOptions, db: Database, build: Build, seed: Seed) -> None:
    """Open the database, serve the participant until SIGINT or SIGTERM, then close."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    who = f"{options.name} replica {options.replica_id} ({options.instance})"
    store = db.store()
    participant: Participant | None = None
    try:
        await db.open()
        if options.seed:
            added = await seed(db)
            click.echo(f"{who}: seeded {added} rows")
        participant = build(db, store, instance=options.instance)
        # Credentials and TLS come from SAGA_NATS_* variables (see README, Securing NATS).
        server = await participant.serve(_nats(options), security=NatsSecurity.from_env())
        nats, dbs = redact_url(options.nats_url), redact_url(options.db_url)
        click.echo(f"{who} {READY} nats {nats}, db {dbs}", color=False)
        try:
            await stop.wait()
        finally:
            await _bounded(server.stop(), who)
    finally:
        await store.close()
        await db.close()
    replayed = 0 if participant is None else participant.replayed
    # The soak (saga soak) reads this count: repeats answered from the record, handler not run.
    click.echo(f"{who} stopped; {replayed} repeated commands answered from the record")


async def _bounded(stopping: Awaitable[None], who: str) -> None:
    # With NATS unreachable a clean stop could wait for it forever; in-flight handlers have had
    # their chance by then, and whatever they did not answer is retried with the same key.
    try:
        await asyncio.wait_for(stopping, STOP_TIMEOUT_S)
    except (TimeoutError, OSError) as exc:
        click.echo(f"{who}: NATS did not let us stop cleanly ({exc!r}); exiting anyway", err=True)


def _nats(options: ServiceOptions) -> list[str]:
    """The NATS URLs to serve on: one server, or a cluster's seed URLs (comma-separated)."""
    return [url.strip() for url in options.nats_url.split(",") if url.strip()]
