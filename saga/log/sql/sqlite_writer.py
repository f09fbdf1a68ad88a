"""The saga log's hot writes on SQLite: each transaction in one hop to a dedicated thread.

Through SQLAlchemy and aiosqlite, every statement (and every cursor, fetch and close) is a
round trip between the event loop and aiosqlite's thread: a dozen thread switches for one
group commit, which dominate the cost of a commit when few sagas share it. Here the whole
transaction (BEGIN IMMEDIATE, the row updates, the event inserts, COMMIT) is one function run
on this writer's own thread with the stdlib driver, so a commit costs one hop however many
statements it holds. Reads, migrations and queries stay on SQLAlchemy: they are not on the
hot path, and the two share nothing but the file (WAL lets readers and this writer overlap).

The connection is set up exactly as the log's SQLAlchemy connections are (``SQLITE``: WAL,
``synchronous=FULL``, foreign keys, busy timeout), so a commit here is as durable.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from saga.errors import LogError
from saga.events import Health, SagaStatus
from saga.log.base import Append, NewSaga, SagaRecord
from saga.sqlconnect import SqliteSetup

_T = TypeVar("_T")

_ADVANCE = (
    "UPDATE sagas SET last_seq = ?, status = ?, current_step = ?, health = ?, attempt = ?,"
    " waiting_for = ?, due_ms = ?, updated_ms = coalesce(?, updated_ms)"
    " WHERE saga_id = ? AND last_seq = ? AND (? IS NULL OR epoch = ?)"
)
_INSERT_EVENT = (
    "INSERT INTO saga_events (saga_id, seq, type, data, at_ms, format, epoch)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_SAGA = (
    "INSERT INTO sagas (saga_id, name, version, status, input, created_ms, updated_ms,"
    " last_seq, current_step, health, attempt, owner, epoch, waiting_for, due_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (saga_id) DO NOTHING"
)
_SELECT_SAGA = (
    "SELECT saga_id, name, version, status, input, created_ms, updated_ms, last_seq,"
    " current_step, health, attempt, owner, epoch, waiting_for, due_ms"
    " FROM sagas WHERE saga_id = ?"
)


class NotMovedError(Exception):
    """Not every saga row of a batch was at its expected seq; the transaction rolled back."""


class SqliteWriter:
    """Writes appends and creates to one SQLite file, a transaction per call, on one thread.

    ``encode`` turns a JSON value into the text the log's JSON columns hold (the engine's
    serialiser, so SQLAlchemy reads back what this wrote); ``decode`` does the reverse.
    """

    def __init__(
        self,
        path: str,
        setup: SqliteSetup,
        *,
        encode: Callable[[Any], str],
        decode: Callable[[str], Any],
    ) -> None:
        self._path = path
        self._setup = setup
        self._encode = encode
        self._decode = decode
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saga-log-writer")
        try:
            self._conn = await self._run(self._connect)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False only because close() may come from another loop's task;
        # every use is on this writer's one thread.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            self._setup.configure(conn, sqlite3.OperationalError)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _run(self, fn: Callable[[], _T]) -> _T:
        if self._executor is None:
            raise LogError("the saga log is not open; call open() first")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- appends -------------------------------------------------------------------------

    async def append(self, ordered: Sequence[Append]) -> None:
        """Append every item (sorted by saga id, one per saga) in one transaction, or none.

        Raises NotMovedError, having written nothing, if a saga is missing or not at its
        ``expected_seq`` (``SqlSagaLog`` then finds which, as it does on PostgreSQL).
        """
        params = [
            (
                item.expected_seq + len(item.events),
                SagaStatus(item.status).value,
                item.current_step,
                None if item.health is None else Health(item.health).value,
                item.attempt,
                item.waiting_for,
                item.due_ms,
                item.events[-1].at_ms if item.events else None,
                item.saga_id,
                item.expected_seq,
                item.epoch,
                item.epoch,
            )
            for item in ordered
        ]
        rows = [
            (
                item.saga_id,
                item.expected_seq + offset,
                new.type.value,
                self._json(new.data, item.saga_id),
                new.at_ms,
                new.format,
                item.epoch,
            )
            for item in ordered
            for offset, new in enumerate(item.events, start=1)
        ]
        await self._run(lambda: self._append(ordered, params, rows))

    def _append(
        self, ordered: Sequence[Append], params: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]
    ) -> None:
        conn = self._connection()
        with _transaction(conn):
            if conn.executemany(_ADVANCE, params).rowcount != len(params):
                raise NotMovedError  # someone moved a row, or one is missing: write nothing
            conn.executemany(_INSERT_EVENT, rows)

    # -- creates -------------------------------------------------------------------------

    async def create_many(self, sagas: Sequence[NewSaga]) -> dict[str, tuple[SagaRecord, bool]]:
        """Create each saga (ids unique) whose id is free, in one transaction.

        Returns each id's record and whether this call created it.
        """
        rows = [
            (
                (
                    saga.saga_id,
                    saga.name,
                    saga.version,
                    SagaStatus(saga.status).value,
                    self._json(saga.input, saga.saga_id),
                    saga.started.at_ms,
                    saga.updated_ms,
                    saga.last_seq,
                    saga.current_step,
                    None if saga.health is None else Health(saga.health).value,
                    saga.attempt,
                    saga.owner,
                    saga.epoch,
                    saga.waiting_for,
                    saga.due_ms,
                ),
                [
                    (
                        saga.saga_id,
                        seq,
                        new.type.value,
                        self._json(new.data, saga.saga_id),
                        new.at_ms,
                        new.format,
                        saga.epoch or None,
                    )
                    for seq, new in enumerate(saga.all_events, start=1)
                ],
            )
            for saga in sagas
        ]
        return await self._run(lambda: self._create_many(sagas, rows))

    def _create_many(
        self,
        sagas: Sequence[NewSaga],
        rows: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]],
    ) -> dict[str, tuple[SagaRecord, bool]]:
        conn = self._connection()
        found: dict[str, tuple[SagaRecord, bool]] = {}
        with _transaction(conn):
            for saga, (saga_row, event_rows) in zip(sagas, rows, strict=True):
                if conn.execute(_INSERT_SAGA, saga_row).rowcount == 1:
                    conn.executemany(_INSERT_EVENT, event_rows)
                    # The input as it reads back from its JSON column.
                    found[saga.saga_id] = (saga.record(self._decode(saga_row[4])), True)
                    continue
                existing = conn.execute(_SELECT_SAGA, (saga.saga_id,)).fetchone()
                found[saga.saga_id] = (self._existing(existing), False)
        return found

    def _existing(self, row: tuple[Any, ...]) -> SagaRecord:
        (
            saga_id,
            name,
            version,
            status,
            input_,
            created,
            updated,
            last_seq,
            step,
            health,
            attempt,
            owner,
            epoch,
            waiting_for,
            due_ms,
        ) = row
        return SagaRecord(
            saga_id=saga_id,
            name=name,
            version=version,
            status=SagaStatus(status),
            input=self._decode(input_),
            created_ms=created,
            updated_ms=updated,
            last_seq=last_seq,
            current_step=step,
            health=None if health is None else Health(health),
            attempt=attempt,
            owner=owner,
            epoch=epoch,
            waiting_for=waiting_for,
            due_ms=due_ms,
        )

    # -- helpers -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LogError("the saga log is not open; call open() first")
        return self._conn

    def _json(self, value: Any, saga_id: str) -> str:
        try:
            return self._encode(value)
        except (TypeError, ValueError) as exc:
            raise LogError(
                f"saga log write failed: data is not JSON-serialisable: {exc}", saga_id=saga_id
            ) from exc


class _transaction:  # noqa: N801 (a context manager, used as ``with _transaction(conn)``)
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error (if still in a transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:
            self._conn.rollback()
