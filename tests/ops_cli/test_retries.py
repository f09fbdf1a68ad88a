"""The operator commands retry an unreachable API (tenacity, jittered) but never a 4xx, and
never resend a write whose fate is unknown."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from click.testing import CliRunner, Result

from saga.cli import main


class Flaky(BaseHTTPRequestHandler):
    """Drops the first ``drops`` connections without an answer, then answers ``status``."""

    drops: ClassVar[int] = 0
    status: ClassVar[int] = 200
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        Flaky.seen.append(self.command)
        if len(Flaky.seen) <= Flaky.drops:
            self.close_connection = True
            return  # no status line: the client sees the connection closed
        body = (
            {"sagas": [], "next_cursor": None}
            if Flaky.status == 200
            else {"error": {"code": "not_found", "message": "no such saga"}}
        )
        data = json.dumps(body).encode()
        self.send_response(Flaky.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Flaky.drops, Flaky.status, Flaky.seen = 0, 200, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def saga(*args: str, url: str) -> Result:
    return CliRunner().invoke(main, [*args, "--url", url], catch_exceptions=False)


def test_a_read_is_retried_after_dropped_connections(server: str) -> None:
    Flaky.drops = 2
    done = saga("list", url=server)
    assert done.exit_code == 0, done.output
    assert Flaky.seen == ["GET", "GET", "GET"]


def test_a_read_gives_up_after_a_few_tries(server: str) -> None:
    Flaky.drops = 100
    done = saga("list", url=server)
    assert done.exit_code == 5
    assert done.output.startswith(f"Error: cannot reach the saga API at {server}: ")
    assert Flaky.seen == ["GET"] * 4


def test_a_4xx_is_never_retried(server: str) -> None:
    Flaky.status = 404
    done = saga("show", "order-1", url=server)
    assert done.exit_code == 3
    assert done.output == "Error: 404: no such saga\n"
    assert Flaky.seen == ["GET"]


def test_a_write_whose_answer_was_lost_is_not_sent_again(server: str) -> None:
    Flaky.drops = 1
    done = saga("retry", "order-1", "--reason", "test", url=server)
    assert done.exit_code == 5
    assert "cannot reach the saga API" in done.output
    assert Flaky.seen == ["POST"]
