"""Ownership in every log: claims, the epoch fence, take-over after a lease, hand-back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from saga.errors import FencedError, LogError
from saga.events import SagaStatus
from saga.log.base import Append, SagaLog
from saga.log.memory import InMemorySagaLog
from saga.log.ownership import Load
from saga.log.sql import SqlSagaLog
from saga.testing.log_contract import T0, new_saga, step_sent

LONG = 60_000


def _append(saga_id: str, expected_seq: int, epoch: int | None, at_ms: int = T0 + 1) -> Append:
    return Append(
        saga_id=saga_id,
        expected_seq=expected_seq,
        events=[step_sent("a", at_ms)],
        status=SagaStatus.RUNNING,
        epoch=epoch,
    )


async def _epochs(log: SagaLog, saga_id: str) -> list[int | None]:
    """The epoch each of the saga's events was written under."""
    if isinstance(log, InMemorySagaLog):
        return log.epochs(saga_id)
    assert isinstance(log, SqlSagaLog)
    from sqlalchemy import text

    async with log.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT epoch FROM saga_events WHERE saga_id = :s ORDER BY seq"), {"s": saga_id}
        )
        return [row.epoch for row in rows]


async def test_a_created_saga_is_its_creators_at_epoch_one_and_writes_carry_it(
    any_log: SagaLog,
) -> None:
    own = any_log.ownership
    await own.join("a-1", "a", LONG)
    record, created = await any_log.create(replace(new_saga("s1"), owner="a-1"))
    assert created
    assert record.owner == "a-1"
    assert record.epoch == 1
    await any_log.append([_append("s1", 1, 1)])
    stored = await any_log.get("s1")
    assert stored is not None
    assert (stored.owner, stored.epoch, stored.last_seq) == ("a-1", 1, 2)
    assert await _epochs(any_log, "s1") == [1, 1]
    # Nothing claims what a live coordinator owns (on SQLite only one coordinator runs).
    if not own.exclusive:
        await own.join("b-1", "b", LONG)
        assert await own.claim("b-1", 10) == []


async def test_a_stale_epoch_is_fenced_and_writes_nothing(any_log: SagaLog) -> None:
    own = any_log.ownership
    await own.join("a-1", "a", LONG)
    await own.join("b-1", "b", LONG)
    await any_log.create(replace(new_saga("s1"), owner="a-1"))
    taken = await own.take("b-1", "s1")
    assert taken is not None
    assert taken.epoch == 2
    with pytest.raises(FencedError) as refused:
        await any_log.append([_append("s1", 1, 1)])
    assert refused.value.saga_id == "s1"
    stored = await any_log.get("s1")
    assert stored is not None
    assert (stored.owner, stored.epoch, stored.last_seq) == ("b-1", 2, 1)
    assert len(await any_log.events("s1")) == 1
    # In a batch, only the fenced saga is refused and the whole batch writes nothing.
    await any_log.create(replace(new_saga("s2"), owner="a-1"))
    with pytest.raises(FencedError):
        await any_log.append([_append("s2", 1, 1), _append("s1", 1, 1)])
    assert len(await any_log.events("s2")) == 1
    # The new owner writes at its epoch; an append with no epoch is not fenced (single use).
    await any_log.append([_append("s1", 1, 2), _append("s2", 1, 1)])
    assert await _epochs(any_log, "s1") == [1, 2]


async def test_claims_take_unowned_sagas_oldest_first_and_record_each_claim(
    any_log: SagaLog,
) -> None:
    own = any_log.ownership
    for index in range(5):
        await any_log.create(new_saga(f"s{index}", at_ms=T0 + index))
    await own.join("a-1", "a", LONG)
    first = await own.claim("a-1", 3)
    assert [c.saga_id for c in first] == ["s0", "s1", "s2"]
    assert all(c.epoch == 1 for c in first)
    rest = await own.claim("a-1", 10)
    assert [c.saga_id for c in rest] == ["s3", "s4"]
    assert await own.claim("a-1", 10) == []
    assert sorted(c.saga_id for c in await own.owned("a-1")) == [f"s{i}" for i in range(5)]
    census = await own.census()
    assert (census.unfinished, census.live) == (5, 1)


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_log_url(request: pytest.FixtureRequest) -> str:
    """``memory``, or a fresh PostgreSQL database: logs several coordinators can share."""
    if request.param == "memory":
        return "memory"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def shared_log(shared_log_url: str) -> AsyncIterator[SagaLog]:
    log: SagaLog = InMemorySagaLog() if shared_log_url == "memory" else SqlSagaLog(shared_log_url)
    await log.open()
    yield log
    await log.close()


