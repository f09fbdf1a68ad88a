"""``saga soak``, short: 300 order sagas while the coordinator is SIGKILLed every 2 s.

The command runs as a subprocess from the checkout, as a user would run it, on SQLite files
and on PostgreSQL; the test reads its exit code and the figures it prints.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from saga.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
FIGURE = re.compile(r"^  ([a-z][a-z ]*[a-z]) +(\S+)", re.MULTILINE)


async def soak(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "saga", "soak", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 200)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh saga log: a SQLite file, or an empty PostgreSQL database (the soak creates
    the services' databases beside it and drops them)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'saga.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_a_short_soak_loses_nothing_and_applies_nothing_twice(
    log_url: str, tmp_path: Path
) -> None:
    code, output = await soak(
        "--sagas", "300", "--kill-every", "2", "--db", log_url, "--dir", str(tmp_path / "runs")
    )  # fmt: skip
    print(output)
    assert code == 0, output
    figures = dict(FIGURE.findall(output.partition("soak figures")[2]))
    assert figures["sagas"] == "300"
    assert int(figures["completed"]) + int(figures["compensated"]) == 300
    assert int(figures["completed"]) > 0
    assert int(figures["compensated"]) > 0
    assert figures["stuck"] == "0"
    assert int(figures["coordinator kills"]) >= 1
    assert figures["duplicates suppressed"] == figures["duplicates delivered"]
    assert figures["effects applied twice"] == "0"
    assert figures["sagas lost"] == "0"
    assert figures["invariants"] == "hold"
    if log_url.startswith("sqlite"):
        # Nothing left behind but the logs: the service databases are removed.
        assert sorted(p.name for p in (tmp_path / "db").iterdir()) == []


def test_soak_needs_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["soak", "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code != 0
    assert "saga soak runs the example services of a source checkout" in result.output


def test_soak_needs_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("SAGA_TEST_POSTGRES_URL", raising=False)
    result = CliRunner().invoke(main, ["soak", "--sagas", "1"])
    assert result.exit_code == 2
    assert "give --db" in result.output
