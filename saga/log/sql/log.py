"""SqlSagaLog: the SagaLog on SQLite (aiosqlite) or PostgreSQL (asyncpg), in SQLAlchemy Core."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Integer,
    Row,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from saga.errors import ConcurrencyError, FencedError, LogError, SagaNotFoundError
from saga.events import Event, EventType, Health, SagaStatus
from saga.log.base import DEFAULT_QUERY, Append, NewSaga, Page, SagaLog, SagaQuery, SagaRecord
from saga.log.ownership import Ownership
from saga.log.sql import tally as sql_tally
from saga.log.sql.engine import SQLITE, dumps_json, make_engine
from saga.log.sql.migrate import check_schema, upgrade
from saga.log.sql.ownership import SqlOwnership
from saga.log.sql.query import find_query
from saga.log.sql.schema import saga_events, sagas
from saga.log.sql.sqlite_writer import NotMovedError, SqliteWriter
from saga.log.sql.url import normalize_url, redact
from saga.log.tally import Tally, check_window
from saga.sqlconnect import WRITE
from saga.sqlpool import PoolOptions, pool_problem, retrying

logger = logging.getLogger(__name__)

_DRIVER_ERRORS = (SQLAlchemyError, OSError, sqlite3.Error)
_T = TypeVar("_T")


@contextmanager
def _wrap_driver_errors(
    action: str, saga_id: str | None = None, pool: PoolOptions | None = None
) -> Iterator[None]:
    """Re-raise driver failures as LogError, keeping the driver's error as the cause."""
    try:
        yield
    except _DRIVER_ERRORS as exc:
        cause = exc.orig if isinstance(exc, StatementError) else None
        if isinstance(cause, TypeError | ValueError) and not isinstance(exc, DBAPIError):
            # Raised while binding parameters: the JSON serialiser refused the data.
            raise LogError(
                f"saga log {action} failed: data is not JSON-serialisable: {cause}",
                saga_id=saga_id,
            ) from exc
        problem = None if pool is None else pool_problem(exc, pool)
        if problem is not None:
            raise LogError(f"saga log {action} failed: {problem}", saga_id=saga_id) from exc
        raise LogError(f"saga log {action} failed: {exc}", saga_id=saga_id) from exc


def _as_stored(value: Any) -> Any:
    """``value`` as it reads back from a JSON column."""
    return json.loads(json.dumps(value))


def _same_start(record: SagaRecord, saga: NewSaga) -> bool:
    """Whether the stored saga is the one ``saga`` would have created (to the millisecond)."""
    return (
        record.name == saga.name
        and record.version == saga.version
        and record.created_ms == saga.started.at_ms
        and record.input == _as_stored(saga.input)
    )


