"""The browser-safety guard through aiohttp's test client: 415, 403, 421, and what still works."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import click
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from saga import Coordinator
from saga.api import ApiConfig, create_app, start_http
from saga.api.guard import same_origin
from saga.api.options import http_options, http_settings
from saga.api.server import served_config
from saga.log.base import SagaLog
from tests.api.conftest import OPERATOR, settled, start
from tests.api.test_api import error_of

Client = TestClient[Any, Any]


@pytest.fixture
async def open_client(coordinator: Coordinator) -> AsyncIterator[Client]:
    """No tokens, as ``saga dev`` serves: the guard is all there is."""
    async with TestClient(TestServer(create_app(coordinator))) as client:
        yield client


def origin_of(client: Client) -> str:
    return f"http://{client.host}:{client.port}"


# -- 415: bodies must be JSON -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/jsonx",
    ],
)
async def test_a_body_that_is_not_json_is_415_and_changes_nothing(
    open_client: Client, log: SagaLog, content_type: str
) -> None:
    body = b'{"saga_id": "sneaky"}'
    response = await open_client.post(
        "/api/sagas/order", data=body, headers={"Content-Type": content_type}
    )
    assert "application/json" in await error_of(response, 415)
    assert (await response.json())["error"]["code"] == "unsupported_media_type"
    action = await open_client.post(
        "/api/sagas/any/actions/cancel",
        data=b'{"reason": "x"}',
        headers={"Content-Type": content_type},
    )
    await error_of(action, 415)
    assert (await log.find()).sagas == []


async def test_json_bodies_and_empty_bodies_still_work(
    open_client: Client, coordinator: Coordinator
) -> None:
    created = await open_client.post(
        "/api/sagas/order",
        data=b'{"saga_id": "json-1"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert created.status == 201, await created.text()
    # No body at all (aiohttp labels it application/octet-stream): nothing to check.
    empty = await open_client.post("/api/sagas/order")
    assert empty.status == 201, await empty.text()
    await settled(coordinator, "json-1")


# -- 403: no writes from another origin -------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:1"},  # another port on loopback: another origin
        {"Origin": "http://evil.example"},
        {"Origin": "null"},  # sandboxed frames, file: pages
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of the same host is the same site
    ],
)
async def test_writes_a_browser_says_come_from_another_origin_are_403(
    open_client: Client, log: SagaLog, headers: dict[str, str]
) -> None:
    response = await open_client.post("/api/sagas/order", json={"saga_id": "x"}, headers=headers)
    assert "another origin" in await error_of(response, 403)
    action = await open_client.post(
        "/api/sagas/x/actions/retry", json={"reason": "x"}, headers=headers
    )
    await error_of(action, 403)
    assert (await log.find()).sagas == []
    # Reads are not refused: the browser's CORS rules already keep their answers from the page.
    assert (await open_client.get("/api/sagas", headers=headers)).status == 200


async def test_same_origin_browser_writes_and_non_browser_writes_are_served(
    open_client: Client, coordinator: Coordinator
) -> None:
    own = {"Origin": origin_of(open_client), "Sec-Fetch-Site": "same-origin"}
    created = await open_client.post("/api/sagas/order", json={"saga_id": "own"}, headers=own)
    assert created.status == 201, await created.text()
    typed = {"Sec-Fetch-Site": "none"}  # the user typed or bookmarked it: not another page
    assert (await open_client.post("/api/sagas/order", json={}, headers=typed)).status == 201
    assert (await open_client.post("/api/sagas/order", json={})).status == 201  # CLI, curl
    await settled(coordinator, "own")


def test_same_origin_compares_host_and_port_with_the_scheme_s_default() -> None:
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert same_origin("http://LOCALHOST:8080", "localhost:8080")
    assert same_origin("https://saga.example", "saga.example")  # behind a TLS proxy
    assert same_origin("https://saga.example", "saga.example:443")
    assert same_origin("http://[::1]:9", "[::1]:9")
    assert not same_origin("http://127.0.0.1:8081", "127.0.0.1:8080")
    assert not same_origin("http://saga.example", "saga.example:8080")
    assert not same_origin("null", "127.0.0.1:8080")
    assert not same_origin("file://", "127.0.0.1:8080")
    assert not same_origin("http://a.example:99999", "a.example")


# -- 421: only allowed Host names -------------------------------------------------------------


async def test_a_host_name_that_is_not_allowed_is_421(open_client: Client, log: SagaLog) -> None:
    for host in ("attacker.example", "attacker.example:8080", "10.9.8.7", "not a host"):
        response = await open_client.get("/api/sagas", headers={"Host": host})
        assert "--allowed-host" in await error_of(response, 421), host
        assert (await response.json())["error"]["code"] == "misdirected_request"
    dashboard = await open_client.get("/", headers={"Host": "attacker.example"})
    assert dashboard.status == 421
    rebound = await open_client.post(
        "/api/sagas/order", json={"saga_id": "rebound"}, headers={"Host": "attacker.example"}
    )
    await error_of(rebound, 421)
    assert (await log.find()).sagas == []
    for host in ("127.0.0.1", "localhost:8080", "LOCALHOST", "[::1]:80", "127.0.0.2:1"):
        assert (await open_client.get("/api/sagas", headers={"Host": host})).status == 200, host


async def test_more_host_names_with_allowed_hosts(coordinator: Coordinator) -> None:
    config = ApiConfig(allowed_hosts=frozenset({"Saga.Example", "[fd00::1]"}))
    async with TestClient(TestServer(create_app(coordinator, config))) as client:
        for host in ("saga.example", "saga.example:443", "[fd00::1]:8080", "localhost"):
            assert (await client.get("/healthz", headers={"Host": host})).status == 200, host
        assert (await client.get("/healthz", headers={"Host": "other.example"})).status == 421
    anything = ApiConfig(allowed_hosts=frozenset({"*"}))
    async with TestClient(TestServer(create_app(coordinator, anything))) as client:
        assert (await client.get("/healthz", headers={"Host": "other.example"})).status == 200


def test_allowed_hosts_are_host_names() -> None:
    assert ApiConfig(allowed_hosts=frozenset({" A.example ", "[::2]"})).allowed_hosts == {
        "a.example",
        "::2",
    }
    for bad in ("a.example:8080", "", "http://a.example", "a b"):
        with pytest.raises(ValueError, match="allowed host"):
            ApiConfig(allowed_hosts=frozenset({bad}))


def test_the_listening_address_is_allowed() -> None:
    config = ApiConfig()
    assert served_config("127.0.0.1", config) == config
    specific = served_config("10.1.2.3", config)
    assert specific.allowed_hosts == {"10.1.2.3"}
    assert not specific.allow_ip_hosts
    assert served_config("saga-box", config).allowed_hosts == {"saga-box"}
    for wildcard in ("0.0.0.0", "::", ""):
        every = served_config(wildcard, config)
        assert every.allow_ip_hosts
        assert socket.gethostname().lower() in every.allowed_hosts


async def test_listening_on_every_address_serves_ip_hosts_but_not_other_names(
    coordinator: Coordinator,
) -> None:
    # What `saga coordinator --http 0.0.0.0:8080 --token-operator ...` users expect: the
    # machine's addresses and host name work; a foreign (rebound) name does not.
    config = ApiConfig(tokens=(), allowed_hosts=frozenset({"saga.internal"}))
    server = await start_http(coordinator, host="0.0.0.0", port=0, config=config, insecure=True)
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        async with aiohttp.ClientSession() as session:
            for host, status in [
                ("192.0.2.7:8080", 200),
                (socket.gethostname(), 200),
                ("saga.internal", 200),
                ("attacker.example", 421),
            ]:
                async with session.get(url, headers={"Host": host}) as response:
                    assert response.status == status, host
    finally:
        await server.close()


async def test_start_up_lines_name_the_served_hosts(coordinator: Coordinator) -> None:
    lines: list[str] = []
    settings = http_settings(
        "0.0.0.0:0", token_operator=("ana:abcdefgh9",), allowed_host=("x.example",)
    )
    server = await settings.start(coordinator, echo=lines.append)
    await server.close()
    hosts = next(line for line in lines if line.startswith("answering to Host names"))
    assert "x.example" in hosts
    assert "localhost" in hosts
    assert "any IP address" in hosts
    quiet: list[str] = []
    local = await http_settings("127.0.0.1:0").start(coordinator, echo=quiet.append)
    await local.close()
    assert not any("Host names" in line for line in quiet)


async def test_operator_tokens_still_work_through_the_guard(client: Client) -> None:
    saga_id = await start(client, saga_id="with-token")
    assert saga_id == "with-token"
    refused = await client.post(
        "/api/sagas/order", json={}, headers={**OPERATOR, "Origin": "http://evil.example"}
    )
    await error_of(refused, 403)


def test_allowed_hosts_and_the_access_log_from_options_and_environment() -> None:
    seen: list[ApiConfig] = []

    @click.command()
    @http_options
    def serve(**api: Any) -> None:
        seen.append(http_settings(api.pop("http") or "127.0.0.1:0", **api).config)

    runner = CliRunner()
    env = {"SAGA_ALLOWED_HOST": "a.example B.example", "SAGA_ACCESS_LOG": "1"}
    assert runner.invoke(serve, [], env=env).exit_code == 0
    args = ["--allowed-host", "c.example", "--allowed-host", "[fd00::2]", "--access-log"]
    assert runner.invoke(serve, args, env={"SAGA_ALLOWED_HOST": ""}).exit_code == 0
    assert runner.invoke(serve, [], env={"SAGA_ALLOWED_HOST": ""}).exit_code == 0
    assert [(c.allowed_hosts, c.access_log) for c in seen] == [
        ({"a.example", "b.example"}, True),
        ({"c.example", "fd00::2"}, True),
        (frozenset(), False),
    ]
    bad = runner.invoke(serve, ["--allowed-host", "a.example:8080"], env={"SAGA_ALLOWED_HOST": ""})
    assert bad.exit_code == 2
    assert "without a port" in bad.output
