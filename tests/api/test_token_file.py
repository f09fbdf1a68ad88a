"""Tokens from a file (--token-file / SAGA_TOKEN_FILE), so no secret shows in ``ps``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from saga import Coordinator
from saga.api import Role, create_app
from saga.api.config import tokens_from_file
from saga.api.options import HTTP_PARAMS, http_options, http_settings
from saga.cli import main

FILE = """\
# who may use the saga API
viewer:grafana:view-secret-1

operator:ana:op:secret:with:colons
  operator : bob : bob-secret-22
"""


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(FILE)
    path.chmod(0o600)
    return path


def test_a_token_file_holds_role_name_secret_lines(token_file: Path) -> None:
    tokens = tokens_from_file(token_file)
    assert [(t.role, t.name, t.secret) for t in tokens] == [
        (Role.VIEWER, "grafana", "view-secret-1"),
        (Role.OPERATOR, "ana", "op:secret:with:colons"),
        (Role.OPERATOR, "bob", "bob-secret-22"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("viewer:ok:fine-secret-1\nbare-secret-9999\n", "line 2: expected ROLE:NAME:SECRET"),
        ("admin:root:root-secret-9999\n", "line 1: expected ROLE:NAME:SECRET"),
        ("viewer:short:bare-s\n", "line 1: token 'short': a secret needs 8"),
        ("viewer::nameless-secret\n", "line 1: a token needs a name"),
        ("# nothing yet\n\n", "holds no tokens"),
    ],
)
def test_a_bad_token_file_names_the_line_and_never_the_secret(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        tokens_from_file(path)
    shown = str(caught.value)
    assert str(path) in shown
    for secret in ("bare-secret-9999", "root-secret-9999", "bare-s", "nameless-secret"):
        assert secret not in shown
    assert caught.value.__cause__ is None  # a chained cause would print the line


def test_a_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read the token file .*missing"):
        tokens_from_file(tmp_path / "missing")


def test_http_settings_add_file_tokens_to_command_line_ones(token_file: Path) -> None:
    settings = http_settings(
        "127.0.0.1:0", token_viewer=("vera:viewer-secret-1",), token_file=str(token_file)
    )
    assert {t.name for t in settings.config.tokens} == {"vera", "grafana", "ana", "bob"}
    # File tokens count as tokens for the exposure check: a non-loopback address is allowed.
    assert http_settings("0.0.0.0:0", token_file=str(token_file)).config.auth


async def test_the_api_accepts_a_token_from_the_file(
    token_file: Path, coordinator: Coordinator
) -> None:
    config = http_settings("127.0.0.1:0", token_file=str(token_file)).config
    async with TestClient(TestServer(create_app(coordinator, config))) as client:
        me = await client.get("/api/me", headers={"Authorization": "Bearer bob-secret-22"})
        assert await me.json() == {"name": "bob", "role": "operator", "auth": True}
        no = await client.get("/api/me", headers={"Authorization": "Bearer nope-nope-1"})
        assert no.status == 401


def test_the_option_and_its_environment_variable(token_file: Path) -> None:
    seen: list[Any] = []

    @click.command()
    @http_options
    def serve(**api: Any) -> None:
        assert set(api) == set(HTTP_PARAMS)  # what saga dev pops for http_settings
        seen.append(http_settings(api.pop("http") or "127.0.0.1:0", **api).config)

    runner = CliRunner()
    done = runner.invoke(serve, [], env={"SAGA_TOKEN_FILE": str(token_file)})
    assert done.exit_code == 0, done.output
    done = runner.invoke(serve, ["--token-file", str(token_file)], env={"SAGA_TOKEN_FILE": ""})
    assert done.exit_code == 0, done.output
    assert [len(config.tokens) for config in seen] == [3, 3]
    assert "SAGA_TOKEN_FILE" in runner.invoke(serve, ["--help"]).output


def test_saga_coordinator_refuses_a_bad_token_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("operator:ana:s3cret-value-77\noperator-only-a-secret-88\n")
    args = ["coordinator", "--sagas", "tests.integration.crash_sagas", "--http", "0.0.0.0:8080"]
    done = CliRunner().invoke(
        main, [*args, "--token-file", str(path)], env={"SAGA_TOKEN_OPERATOR": ""}
    )
    assert done.exit_code == 2
    assert f"{path}, line 2: expected ROLE:NAME:SECRET" in done.output
    assert "s3cret-value-77" not in done.output
    assert "operator-only-a-secret-88" not in done.output