def _dialect_insert(engine: AsyncEngine, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the engine's dialect (SQLite or PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _saga_row(saga: NewSaga) -> dict[str, Any]:
    return {
        "saga_id": saga.saga_id,
        "name": saga.name,
        "version": saga.version,
        "status": SagaStatus(saga.status).value,
        "input": saga.input,
        "created_ms": saga.started.at_ms,
        "updated_ms": saga.updated_ms,
        "last_seq": saga.last_seq,
        "current_step": saga.current_step,
        "health": None if saga.health is None else Health(saga.health).value,
        "attempt": saga.attempt,
        "owner": saga.owner,
        "epoch": saga.epoch,
        "waiting_for": saga.waiting_for,
        "due_ms": saga.due_ms,
    }


def _event_rows(saga: NewSaga) -> list[dict[str, Any]]:
    return [
        {
            "saga_id": saga.saga_id,
            "seq": seq,
            "type": new.type.value,
            "data": new.data,
            "at_ms": new.at_ms,
            "format": new.format,
            "epoch": saga.epoch or None,
        }
        for seq, new in enumerate(saga.all_events, start=1)
    ]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _record(row: Row[Any]) -> SagaRecord:
    return SagaRecord(
        saga_id=row.saga_id,
        name=row.name,
        version=row.version,
        status=SagaStatus(row.status),
        input=row.input,
        created_ms=row.created_ms,
        updated_ms=row.updated_ms,
        last_seq=row.last_seq,
        current_step=row.current_step,
        health=None if row.health is None else Health(row.health),
        attempt=row.attempt,
        owner=row.owner,
        epoch=row.epoch,
        waiting_for=row.waiting_for,
        due_ms=row.due_ms,
    )


def _event(row: Row[Any]) -> Event:
    return Event(
        saga_id=row.saga_id,
        seq=row.seq,
        type=EventType(row.type),
        data=row.data,
        at_ms=row.at_ms,
        format=row.format,
    )


def _sqlite_writer(url: str) -> SqliteWriter | None:
    """The direct writer for a SQLite URL; None for PostgreSQL."""
    path = _sqlite_path(url)
    if path is None:
        return None
    return SqliteWriter(path, SQLITE, encode=dumps_json, decode=json.loads)


def _sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL; None for PostgreSQL (and an in-memory SQLite database)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return parsed.database


def _check_sqlite_folder(url: str) -> None:
    """Refuse a SQLite file in a missing folder before any driver thread is started.

    (A failed aiosqlite connect leaves a worker thread that may call back into a closed
    event loop; checking first keeps that common mistake clean.)
    """
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return
    folder = Path(parsed.database).expanduser().resolve().parent
    if not folder.is_dir():
        raise LogError(f"cannot open the SQLite log {parsed.database!r}: no folder {folder}")


class SqlSagaLog(SagaLog):
    """The saga log in a SQL database: a SQLite file by default, PostgreSQL for production.

    ``url`` is ``sqlite:///path/to/saga.db`` or ``postgresql://user:pw@host/db`` (the async
    driver forms are accepted too). ``open()`` creates or upgrades the schema; several
    coordinators may open the same PostgreSQL database at once. ``echo`` logs every SQL
    statement (through the ``sqlalchemy.engine`` logger). ``pool`` bounds the connections
    held (``PoolOptions``: by default one while idle, at most five). With ``migrate=False``
    (for readers) ``open()`` creates and upgrades nothing: a missing SQLite file or a schema
    other than this release's is a LogError that says to run ``saga migrate``.

    Every operation survives a database restart: a lost or refused connection is tried again
    (tenacity: bounded, jittered, each retry logged at warning), and a stale pooled
    connection is replaced at checkout.
    """

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        migrate: bool = True,
        pool: PoolOptions | None = None,
    ) -> None:
        self._url = normalize_url(url)
        self._echo = echo
        self._migrate = migrate
        self.pool = pool or PoolOptions()
        """The connection pool's bounds."""
        self._engine: AsyncEngine | None = None
        self._sqlite: SqliteWriter | None = None
        """On SQLite, where appends and creates are written (one thread hop per commit)."""
        self._ownership = SqlOwnership(
            self._run,
            sqlite=make_url(self._url).drivername.startswith("sqlite"),
            log_file=_sqlite_path(self._url),
        )

    @property
    def ownership(self) -> Ownership:
        return self._ownership

    async def _run(
        self, action: str, body: Callable[[AsyncConnection], Awaitable[_T]], retry: bool
    ) -> _T:
        """``body`` on a connection of the log's engine (for ``SqlOwnership``)."""
        engine = self.engine

        async def attempt(_: bool) -> _T:
            async with engine.connect() as conn:
                return await body(conn)

        if retry:
            return await self._retry(action, None, attempt)
        with _wrap_driver_errors(action, None, self.pool):
            return await attempt(False)

    def __repr__(self) -> str:
        return f"SqlSagaLog({redact(self._url)!r})"

    @property
    def url(self) -> str:
        """The normalised SQLAlchemy URL, password hidden."""
        return redact(self._url)

    @property
    def engine(self) -> AsyncEngine:
        """The open engine, for adapters that share this database; LogError if not open."""
        if self._engine is None:
            raise LogError("the saga log is not open; call open() first")
        return self._engine

    async def open(self) -> None:
        if self._engine is not None:
            return
        _check_sqlite_folder(self._url)
        engine = make_engine(self._url, echo=self._echo, pool=self.pool)
        try:
            # upgrade() is one transaction and a no-op at head, so trying again is safe.
            where = redact(self._url)
            await self._retry(
                f"open of {where}",
                None,
                lambda _: upgrade(engine) if self._migrate else check_schema(engine, where),
            )
            writer = _sqlite_writer(self._url)
            if writer is not None:
                await writer.open()
        except BaseException:
            await engine.dispose()
            raise
        self._engine, self._sqlite = engine, writer

    async def close(self) -> None:
        self._ownership.release_file()
        engine, self._engine = self._engine, None
        writer, self._sqlite = self._sqlite, None
        if writer is not None:
            with _wrap_driver_errors("close"):
                await writer.close()
        if engine is not None:
            with _wrap_driver_errors("close"):
                await engine.dispose()

    async def _retry(
        self,
        action: str,
        saga_id: str | None,
        operation: Callable[[bool], Awaitable[_T]],
    ) -> _T:
        """Run ``operation(retry)``, trying again on transient errors; LogError otherwise.

        ``retry`` is False on the first try. A write that is tried again may find that its
        first try committed after all (the connection was lost while COMMIT was under way):
        each writer checks for that itself, so a retry never appends twice.
        """
        with _wrap_driver_errors(action, saga_id, self.pool):
            async for attempt in retrying(logger, f"saga log {action}"):
                with attempt:
                    return await operation(attempt.retry_state.attempt_number > 1)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def create(self, saga: NewSaga) -> tuple[SagaRecord, bool]:
        engine = self.engine
        if self._sqlite is not None:
            return (await self._create_on_sqlite(self._sqlite, [saga]))[saga.saga_id]
        insert_saga = insert(sagas).values(_saga_row(saga)).returning(*sagas.c)
        insert_events = insert(saga_events)
        event_rows = _event_rows(saga)

        async def attempt(retry: bool) -> tuple[SagaRecord, bool]:
            try:
                async with engine.connect() as conn:
                    await conn.execution_options(**WRITE)
                    async with conn.begin():
                        row = (await conn.execute(insert_saga)).one()
                        await conn.execute(insert_events, event_rows)
            except IntegrityError:
                # The id is taken (possibly by a concurrent create); nothing was written.
                existing = await self._get(engine, saga.saga_id)
                if existing is None:
                    raise
                # On a retry the id may be taken by our own first try, whose COMMIT got
                # through before the connection was lost: that saga is ours, created now.
                return existing, retry and _same_start(existing, saga)
            return _record(row), True

        return await self._retry("create", saga.saga_id, attempt)

    async def create_many(self, sagas_: Sequence[NewSaga]) -> list[tuple[SagaRecord, bool]]:
        if len(sagas_) <= 1:
            return [await self.create(saga) for saga in sagas_]
        engine = self.engine
        unique = list({saga.saga_id: saga for saga in reversed(sagas_)}.values())[::-1]
        if self._sqlite is not None:
            results = await self._create_on_sqlite(self._sqlite, unique)
            answers = []
            for saga in sagas_:
                answers.append(results[saga.saga_id])
                # A repeated id was created by its first mention.
                results[saga.saga_id] = (results[saga.saga_id][0], False)
            return answers
        insert_sagas = (
            _dialect_insert(engine, sagas)
            .on_conflict_do_nothing(index_elements=[sagas.c.saga_id])
            .returning(sagas.c.saga_id)
        )
        rows = [_saga_row(saga) for saga in unique]

        async def attempt(retry: bool) -> tuple[set[str], dict[str, SagaRecord]]:
            async with engine.connect() as conn:
                await conn.execution_options(**WRITE)
                async with conn.begin():
                    created: set[str] = set()
                    for chunk in _chunks(rows, 500):
                        result = await conn.execute(insert_sagas, chunk)
                        created.update(row.saga_id for row in result)
                    events = [
                        row
                        for saga in unique
                        if saga.saga_id in created
                        for row in _event_rows(saga)
                    ]
                    if events:
                        await conn.execute(insert(saga_events), events)
                    # Read back only the sagas that were there already; a new one's row is
                    # what was just written.
                    found = {
                        new.saga_id: new.record(_as_stored(new.input))
                        for new in unique
                        if new.saga_id in created
                    }
                    taken = [saga.saga_id for saga in unique if saga.saga_id not in created]
                    for chunk in _chunks(taken, 500):
                        query = select(sagas).where(sagas.c.saga_id.in_(chunk))
                        for row in await conn.execute(query):
                            found[row.saga_id] = _record(row)
            if retry:
                # Our first try may have committed before its connection was lost: the
                # sagas it inserted (with their first events) are ours, created now.
                created.update(
                    saga.saga_id for saga in unique if _same_start(found[saga.saga_id], saga)
                )
            return created, found

        created, found = await self._retry("create_many", None, attempt)
        answers = []
        for saga in sagas_:
            answers.append((found[saga.saga_id], saga.saga_id in created))
            created.discard(saga.saga_id)  # a repeated id was created by its first mention
        return answers

    async def _create_on_sqlite(
        self, writer: SqliteWriter, unique: Sequence[NewSaga]
    ) -> dict[str, tuple[SagaRecord, bool]]:
        async def attempt(retry: bool) -> dict[str, tuple[SagaRecord, bool]]:
            found = await writer.create_many(unique)
            if retry:
                # As for PostgreSQL below: a first try that committed after all made these.
                for saga in unique:
                    record, created = found[saga.saga_id]
                    found[saga.saga_id] = (record, created or _same_start(record, saga))
            return found

        return await self._retry("create", unique[0].saga_id if unique else None, attempt)

    async def append(self, batch: Sequence[Append]) -> None:
        engine = self.engine
        if not batch:
            return
        # Lock saga rows in one global order so two group commits can never deadlock.
        ordered = _merged(sorted(batch, key=lambda a: a.saga_id))
        writer = self._sqlite

        async def attempt(retry: bool) -> None:
            try:
                if writer is not None:
                    await writer.append(ordered)
                    return
                rows = _append_rows(ordered)
                async with engine.connect() as conn:
                    await conn.execution_options(**WRITE)
                    async with conn.begin():
                        await _advance_all(conn, ordered)
                        if rows:
                            await conn.execute(insert(saga_events), rows)
            except NotMovedError:
                # Rolled back. Retrying a group commit whose COMMIT outcome is unknown is
                # safe: the batch is one transaction, so either none of it or all of it is
                # stored. If none, this try writes it. If all, every saga's row has moved past
                # expected_seq and the batch is refused (the unique (saga_id, seq) would
                # refuse a double append too); then, and only on a retry, finding exactly our
                # events at exactly our seqs proves the first try committed: done, not a
                # conflict. Otherwise the first saga not at its expected seq is named.
                if retry and await _landed(engine, _append_rows(ordered)):
                    return
                await _refuse(engine, ordered)

        await self._retry("append", None, attempt)

    async def get(self, saga_id: str) -> SagaRecord | None:
        engine = self.engine
        return await self._retry("get", saga_id, lambda _: self._get(engine, saga_id))

    @staticmethod
    async def _get(engine: AsyncEngine, saga_id: str) -> SagaRecord | None:
        async with engine.connect() as conn:
            result = await conn.execute(select(sagas).where(sagas.c.saga_id == saga_id))
            row = result.one_or_none()
        return None if row is None else _record(row)

    async def events(self, saga_id: str, after_seq: int = 0) -> list[Event]:
        engine = self.engine
        query = (
            select(saga_events)
            .where(saga_events.c.saga_id == saga_id, saga_events.c.seq > after_seq)
            .order_by(saga_events.c.seq)
        )

        async def attempt(_: bool) -> list[Event]:
            async with engine.connect() as conn:
                return [_event(row) for row in await conn.execute(query)]

        return await self._retry("events", saga_id, attempt)

    async def events_many(self, saga_ids: Sequence[str]) -> dict[str, list[Event]]:
        engine = self.engine
        unique = list(dict.fromkeys(saga_ids))

        async def attempt(_: bool) -> dict[str, list[Event]]:
            found: dict[str, list[Event]] = {saga_id: [] for saga_id in unique}
            async with engine.connect() as conn:
                for chunk in _chunks(unique, 500):
                    query = (
                        select(saga_events)
                        .where(saga_events.c.saga_id.in_(chunk))
                        .order_by(saga_events.c.saga_id, saga_events.c.seq)
                    )
                    for row in await conn.execute(query):
                        found[row.saga_id].append(_event(row))
            return found

        return await self._retry("events", None, attempt)

    async def find(self, query: SagaQuery = DEFAULT_QUERY) -> Page:
        engine = self.engine
        select_page = find_query(query, sqlite=engine.dialect.name == "sqlite")

        async def attempt(_: bool) -> list[SagaRecord]:
            async with engine.connect() as conn:
                return [_record(row) for row in await conn.execute(select_page)]

        return Page.of(await self._retry("find", None, attempt), query.limit)

    async def tally(
        self, since_ms: int, until_ms: int, *, stalled_before_ms: int | None = None
    ) -> Tally:
        check_window(since_ms, until_ms)  # a bad window is the caller's QueryError, not ours
        engine = self.engine

        async def attempt(_: bool) -> Tally:
            async with engine.connect() as conn:
                return await sql_tally.tally(conn, since_ms, until_ms, stalled_before_ms)

        return await self._retry("tally", None, attempt)

    async def done_by_hand(self, saga_ids: Sequence[str]) -> set[str]:
        engine = self.engine

        async def attempt(_: bool) -> set[str]:
            async with engine.connect() as conn:
                return await sql_tally.done_by_hand(conn, saga_ids)

        return await self._retry("done_by_hand", None, attempt)