async def test_a_dead_coordinators_sagas_are_taken_over_once_its_lease_expires(
    shared_log: SagaLog,
) -> None:
    any_log = shared_log
    own = any_log.ownership
    assert not own.exclusive
    await own.join("a-1", "a", 300)
    await own.join("b-1", "b", LONG)
    await any_log.create(replace(new_saga("s1"), owner="a-1"))
    assert await own.claim("b-1", 10) == []  # a-1 is alive
    await asyncio.sleep(0.6)  # a-1 never renews
    assert not await own.renew("a-1", 300, Load())  # too late: expired stays expired
    claims = await own.claim("b-1", 10)
    assert [(c.saga_id, c.epoch) for c in claims] == [("s1", 2)]
    with pytest.raises(FencedError):
        await any_log.append([_append("s1", 1, 1)])
    live = {m.coordinator_id for m in await own.members()}
    assert live == {"b-1"}
    ended = {m.coordinator_id for m in await own.members(include_ended_ms=LONG)}
    assert ended == {"a-1", "b-1"}


async def test_leave_hands_back_at_once_and_a_restart_under_the_same_name_supersedes(
    any_log: SagaLog,
) -> None:
    own = any_log.ownership
    await own.join("a-1", "a", LONG)
    await any_log.create(replace(new_saga("s1"), owner="a-1"))
    await any_log.create(replace(new_saga("s2"), owner="a-1"))
    assert await own.renew("a-1", LONG, Load(sagas=2, in_flight=1, fenced_writes=3))
    (member,) = await own.members()
    assert (member.name, member.sagas, member.in_flight, member.fenced_writes) == ("a", 2, 1, 3)
    # A restart of "a" (it crashed): the old lease ends now and its sagas can be claimed.
    await own.join("a-2", "a", LONG)
    assert [m.coordinator_id for m in await own.members()] == ["a-2"]
    assert {c.saga_id for c in await own.claim("a-2", 10)} == {"s1", "s2"}
    assert await own.leave("a-2") == 2
    record = await any_log.get("s1")
    assert record is not None
    assert record.owner is None
    assert record.epoch == 3
    assert await own.members() == []
    await own.join("b-1", "b", LONG)  # on SQLite, leave released the file's lock
    assert {c.saga_id for c in await own.claim("b-1", 10)} == {"s1", "s2"}


async def test_release_hands_back_only_what_the_coordinator_owns(any_log: SagaLog) -> None:
    own = any_log.ownership
    await own.join("a-1", "a", LONG)
    await own.join("b-1", "b", LONG)
    await any_log.create(replace(new_saga("s1"), owner="a-1"))
    await any_log.create(replace(new_saga("s2"), owner="b-1"))
    assert await own.release("a-1", ["s1", "s2", "missing"]) == 1
    s1, s2 = await any_log.get("s1"), await any_log.get("s2")
    assert s1 is not None
    assert s1.owner is None
    assert s2 is not None
    assert s2.owner == "b-1"


