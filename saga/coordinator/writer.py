"""Group commit: appends from many sagas queue up and are written in one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from saga.errors import LogError
from saga.log.base import Append, SagaLog

log = logging.getLogger(__name__)


class GroupWriter:
    """Collects ``Append``s and writes whatever is queued in one ``SagaLog.append`` call.

    While one transaction commits, the next batch fills up, so under load each commit carries
    many sagas' events. A failed batch is retried one append at a time, so one saga's conflict
    never fails another saga's write.
    """

    def __init__(self, saga_log: SagaLog, *, max_batch: int = 512) -> None:
        self._log = saga_log
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Append, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.appends = 0

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

    async def write(self, append: Append) -> None:
        """Return once ``append`` is durably stored; raise the log's error otherwise."""
        if self._task is None:
            raise LogError("group writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((append, future))
        await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Append, asyncio.Future[None]]]) -> None:
        try:
            await self._log.append([append for append, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _, future = batch[0]
                if not future.done():
                    future.set_exception(exc)
                return
            log.info("batch of %d appends failed (%s); retrying one by one", len(batch), exc)
            for item in batch:
                await self._commit([item])
            return
        self.commits += 1
        self.appends += len(batch)
        for _, future in batch:
            if not future.done():
                future.set_result(None)
