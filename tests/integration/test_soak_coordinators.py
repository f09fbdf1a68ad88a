"""``saga soak --coordinators 3``, short: 300 order sagas on PostgreSQL while one of three
coordinators is SIGKILLed about every 3 s and one SIGSTOPped past its 2 s lease about every 4 s.

The command runs as a subprocess from the checkout, as a user would run it; the test reads its
exit code and the figures it prints: nothing lost or applied twice, sagas taken over, none
driven by two coordinators.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from saga.cli import main

REPO = Path(__file__).resolve().parents[2]
FIGURE = re.compile(r"^  ([a-z][a-z ]*[a-z]) (\S+)", re.MULTILINE)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_three_coordinators_killed_and_paused_drive_no_saga_twice(
    postgres_url: str, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "saga", "soak", "--sagas", "300", "--coordinators", "3",
        "--kill-every", "3", "--pause-every", "4", "--lease", "2", "--db", postgres_url,
        "--dir", str(tmp_path / "runs"), "--timeout", "240",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output_bytes, _ = await asyncio.wait_for(process.communicate(), 280)
    output = output_bytes.decode(errors="replace")
    print(output)
    assert process.returncode == 0, output
    figures = dict(FIGURE.findall(output.partition("soak figures")[2]))
    assert figures["sagas"] == "300"
    assert figures["coordinators"] == "3"
    assert int(figures["completed"]) + int(figures["compensated"]) == 300
    assert figures["stuck"] == "0"
    assert figures["sagas lost"] == "0"
    assert figures["effects applied twice"] == "0"
    assert int(figures["coordinator kills"]) >= 1
    assert int(figures["coordinator pauses"]) >= 1
    assert int(figures["sagas taken over"]) > 0
    assert int(figures["stale writes fenced"]) >= 0
    assert figures["sagas driven by two coordinators"] == "0"
    assert figures["invariants"] == "hold"
    assert "sagas driven by two coordinators 0" in output


def test_several_coordinators_on_sqlite_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    db = tmp_path / "saga.db"
    result = CliRunner().invoke(main, ["soak", "--coordinators", "2", "--db", f"sqlite:///{db}"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: --coordinators 2 needs a PostgreSQL --db: SQLite allows one coordinator at a time\n"
    )
    assert not db.exists()