async def _landed(engine: AsyncEngine, rows: list[dict[str, Any]]) -> bool:
    """Whether every event row of a batch is stored, exactly as given, at its seq."""
    if not rows:
        return False
    wanted = {
        (row["saga_id"], row["seq"]): (
            row["type"],
            row["at_ms"],
            _as_stored(row["data"]),
            row["format"],
        )
        for row in rows
    }
    key = tuple_(saga_events.c.saga_id, saga_events.c.seq)
    stored = {}
    async with engine.connect() as conn:
        for chunk in _chunks(list(wanted), 500):
            result = await conn.execute(select(saga_events).where(key.in_(chunk)))
            for row in result:
                stored[(row.saga_id, row.seq)] = (row.type, row.at_ms, row.data, row.format)
    return stored == wanted


_ADVANCE = (
    update(sagas)
    .where(
        sagas.c.saga_id == bindparam("b_saga_id"),
        sagas.c.last_seq == bindparam("b_expected_seq"),
        or_(
            bindparam("b_epoch", type_=Integer).is_(None),
            sagas.c.epoch == bindparam("b_epoch", type_=Integer),
        ),
    )
    .values(
        last_seq=bindparam("b_last_seq"),
        status=bindparam("b_status"),
        current_step=bindparam("b_current_step"),
        health=bindparam("b_health"),
        attempt=bindparam("b_attempt"),
        waiting_for=bindparam("b_waiting_for"),
        due_ms=bindparam("b_due_ms", type_=BigInteger),
        updated_ms=func.coalesce(bindparam("b_updated_ms", type_=BigInteger), sagas.c.updated_ms),
    )
)
"""Moves one saga's row on from the seq its writer saw, if still at the writer's epoch (when
it gives one: the fence), executed once per group commit for every saga in it, as one
executemany."""

