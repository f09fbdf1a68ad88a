"""``saga log`` prints every event with its time (ISO 8601, UTC, milliseconds), and an unknown
saga exits 3, as one line or as JSON."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result

from saga import Coordinator
from saga.cli import main
from saga.log.sql import SqlSagaLog
from saga.testing import InMemoryTransport
from tests.coordinator.shop import Shop, order_saga

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def saga(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


async def a_compensated_saga(url: str) -> None:
    shop = Shop()
    shop.reject.add("inventory.reserve")
    log = SqlSagaLog(url)
    coordinator = Coordinator(log, InMemoryTransport(shop.participants), sagas=[order_saga()])
    async with coordinator:
        await coordinator.execute("order", {"card": "4111"}, saga_id="order-7")


async def test_every_log_entry_has_its_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'saga.db'}"
    await a_compensated_saga(url)
    before = datetime.now(UTC)
    done = await asyncio.to_thread(saga, "log", "order-7", "--db", url)
    assert done.exit_code == 0, done.output
    head, *entries = done.output.splitlines()
    assert head == "saga order-7  order v1  compensated"
    assert len(entries) > 5
    for entry in entries:
        found = re.match(rf"  ({ISO})\s+\d+  \w+", entry)
        assert found, entry
        at = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs((before - at).total_seconds()) < 3600
    assert any("step_rejected" in e or "rejected" in e for e in entries)

    as_json = json.loads(
        (await asyncio.to_thread(saga, "log", "order-7", "--db", url, "--json")).output
    )
    for event in as_json["events"]:
        assert re.fullmatch(ISO, event["at"])
        stamp = datetime.fromtimestamp(event["at_ms"] / 1000, UTC)
        assert event["at"] == stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def test_an_unknown_saga_exits_3(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'saga.db'}"
    await a_compensated_saga(url)
    done = await asyncio.to_thread(saga, "log", "ghost", "--db", url)
    assert done.exit_code == 3
    assert done.stderr == f"Error: no saga 'ghost' in {url}\n"
    as_json = await asyncio.to_thread(saga, "log", "ghost", "--db", url, "--json")
    assert as_json.exit_code == 3
    assert json.loads(as_json.stderr) == {
        "error": f"no saga 'ghost' in {url}",
        "status": None,
        "exit_code": 3,
    }
    assert as_json.stdout == ""
