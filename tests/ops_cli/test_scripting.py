"""What scripts rely on: exit codes, ``--json`` errors, ``--version``, tables that fit the
terminal, and the error column, against a live API (and a stub for statuses it never gives)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from typing import ClassVar

import pytest
from click.testing import CliRunner, Result

from saga.cli import main
from saga.cli_exit import EXIT_CODES, ExitCode, exit_code_for_status
from saga.cli_table import cut, fit, table
from tests.api.live import LiveServer

OPERATOR = "operator-secret-1"


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with LiveServer() as server:
        yield server.url


def saga(*args: str, url: str = "", token: str = OPERATOR, columns: str = "") -> Result:
    env = {"SAGA_API_URL": url, "SAGA_API_TOKEN": token, "USER": "tester", "COLUMNS": columns}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def json_error(done: Result) -> dict[str, object]:
    """The one JSON line a failed ``--json`` command prints on stderr (stdout stays empty)."""
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    found: dict[str, object] = json.loads(line)
    assert set(found) == {"error", "status", "exit_code"}
    assert found["exit_code"] == done.exit_code
    return found


def test_version_comes_from_the_installed_package() -> None:
    expected = f"saga-coordinator {version('saga-coordinator')}\n"
    assert saga("--version").output == expected
    assert saga("version").output == expected
    assert json.loads(saga("version", "--json").output) == {
        "name": "saga-coordinator",
        "version": version("saga-coordinator"),
    }


def test_help_lists_every_exit_code() -> None:
    text = saga("--help").output
    assert "Exit codes" in text
    for code, meaning in EXIT_CODES.items():
        assert f"{int(code)}  {meaning}" in text


def test_each_failure_has_its_exit_code(api: str) -> None:
    assert saga("list", url=api).exit_code == ExitCode.OK
    assert saga("show", "ghost", url=api).exit_code == ExitCode.NOT_FOUND
    assert saga("cancel", "shipped", "--reason", "late", url=api).exit_code == ExitCode.CONFLICT
    assert saga("list", url=api, token="").exit_code == ExitCode.UNAUTHORISED
    viewer = saga("retry", "stuck-one", "--reason", "x", url=api, token="viewer-secret-1")
    assert viewer.exit_code == ExitCode.UNAUTHORISED
    assert saga("list", url="http://127.0.0.1:9").exit_code == ExitCode.UNREACHABLE
    assert saga("list", "--status", "nonsense", url=api).exit_code == ExitCode.USAGE
    assert saga("list", "--limit", "0", url=api).exit_code == ExitCode.USAGE
    assert saga("list", "--url", "ftp://host").exit_code == ExitCode.USAGE
    event = saga("event", "stuck-one", "approved", "--id", "e-1", url=api)
    assert event.exit_code == ExitCode.CONFLICT, event.output  # no step waits for it: 422


def test_without_json_an_error_is_one_line_on_stderr(api: str) -> None:
    done = saga("show", "ghost", url=api)
    assert done.stdout == ""
    assert done.stderr == "Error: 404: no saga 'ghost'\n"


def test_with_json_errors_are_json_on_stderr(api: str) -> None:
    missing = saga("show", "ghost", "--json", url=api)
    assert json_error(missing) == {"error": "404: no saga 'ghost'", "status": 404, "exit_code": 3}
    refused = json_error(saga("cancel", "shipped", "--reason", "late", "--json", url=api))
    assert (refused["status"], refused["exit_code"]) == (409, 4)
    assert "already completed" in str(refused["error"])
    unreachable = json_error(saga("list", "--json", url="http://127.0.0.1:9"))
    assert (unreachable["status"], unreachable["exit_code"]) == (None, 5)
    assert "cannot reach the saga API" in str(unreachable["error"])
    no_token = json_error(saga("list", "--json", url=api, token=""))
    assert (no_token["status"], no_token["exit_code"]) == (401, 6)


def test_with_json_usage_errors_are_json_too(api: str) -> None:
    # --reason missing: --json is read first, whatever its place.
    missing = json_error(saga("resolve", "stuck-one", "--json", url=api))
    assert missing == {"error": "Missing option '--reason'.", "status": None, "exit_code": 2}
    unknown = json_error(saga("list", "--json", "--bogus", url=api))
    assert unknown["exit_code"] == 2
    assert "--bogus" in str(unknown["error"])
    bad_filter = json_error(saga("list", "--json", "--status", "nonsense", url=api))
    assert (bad_filter["status"], bad_filter["exit_code"]) == (400, 2)


class Stub(BaseHTTPRequestHandler):
    """Answers every request with ``status`` and ``body``."""

    status: ClassVar[int] = 200
    body: ClassVar[bytes] = b"{}"

    def do_GET(self) -> None:
        self.send_response(Stub.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(Stub.body)))
        self.end_headers()
        self.wfile.write(Stub.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 2), (401, 6), (403, 6), (404, 3), (409, 4), (422, 4), (500, 1), (413, 1)],
)
def test_every_status_maps_to_its_exit_code(stub: str, status: int, code: int) -> None:
    Stub.status = status
    Stub.body = json.dumps({"error": {"code": "x", "message": "because"}}).encode()
    assert exit_code_for_status(status) == code
    done = saga("show", "order-1", "--json", url=stub)
    assert json_error(done) == {
        "error": f"{status}: because"
        + (" (set --token or SAGA_API_TOKEN)" if status == 401 else ""),
        "status": status,
        "exit_code": code,
    }


def test_an_answer_that_is_not_json_is_an_error_not_a_traceback(stub: str) -> None:
    Stub.status, Stub.body = 200, b"<html>a proxy page</html>"
    done = saga("list", "--json", url=stub)
    assert done.exit_code == 1
    assert "did not answer JSON" in str(json_error(done)["error"])
    plain = saga("list", url=stub)
    assert plain.exit_code == 1
    assert plain.stderr.startswith("Error: the saga API at ")
    assert "Traceback" not in plain.output


def test_tables_fit_60_columns_and_use_200(api: str) -> None:
    for args in (["list", "--errors"], ["show", "stuck-one"], ["compensations"]):
        narrow = saga(*args, url=api, columns="60")
        assert narrow.exit_code == 0, narrow.output
        assert all(len(line) <= 60 for line in narrow.stdout.splitlines()), narrow.stdout
        assert "…" in narrow.stdout, args
        wide = saga(*args, url=api, columns="200")
        assert all(len(line) <= 200 for line in wide.stdout.splitlines())
        assert "…" not in wide.stdout, args
    wide = saga("list", "--errors", url=api, columns="200").stdout
    assert "payments.release is down (credit compensate #3)" in wide
    narrow_rows = saga("list", url=api, columns="60").stdout.splitlines()
    wide_rows = saga("list", url=api, columns="200").stdout.splitlines()
    assert len(narrow_rows) == len(wide_rows)  # cells are cut, rows never wrapped
    assert any(row.startswith("stuck-one ") for row in narrow_rows)


def test_table_cuts_free_text_first_and_the_first_column_last() -> None:
    rows = [["order-12345", "running", "a very long error message that goes on and on"]]
    text = table(["saga", "status", "error"], rows, width=40)
    assert text.splitlines()[1] == "order-12345  running  a very long error…"
    narrow = table(["saga", "status", "error"], rows, width=32).splitlines()
    assert narrow[1] == "order-12345  runni…  a very lon…"
    assert all(len(line) <= 32 for line in narrow)
    assert table(["saga", "status"], rows and [r[:2] for r in rows], width=None).endswith(
        "order-12345  running"
    )
    assert fit([30, 30], ["a", "b"], 20) == [12, 6]  # the first column is cut last
    assert cut("abcdef", 4) == "abc…"
    assert cut("abc", 4) == "abc"


def test_list_errors_adds_the_last_error(api: str) -> None:
    done = saga("list", "--errors", url=api, columns="200")
    assert done.exit_code == 0, done.output
    header, *rows = done.stdout.splitlines()
    assert header.split()[-1] == "ERROR"
    [stuck] = [row for row in rows if row.startswith("stuck-one ")]
    assert stuck.endswith("RuntimeError: payments.release is down (credit compensate #3)")
    [shipped] = [row for row in rows if row.startswith("shipped ")]
    assert "payments" not in shipped
    page = json.loads(saga("list", "--errors", "--json", url=api).stdout)
    errors = {s["saga_id"]: s["error"] for s in page["sagas"]}
    assert errors == {
        "stuck-one": "RuntimeError: payments.release is down (credit compensate #3)",
        "shipped": "",
    }
    plain = saga("list", url=api, columns="200").stdout
    assert "ERROR" not in plain


def test_an_answer_of_the_wrong_shape_is_one_line_not_a_traceback(stub: str) -> None:
    Stub.status, Stub.body = 200, b"{}"
    done = saga("list", url=stub)
    assert done.exit_code == 1
    assert done.stderr == "Error: unexpected KeyError: 'sagas'\n"
    as_json = json_error(saga("list", "--json", url=stub))
    assert as_json == {"error": "unexpected KeyError: 'sagas'", "status": None, "exit_code": 1}