_ADVANCE_MANY_PG = text(
    """
    UPDATE sagas AS s SET
        last_seq = v.last_seq, status = v.status, current_step = v.current_step,
        health = v.health, attempt = v.attempt, waiting_for = v.waiting_for, due_ms = v.due_ms,
        updated_ms = coalesce(v.updated_ms, s.updated_ms)
    FROM unnest(
        CAST(:saga_ids AS text[]), CAST(:expected AS integer[]), CAST(:last AS integer[]),
        CAST(:statuses AS text[]), CAST(:steps AS text[]), CAST(:healths AS text[]),
        CAST(:attempts AS integer[]), CAST(:waiting_for AS text[]), CAST(:due AS bigint[]),
        CAST(:updated AS bigint[]), CAST(:epochs AS integer[])
    ) AS v(
        saga_id, expected, last_seq, status, current_step, health, attempt, waiting_for, due_ms,
        updated_ms, epoch
    )
    WHERE s.saga_id = v.saga_id AND s.last_seq = v.expected
      AND (v.epoch IS NULL OR s.epoch = v.epoch)
    RETURNING s.saga_id
    """
)
"""The same on PostgreSQL, as one statement whose RETURNING says which rows moved (asyncpg's
executemany reports no row counts): constant SQL, so the server plans it once."""


