"""``saga list --watch`` and ``saga show --follow`` as real processes against a live API: they
show a change made elsewhere as it happens, stop cleanly (exit 0) on Ctrl-C, and exit 5 when
the API cannot be reached."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

from saga.cli import main
from tests.api.live import LiveServer
from tests.cli.procs import REPO, saga

OPERATOR = "operator-secret-1"
WAIT_S = 120.0
"""Generous: starting a Python process on a loaded machine takes seconds."""
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with LiveServer() as server:
        yield server.url


class Running:
    """A ``saga`` command running as a process, its output read line by line."""

    def __init__(self, url: str, *args: str) -> None:
        env = {
            **os.environ, "SAGA_API_URL": url, "SAGA_API_TOKEN": OPERATOR, "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        self.proc = subprocess.Popen(
            saga(*args), cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, wanted: Callable[[str], bool]) -> str:
        """The first line from now on that ``wanted`` accepts (fails after WAIT_S)."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT_S)
            except queue.Empty:
                pytest.fail(f"no such line within {WAIT_S} s; seen: {self.seen}")
            if line is None:
                pytest.fail(f"the command ended first; seen: {self.seen}; {self.stderr()}")
            self.seen.append(line)
            if wanted(line):
                return line

    def interrupt(self, signum: int = signal.SIGINT) -> int:
        """Ctrl-C (or another signal), then its exit status."""
        self.proc.send_signal(signum)
        return self.proc.wait(WAIT_S)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)
        self._reader.join(WAIT_S)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def act(url: str, *args: str) -> Result:
    env = {"SAGA_API_URL": url, "SAGA_API_TOKEN": OPERATOR, "USER": "tester"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def attempt_of(line: str) -> int:
    """The attempt in a list row's step column (``credit #4``), 1 when it shows none."""
    found = re.search(r" credit #(\d+) ", line)
    return int(found.group(1)) if found else 1


def test_list_watch_redraws_when_a_saga_changes(api: str) -> None:
    watch = Running(api, "list", "--watch")
    try:
        first = watch.wait_for(lambda line: line.startswith("stuck-one "))
        assert " stuck " in first
        assert attempt_of(first) == 3
        done = act(api, "retry", "stuck-one", "--reason", "watch it")
        assert done.exit_code == 0, done.output
        # The retry fails three more times: a redraw shows a later attempt.
        again = watch.wait_for(lambda line: line.startswith("stuck-one ") and attempt_of(line) > 3)
        assert re.match(r"stuck-one\s+order v1\s+(compensating|stuck)", again)
        assert any(line.startswith("sagas at ") for line in watch.seen)
        assert watch.interrupt() == 0
        assert "Traceback" not in watch.stderr()
    finally:
        watch.close()


def test_list_watch_with_json_prints_a_page_a_line(api: str) -> None:
    watch = Running(api, "list", "--watch", "--json", "--status", "stuck")
    try:
        line = watch.wait_for(lambda line: line.startswith("{"))
        page = json.loads(line)
        assert [s["saga_id"] for s in page["sagas"]] == ["stuck-one"]
        assert watch.interrupt() == 0
    finally:
        watch.close()


def test_show_follow_prints_new_timeline_entries_with_their_time(api: str) -> None:
    follow = Running(api, "show", "stuck-one", "--follow")
    try:
        follow.wait_for(lambda line: line.startswith("actions now:"))
        done = act(api, "retry", "stuck-one", "--reason", "follow it")
        assert done.exit_code == 0, done.output
        action = follow.wait_for(lambda line: "operator retry by" in line and "follow it" in line)
        assert re.fullmatch(rf"{ISO}  operator retry by tester \(token ana\) \(credit\): follow it",
                            action)  # fmt: skip
        # An attempt may show first in flight, then again with its outcome.
        failed = rf"{ISO}  credit compensate #\d+ failed: .*payments.release is down"
        follow.wait_for(lambda line: re.fullmatch(failed, line) is not None)
        follow.wait_for(
            lambda line: re.fullmatch(rf"{ISO}  saga stuck \(stuck\)", line) is not None
        )
        assert follow.interrupt(signal.SIGTERM) == 0  # as clean as Ctrl-C
        assert "Traceback" not in follow.stderr()
    finally:
        follow.close()


def test_show_follow_with_json_prints_each_version_of_the_saga(api: str) -> None:
    follow = Running(api, "show", "shipped", "--follow", "--json")
    try:
        # A finished saga: one JSON line, and the command ends by itself.
        line = follow.wait_for(lambda line: line.startswith("{"))
        assert json.loads(line)["status"] == "completed"
        assert follow.proc.wait(WAIT_S) == 0
    finally:
        follow.close()


def test_show_follow_ends_by_itself_when_the_saga_finishes(api: str) -> None:
    follow = Running(api, "show", "stuck-one", "--follow")
    try:
        follow.wait_for(lambda line: line.startswith("actions now:"))
        done = act(api, "resolve", "stuck-one", "--reason", "refunded by hand")
        assert done.exit_code == 0, done.output
        follow.wait_for(lambda line: "credit compensate resolve by hand: refunded by hand" in line)
        follow.wait_for(lambda line: re.fullmatch(rf"{ISO}  saga compensated \(finished\)", line)
                        is not None)  # fmt: skip
        assert follow.proc.wait(WAIT_S) == 0
    finally:
        follow.close()


def test_following_an_unreachable_api_exits_5() -> None:
    env = {"SAGA_API_URL": "http://127.0.0.1:9", "SAGA_API_TOKEN": OPERATOR}
    runner = CliRunner()
    watch = runner.invoke(main, ["list", "--watch"], env=env, catch_exceptions=False)
    assert watch.exit_code == 5
    assert watch.stderr.startswith("Error: cannot reach the saga API at http://127.0.0.1:9")
    follow = runner.invoke(main, ["show", "x-1", "--follow", "--json"], env=env)
    assert follow.exit_code == 5
    assert json.loads(follow.stderr)["exit_code"] == 5


def test_following_an_unknown_saga_exits_3(api: str) -> None:
    done = act(api, "show", "ghost", "--follow")
    assert done.exit_code == 3
    assert done.stderr == "Error: 404: no saga 'ghost'\n"