async def test_a_second_coordinator_on_one_sqlite_file_is_refused(sqlite_url: str) -> None:
    first, second = SqlSagaLog(sqlite_url), SqlSagaLog(sqlite_url)
    await first.open()
    await second.open()
    try:
        await first.ownership.join("a-1", "a", LONG)
        with pytest.raises(LogError, match=r"in use by another coordinator.*PostgreSQL"):
            await second.ownership.join("b-1", "b", LONG)
        await first.close()  # the lock goes with the log
        await second.ownership.join("b-1", "b", LONG)
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
async def test_concurrent_claims_on_postgres_never_share_a_saga(postgres_url: str) -> None:
    logs = [SqlSagaLog(postgres_url) for _ in range(3)]
    for log in logs:
        await log.open()
    try:
        await logs[0].create_many([new_saga(f"s{i:03}", at_ms=T0 + i) for i in range(300)])
        for index, log in enumerate(logs):
            await log.ownership.join(f"c{index}", f"c{index}", LONG)

        async def claim_all(index: int) -> list[str]:
            got: list[str] = []
            while batch := await logs[index].ownership.claim(f"c{index}", 7):
                got.extend(c.saga_id for c in batch)
            return got

        found = await asyncio.gather(*(claim_all(i) for i in range(3)))
        every = [saga_id for got in found for saga_id in got]
        assert sorted(every) == [f"s{i:03}" for i in range(300)]  # each exactly once
        assert all(found)  # SKIP LOCKED let all three claim at once
    finally:
        for log in logs:
            await log.close()


async def _forge_event_at(log: SagaLog, saga_id: str, seq: int, epoch: int) -> None:
    """Store event ``seq`` as written under ``epoch``, bypassing the fence (what fencing
    prevents, so that the audit has something to find)."""
    await log.append([_append(saga_id, seq - 1, None)])
    if isinstance(log, InMemorySagaLog):
        log.ownership.event_epochs[saga_id][seq - 1] = epoch  # type: ignore[attr-defined]
        return
    assert isinstance(log, SqlSagaLog)
    from sqlalchemy import text

    async with log.engine.begin() as conn:
        await conn.execute(
            text("UPDATE saga_events SET epoch = :e WHERE saga_id = :s AND seq = :q"),
            {"e": epoch, "s": saga_id, "q": seq},
        )


async def test_the_audit_counts_take_overs_and_finds_a_write_after_a_claim(
    any_log: SagaLog,
) -> None:
    own = any_log.ownership
    await own.join("a-1", "a", LONG)
    await any_log.create(replace(new_saga("s1"), owner="a-1"))
    await any_log.create(replace(new_saga("s2"), owner="a-1"))
    await any_log.create(new_saga("s3"))
    await own.take("a-1", "s2")  # from its owner (itself, earlier): a take-over
    await own.claim("a-1", 10)  # s3 had no owner: a claim, not a take-over
    await any_log.append([_append("s2", 1, 2)])
    clean = await own.audit()
    assert (clean.claims, clean.taken_over, clean.driven_by_two) == (2, 1, 0)
    await own.take("a-1", "s1")  # epoch 2 after seq 1
    await _forge_event_at(any_log, "s1", 2, 1)  # then a decision under epoch 1
    assert (await own.audit()).driven_by_two == 1


def test_overlaps_reads_claims_against_event_epochs() -> None:
    from saga.log.ownership import overlaps

    assert not overlaps([(2, 2)], [1, 1, 2, 2])
    assert overlaps([(2, 2)], [1, 1, 1, 2])  # seq 3 written at epoch 1 after the claim
    assert overlaps([(1, 2), (3, 3)], [1, 2, 2, 2])  # seq 4 at epoch 2 after epoch 3's claim
    assert not overlaps([(1, 2)], [None, None, 2])


@pytest.mark.postgres
async def test_a_log_session_idle_inside_a_transaction_is_ended_by_postgres(
    postgres_url: str,
) -> None:
    """A coordinator paused mid-commit must not hold its sagas' row locks for ever."""
    from sqlalchemy import text

    from saga.log.sql.engine import IDLE_IN_TRANSACTION_TIMEOUT_MS

    log = SqlSagaLog(postgres_url)
    await log.open()
    try:
        async with log.engine.connect() as conn:
            shown = (await conn.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar()
        assert shown == f"{IDLE_IN_TRANSACTION_TIMEOUT_MS // 1000}s"
    finally:
        await log.close()