def _advance_params(item: Append) -> dict[str, Any]:
    return {
        "b_saga_id": item.saga_id,
        "b_expected_seq": item.expected_seq,
        "b_last_seq": item.expected_seq + len(item.events),
        "b_status": SagaStatus(item.status).value,
        "b_current_step": item.current_step,
        "b_health": None if item.health is None else Health(item.health).value,
        "b_attempt": item.attempt,
        "b_waiting_for": item.waiting_for,
        "b_due_ms": item.due_ms,
        "b_updated_ms": item.events[-1].at_ms if item.events else None,
        "b_epoch": item.epoch,
    }


def _append_rows(ordered: Sequence[Append]) -> list[dict[str, Any]]:
    """The event rows of a batch of appends."""
    return [
        {
            "saga_id": item.saga_id,
            "seq": item.expected_seq + offset,
            "type": new.type.value,
            "data": new.data,
            "at_ms": new.at_ms,
            "format": new.format,
            "epoch": item.epoch,
        }
        for item in ordered
        for offset, new in enumerate(item.events, start=1)
    ]


def _merged(ordered: list[Append]) -> list[Append]:
    """``ordered`` (by saga id) with a saga's consecutive appends joined into one.

    One statement moves every row at once, and a row can move only once per statement. An
    append that does not follow on from the one before it for the same saga conflicts.
    """
    merged: list[Append] = []
    for item in ordered:
        last = merged[-1] if merged else None
        if last is None or last.saga_id != item.saga_id:
            merged.append(item)
            continue
        if item.expected_seq != last.expected_seq + len(last.events):
            raise ConcurrencyError(
                f"saga {item.saga_id!r} would be at seq {last.expected_seq + len(last.events)},"
                f" not the expected {item.expected_seq}",
                saga_id=item.saga_id,
            )
        merged[-1] = replace(
            item, expected_seq=last.expected_seq, events=[*last.events, *item.events]
        )
    return merged


