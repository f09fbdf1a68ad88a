"""Group commit: starts and appends from many sagas queue up and are written together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from saga.errors import ConcurrencyError, LogError, SagaNotFoundError
from saga.log.base import Append, NewSaga, SagaLog, SagaRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WriteHealth:
    """Whether the saga log accepts writes: the outcome of the group writer's last commit."""

    ok: bool
    """The last commit succeeded (or none was tried yet)."""
    failures: int = 0
    """Commits that failed in a row since the last one that succeeded."""
    error: str | None = None
    """The last failure's message, while ``ok`` is False."""
    failing_since: float | None = None
    """``time.time()`` of the first failure in the row, while ``ok`` is False."""


class _FailureReport:
    """Logs a run of failed commits at a slowing pace: the 1st (with its traceback), then the
    2nd, 4th, 8th, ... with the count, and once more when writes succeed again.

    A full disk fails every saga's write every second; logging each would bury the cause.
    """

    def __init__(self) -> None:
        self.health = WriteHealth(ok=True)
        self._next_report = 1

    def failed(self, exc: BaseException) -> None:
        failures = self.health.failures + 1
        since = self.health.failing_since or time.time()
        self.health = WriteHealth(
            ok=False, failures=failures, error=str(exc) or type(exc).__name__, failing_since=since
        )
        if failures < self._next_report:
            return
        self._next_report = failures * 2
        if failures == 1:
            log.error("the saga log refused a write: %s", exc, exc_info=exc)
        else:
            log.error(
                "the saga log has refused %d writes in a row over %.0f s (next report at %d): %s",
                failures, time.time() - since, self._next_report, exc,
            )  # fmt: skip

    def succeeded(self) -> None:
        if not self.health.ok:
            log.warning(
                "the saga log accepts writes again, after %d failed writes", self.health.failures
            )
        self.health = WriteHealth(ok=True)
        self._next_report = 1


class GroupWriter:
    """Collects ``Append``s and writes whatever is queued in one ``SagaLog.append`` call.

    While one transaction commits, the next batch fills up, so under load each commit carries
    many sagas' events. A saga's conflict fails only that saga's writes (the rest of the
    batch is committed again without it); any other failed batch is retried one append at a
    time, so one saga's bad write never fails another saga's.
    """

    def __init__(self, saga_log: SagaLog, *, max_batch: int = 512) -> None:
        self._log = saga_log
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Append, asyncio.Future[None]]] = asyncio.Queue()
        self._creates: list[tuple[NewSaga, asyncio.Future[tuple[SagaRecord, bool]]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.appends = 0
        self._report = _FailureReport()

    @property
    def health(self) -> WriteHealth:
        """Whether the log accepted the last write (readiness reports it)."""
        return self._report.health

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="saga-group-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(LogError("coordinator is closing"))
        for _, pending in self._creates:
            if not pending.done():
                pending.set_exception(LogError("coordinator is closing"))
        self._creates.clear()

    async def create(self, saga: NewSaga) -> tuple[SagaRecord, bool]:
        """``SagaLog.create`` through the group writer: many starts share one transaction."""
        if self._task is None:
            raise LogError("group writer is not running")
        future: asyncio.Future[tuple[SagaRecord, bool]] = asyncio.get_running_loop().create_future()
        self._creates.append((saga, future))
        self._wake.set()
        return await future

    async def write(self, append: Append) -> None:
        """Return once ``append`` is durably stored; raise the log's error otherwise."""
        if self._task is None:
            raise LogError("group writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((append, future))
        self._wake.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._creates:
                creates, self._creates = (
                    self._creates[: self._max_batch],
                    self._creates[self._max_batch :],
                )
                await self._commit_creates(creates)
            while not self._queue.empty():
                batch = [self._queue.get_nowait()]
                while len(batch) < self._max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self._commit(batch)

    async def _commit_creates(
        self, creates: list[tuple[NewSaga, asyncio.Future[tuple[SagaRecord, bool]]]]
    ) -> None:
        try:
            results = await self._log.create_many([saga for saga, _ in creates])
        except Exception as exc:
            self._report.failed(exc)
            for _, future in creates:
                if not future.done():
                    future.set_exception(exc)
            return
        self._report.succeeded()
        self.commits += 1
        for (_, future), result in zip(creates, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _commit(self, batch: list[tuple[Append, asyncio.Future[None]]]) -> None:
        try:
            await self._log.append([append for append, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                if isinstance(exc, ConcurrencyError | SagaNotFoundError):
                    self._report.succeeded()  # the log works; this saga's writer must reload
                else:
                    self._report.failed(exc)
                _, future = batch[0]
                if not future.done():
                    future.set_exception(exc)
                return
            conflicted = exc.saga_id if isinstance(exc, ConcurrencyError) else None
            if conflicted is not None and sum(a.saga_id == conflicted for a, _ in batch) == 1:
                # One saga moved on (or was taken over): fail its writes, commit the rest
                # together. A resumed coordinator whose sagas were taken over meets many of
                # these at once; one commit per conflict, not per append.
                rest = []
                for append, future in batch:
                    if append.saga_id != conflicted:
                        rest.append((append, future))
                    elif not future.done():
                        future.set_exception(exc)
                if rest:
                    await self._commit(rest)
                return
            log.debug("batch of %d appends failed (%s); retrying one by one", len(batch), exc)
            for item in batch:
                await self._commit([item])
            return
        self._report.succeeded()
        self.commits += 1
        self.appends += len(batch)
        for _, future in batch:
            if not future.done():
                future.set_result(None)
