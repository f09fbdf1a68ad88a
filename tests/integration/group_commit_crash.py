"""A coordinator that starts sagas under load and SIGKILLs itself while a group commit is written.

``python -m tests.integration.group_commit_crash --nats URL --db URL --sagas N --prefix P
--kill-after-commits K`` runs a coordinator for ``ORDER`` (three steps, from ``crash_sagas``),
starts sagas ``P-0`` .. ``P-{N-1}`` (up to 64 at once) and prints ``started <id>`` once each
``start`` has returned, which promises that the saga is in the log. From its K-th group commit
on, every log write arms a timer that SIGKILLs the process a random few hundred microseconds
later: while the batch is queued, mid-transaction, during COMMIT or just after it, before
anything that follows is sent. With ``--kill-after-commits 0`` it never kills itself and runs
until every saga has ended, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import threading
from collections.abc import Sequence

from saga import Coordinator, NatsTransport, SqlSagaLog
from saga.log.base import Append, NewSaga, SagaRecord
from tests.integration.crash_sagas import ORDER


class KillingLog(SqlSagaLog):
    """A SqlSagaLog whose writes, from the ``kill_after``-th on, may be cut short by SIGKILL."""

    def __init__(self, url: str, kill_after: int) -> None:
        super().__init__(url)
        self._kill_after = kill_after
        self._writes = 0

    def _arm(self) -> None:
        self._writes += 1
        if self._kill_after and self._writes >= self._kill_after:
            delay = random.uniform(0.0, 0.002)
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL))
            timer.daemon = True
            timer.start()

    async def append(self, batch: Sequence[Append]) -> None:
        self._arm()
        await super().append(batch)

    async def create_many(self, sagas: Sequence[NewSaga]) -> list[tuple[SagaRecord, bool]]:
        self._arm()
        return await super().create_many(sagas)


async def run(nats_url: str, db_url: str, sagas: int, prefix: str, kill_after: int) -> None:
    log = KillingLog(db_url, kill_after)
    async with Coordinator(log, NatsTransport(nats_url), sagas=[ORDER]) as coordinator:
        room = asyncio.Semaphore(64)

        async def one(n: int) -> None:
            async with room:
                handle = await coordinator.start(ORDER, {"n": n}, saga_id=f"{prefix}-{n}")
                sys.stdout.write(f"started {handle.saga_id}\n")
                sys.stdout.flush()
                await handle.result()

        # Sagas an earlier, killed run started are started again: the same id and input
        # give their handle, so this waits for every one of them too.
        await asyncio.gather(*(one(n) for n in range(sagas)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--sagas", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--kill-after-commits", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(run(args.nats, args.db, args.sagas, args.prefix, args.kill_after_commits))


if __name__ == "__main__":
    main()
