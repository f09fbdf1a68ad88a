"""No command prints a credential: every URL goes through ``saga.redact`` on its way out.

The commands run as real processes with a password in every URL they are given: a nats-server
that requires that user and password, PostgreSQL (whose trust authentication accepts any
password), and an HTTP API URL with user info. Their whole output is searched for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from saga.redact import RedactingFilter, redact_text, redact_url
from saga.transport.nats_server import NatsServer, free_port
from tests.cli.procs import REPO, SECRET, saga, with_password

pytestmark = pytest.mark.slow


# -- the helper ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("postgresql://app:S3cretPw@db:5432/saga", "postgresql://app:***@db:5432/saga"),
        ("postgresql+asyncpg://app:S3cretPw@db/saga", "postgresql+asyncpg://app:***@db/saga"),
        ("postgresql://app@db/saga", "postgresql://app@db/saga"),
        ("postgresql://app:p@ss:w0rd@db/saga", "postgresql://app:***@db/saga"),
        ("postgresql://db/s?user=app&password=S3cretPw", "postgresql://db/s?user=app&password=***"),
        ("host=db user=app password=S3cretPw dbname=s", "host=db user=app password=*** dbname=s"),
        ("sqlite:///var/lib/saga.db", "sqlite:///var/lib/saga.db"),
        ("nats://S3cretPw@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
        (
            "nats://u:S3cretPw@n1:4222,tls://S3cretPw@n2:4222",
            "nats://u:***@n1:4222,tls://***@n2:4222",
        ),
        ("http://viewer:S3cretPw@127.0.0.1:8080", "http://viewer:***@127.0.0.1:8080"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ],
)  # fmt: skip
def test_redact_url_hides_every_kind_of_credential(given: str, shown: str) -> None:
    assert redact_url(given) == shown


def test_redact_text_hides_urls_inside_a_message() -> None:
    message = "cannot connect to nats://u:S3cretPw@h:1 or postgresql://p:S3cretPw@h/db: refused"
    assert redact_text(message) == (
        "cannot connect to nats://u:***@h:1 or postgresql://p:***@h/db: refused"
    )


def test_the_log_filter_hides_credentials_in_arguments_and_tracebacks() -> None:
    try:
        raise OSError("connect to postgresql://app:S3cretPw@db/saga failed")
    except OSError:
        record = logging.LogRecord(
            "saga", logging.WARNING, __file__, 1, "retrying %s", ("nats://t0k3n@h:4222",),
            sys.exc_info(),
        )  # fmt: skip
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "retrying nats://***@h:4222" in text
    assert "postgresql://app:***@db/saga" in text
    assert "S3cretPw" not in text
    assert "t0k3n" not in text


def test_the_sql_and_nats_adapters_use_the_one_helper() -> None:
    from saga.log.sql import SqlSagaLog
    from saga.log.sql import url as sql_url
    from saga.transport import nats

    assert sql_url.redact is redact_url
    assert not hasattr(nats, "_redact")
    assert "S3cretPw" not in repr(SqlSagaLog("postgresql://app:S3cretPw@db/saga"))


# -- the commands, as processes -------------------------------------------------------------------


@pytest.fixture
async def nats_with_password(tmp_path: Path) -> AsyncIterator[str]:
    """A nats-server that requires user ``saga`` with the secret password; its URL with them."""
    server = NatsServer(
        store_dir=tmp_path / "nats",
        config=f'authorization {{ user: saga, password: "{SECRET}" }}\n',
    )
    await server.start()
    try:
        yield f"nats://saga:{SECRET}@127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def run(*args: str, timeout_s: float = 180, cwd: Path = REPO) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *saga(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


def assert_no_secret(output: str) -> None:
    assert SECRET not in output, output
    assert ":***@" in output, output  # the URL was printed, with its password hidden


async def test_coordinator_prints_no_password(
    nats_with_password: str, postgres_url: str, tmp_path: Path
) -> None:
    db = with_password(postgres_url)
    process = await asyncio.create_subprocess_exec(
        *saga("-v", "coordinator", "--nats", nats_with_password, "--db", db,
              "--sagas", "examples.order_saga:ORDER_SAGA", "--http", "127.0.0.1:0"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not any("HTTP API and dashboard on" in line for line in lines):
                line = (await process.stdout.readline()).decode()
                assert line, "".join(lines)
                lines.append(line)
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = "".join(lines) + rest.decode()
    assert process.returncode == 0, output
    assert "coordinator running: nats nats://saga:***@127.0.0.1:" in output
    assert_no_secret(output)


async def test_dev_prints_no_password(
    nats_with_password: str, postgres_url: str, tmp_path: Path
) -> None:
    code, output = await run(
        "dev", "--nats", nats_with_password, "--db", with_password(postgres_url),
        "--dir", str(tmp_path / "dev"), "--http", "127.0.0.1:0", "--demo", "3",
        "--exit-after-demo",
    )  # fmt: skip
    assert code == 0, output
    assert "demo: 3 sagas" in output
    assert_no_secret(output)
    logs = sorted((tmp_path / "dev" / "logs").glob("*.log"))
    assert logs, "saga dev writes each process's output to a log file"
    for path in logs:
        assert SECRET not in path.read_text(errors="replace"), path
    services = "".join(p.read_text(errors="replace") for p in logs if "coordinator" not in p.name)
    assert "ready: nats nats://saga:***@" in services, "services print where they connect"


async def test_migrate_and_log_print_no_password(postgres_url: str) -> None:
    db = with_password(postgres_url)
    code, output = await run("migrate", "--db", db)
    assert code == 0, output
    assert_no_secret(output)
    code, output = await run("log", "no-such-saga", "--db", db)
    assert code == 3  # not found
    assert "no saga 'no-such-saga' in postgresql://postgres:***@" in output
    assert_no_secret(output)
    unreachable = f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/saga"
    code, output = await run("log", "no-such-saga", "--db", unreachable)
    assert code == 1
    *retries, last = output.strip().splitlines()
    assert last.startswith("Error: "), output
    assert all("trying again" in line for line in retries), output  # the log's bounded retries
    assert_no_secret(output)


async def test_operator_commands_print_no_password() -> None:
    url = f"http://viewer:{SECRET}@127.0.0.1:{free_port()}"
    code, output = await run("list", "--url", url)
    assert code == 5  # unreachable
    assert "cannot reach the saga API at http://viewer:***@" in output
    assert_no_secret(output)


@pytest.mark.postgres
async def test_soak_prints_no_password(tmp_path: Path, postgres_url: str) -> None:
    # postgres_url skips (or, in CI, fails) without a PostgreSQL; soak makes its own database.
    name = f"saga_soak_t{uuid.uuid4().hex[:10]}"
    db = with_password(postgres_url).rpartition("/")[0] + f"/{name}"
    code, output = await run(
        "soak", "--db", db, "--sagas", "3", "--kill-every", "0", "--replicas", "1",
        "--dir", str(tmp_path / "soak"), timeout_s=300,
    )  # fmt: skip
    assert code == 0, output
    assert "soak figures" in output
    assert_no_secret(output)
