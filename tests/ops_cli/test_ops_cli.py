"""`saga list/show/compensations/retry/cancel/resolve/skip/force-forward` against a live API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from saga.cli import main
from saga.ops_cli import table
from tests.api.live import LiveServer


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with LiveServer() as server:
        yield server.url


def saga(*args: str, url: str, token: str | None = "operator-secret-1") -> Result:
    env = {"SAGA_API_URL": url, "SAGA_API_TOKEN": token or "", "USER": "tester"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_list_is_a_table_and_json(api: str) -> None:
    done = saga("list", url=api)
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0].split() == [
        "SAGA",
        "DEFINITION",
        "STATUS",
        "HEALTH",
        "STEP",
        "UPDATED",
        "(UTC)",
    ]
    assert any(line.startswith("stuck-one") and " stuck " in line for line in lines)
    as_json = json.loads(saga("list", "--json", "--status", "stuck", url=api).output)
    assert [s["saga_id"] for s in as_json["sagas"]] == ["stuck-one"]
    healthy = saga("list", "--health", "progressing", url=api)
    assert "stuck-one" not in healthy.output


def test_show_prints_the_timeline_and_what_can_be_done(api: str) -> None:
    done = saga("show", "stuck-one", url=api)
    assert done.exit_code == 0, done.output
    assert "saga stuck-one  order v1  stuck" in done.output
    assert "health: stuck  step credit (compensate) attempt 3" in done.output
    assert "payments.release is down" in done.output
    assert "actions now: retry, resolve" in done.output
    data = json.loads(saga("show", "stuck-one", "--json", url=api).output)
    assert data["input"] == {"card": "***"}


def test_compensations_lists_the_stuck_saga(api: str) -> None:
    done = saga("compensations", url=api)
    assert "stuck-one" in done.output
    assert "credit" in done.output


def test_stats_counts_match_the_list(api: str) -> None:
    figures = json.loads(saga("stats", "--json", url=api).output)
    for status, count in figures["statuses"].items():
        listed = json.loads(
            saga("list", "--json", "--status", status, "--limit", "1000", url=api).output
        )
        assert len(listed["sagas"]) == count, status
    assert figures["stuck"] == figures["healths"]["stuck"] >= 1
    text = saga("stats", "--minutes", "15", url=api)
    assert text.exit_code == 0, text.output
    assert f"stuck {figures['stuck']}, needs attention {figures['needs_attention']}" in text.output
    assert any(line.split()[:2] == ["stuck", str(figures["statuses"]["stuck"])]
               for line in text.output.splitlines())  # fmt: skip
    assert saga("stats", "--minutes", "0", url=api).exit_code == 2


def test_errors_are_clear_and_exit_non_zero(api: str) -> None:
    missing = saga("show", "ghost", url=api)
    assert missing.exit_code == 3
    assert "404: no saga 'ghost'" in missing.output
    refused = saga("cancel", "shipped", "--reason", "too late", url=api)
    assert refused.exit_code == 4
    assert "409" in refused.output
    assert "already completed" in refused.output
    no_token = saga("list", url=api, token=None)
    assert no_token.exit_code == 6
    assert "401" in no_token.output
    assert "SAGA_API_TOKEN" in no_token.output
    viewer = saga("retry", "stuck-one", "--reason", "x", url=api, token="viewer-secret-1")
    assert viewer.exit_code == 6
    assert "403" in viewer.output
    unreachable = saga("list", url="http://127.0.0.1:9")
    assert unreachable.exit_code == 5
    assert "cannot reach the saga API" in unreachable.output
    no_reason = saga("resolve", "stuck-one", url=api)
    assert no_reason.exit_code == 2
    assert "--reason" in no_reason.output


def test_resolve_with_a_dry_run_first(api: str) -> None:
    dry = saga("resolve", "stuck-one", "--reason", "refunded", "--dry-run", url=api)
    assert dry.exit_code == 0, dry.output
    assert "dry run, nothing changed: resolve stuck-one -> compensating" in dry.output
    assert "compensations to run, in order: create" in dry.output
    assert "stuck" in saga("list", "--status", "stuck", url=api).output
    done = saga("resolve", "stuck-one", "--reason", "refunded by hand", "--json", url=api)
    assert json.loads(done.output)["dry_run"] is False
    shown = saga("show", "stuck-one", url=api).output
    assert "operator actions:" in shown
    assert "tester (token ana)" in shown
    assert "refunded by hand" in shown


def test_the_old_database_reader_is_now_saga_log(api: str) -> None:
    done = CliRunner().invoke(main, ["log", "--help"])
    assert done.exit_code == 0
    assert "raw event log" in done.output
    assert "skip" in CliRunner().invoke(main, ["--help"]).output


def test_table_pads_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert table(["a", "bb"], [["xxx", None]]) == "A    BB\nxxx  -"


def test_coordinator_refuses_an_exposed_http_address_without_tokens() -> None:
    args = ["coordinator", "--sagas", "tests.integration.crash_sagas", "--http", "0.0.0.0:8080"]
    done = CliRunner().invoke(main, args, env={"SAGA_TOKEN_OPERATOR": "", "SAGA_HTTP": ""})
    assert done.exit_code == 2
    assert "refusing to serve HTTP on 0.0.0.0 without tokens" in done.output
    bad = CliRunner().invoke(main, [*args[:-1], "no-port"])
    assert bad.exit_code == 2
    assert "HOST:PORT" in bad.output


def test_http_settings_from_options() -> None:
    from datetime import timedelta

    from saga.api.options import http_settings

    settings = http_settings(
        "[::]:9000", token_operator=("ana:abcdefgh9",), redact=("Card",), stall_after=0
    )
    assert (settings.host, settings.port) == ("::", 9000)
    assert settings.config.auth
    assert settings.config.stall_after is None
    assert http_settings(":8080").host == "127.0.0.1"
    assert http_settings("0.0.0.0:1", insecure=True, stall_after=60).config.stall_after == (
        timedelta(seconds=60)
    )
