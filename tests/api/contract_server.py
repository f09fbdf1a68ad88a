"""A coordinator and its HTTP API for schemathesis: ``python -m tests.api.contract_server``.

An in-memory log and transport, the shop's sagas (order, ship) and a saga that waits for an
outside event, sagas in several states, and the tokens of ``tests.api.conftest``. It prints
``listening on URL`` once it serves, and runs until SIGINT or SIGTERM. ``.ci/run`` points
``schemathesis run URL/openapi.json --checks all`` at it with the operator token.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import timedelta

from saga import Coordinator, Saga, Step, Wait
from saga.api import ApiConfig, AuthLimit, HttpServer, start_http
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.api.conftest import TOKENS
from tests.coordinator.shop import Shop, order_saga, pivot_saga


def approval_saga() -> Saga:
    """A step, then a wait for the ``approved`` event: the event route has a saga to meet."""
    return Saga(
        name="approval",
        version=1,
        steps=(
            Step(name="create", service="orders", command="create", compensation="cancel"),
            Wait(name="approve", event="approved", timeout=timedelta(days=1)),
        ),
    )


async def serve(port: int, stop: asyncio.Event) -> None:
    shop = Shop()
    shop.fail["payments.release"] = 10**6
    shop.reject.add("inventory.reserve")
    coordinator = Coordinator(
        InMemorySagaLog(),
        InMemoryTransport(shop.participants),
        sagas=[order_saga(), pivot_saga(), approval_saga()],
    )
    async with coordinator:
        # Sagas in each state, so actions and events meet real ones.
        await coordinator.execute("order", {"card": "4111"}, saga_id="stuck-one")
        await coordinator.execute("ship", {}, saga_id="shipped")
        await coordinator.start("approval", {}, saga_id="waiting-one")
        # schemathesis sends wrong tokens on purpose (ignored_auth): a limit that high keeps
        # the rest of the run from meeting 429s (the limit itself is tested in tests/api).
        config = ApiConfig(
            tokens=TOKENS,
            redact=frozenset({"card"}),
            auth_limit=AuthLimit(failures=10**9, window=timedelta(seconds=1)),
        )
        server: HttpServer = await start_http(coordinator, port=port, config=config)
        print(f"listening on {server.url}", flush=True)
        await stop.wait()
        await server.close()


async def main(port: int) -> None:
    # The shop's failing handlers log tracebacks by design; schemathesis's report is the output.
    logging.basicConfig(level=logging.CRITICAL)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(port, stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    asyncio.run(main(parser.parse_args().port))
    sys.exit(0)