async def _advance_all(conn: AsyncConnection, ordered: Sequence[Append]) -> None:
    """Move every saga's row from its ``expected_seq`` on, in one statement; raise NotMovedError
    unless every row moved."""
    params = [_advance_params(item) for item in ordered]
    if conn.dialect.name == "postgresql":
        columns = {
            "saga_ids": "b_saga_id", "expected": "b_expected_seq", "last": "b_last_seq",
            "statuses": "b_status", "steps": "b_current_step", "healths": "b_health",
            "attempts": "b_attempt", "waiting_for": "b_waiting_for", "due": "b_due_ms",
            "updated": "b_updated_ms", "epochs": "b_epoch",
        }  # fmt: skip
        arrays = {name: [row[key] for row in params] for name, key in columns.items()}
        moved = len((await conn.execute(_ADVANCE_MANY_PG, arrays)).all())
    else:
        moved = (await conn.execute(_ADVANCE, params)).rowcount
    if moved != len(params):
        raise NotMovedError


async def _refuse(engine: AsyncEngine, ordered: Sequence[Append]) -> None:
    """Raise for the first saga of ``ordered`` that was taken over (FencedError), or else whose
    row is missing or not at ``expected_seq``."""
    ids = [item.saga_id for item in ordered]
    stored: dict[str, tuple[int, int]] = {}
    async with engine.connect() as conn:
        for chunk in _chunks(ids, 500):
            query = select(sagas.c.saga_id, sagas.c.last_seq, sagas.c.epoch).where(
                sagas.c.saga_id.in_(chunk)
            )
            stored.update(
                (row.saga_id, (row.last_seq, row.epoch)) for row in await conn.execute(query)
            )
    for item in ordered:
        found = stored.get(item.saga_id)
        if found is not None and item.epoch is not None and found[1] != item.epoch:
            raise FencedError(
                f"saga {item.saga_id!r} was taken over (epoch {found[1]}, not {item.epoch})",
                saga_id=item.saga_id,
            )
    for item in ordered:
        found = stored.get(item.saga_id)
        if found is None:
            raise SagaNotFoundError(f"no saga {item.saga_id!r}", saga_id=item.saga_id)
        last_seq = found[0]
        if last_seq != item.expected_seq:
            raise ConcurrencyError(
                f"saga {item.saga_id!r} is at seq {last_seq}, not the expected {item.expected_seq}",
                saga_id=item.saga_id,
            )
    # Every row is at its expected seq now, yet not all moved in the transaction: a race
    # with another writer that this read cannot pin down. Stale all the same.
    raise ConcurrencyError("a saga of the batch moved while it was being written; try again")
