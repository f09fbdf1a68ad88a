"""docker/compose.yaml names only commands, options and variables the project accepts.

There is no Docker engine in CI, so the topology is checked where it can be: the YAML parses;
each container of the project's image runs a command that exists, with options it has and
environment variables it reads (from the click commands themselves); the saga modules and
databases it names exist; the nats-server flags are ones the real binary knows. When the
docker client has the compose plugin, ``docker compose config`` validates the file too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from saga.cli import load_sagas
from saga.cli import main as saga_main
from saga.transport.nats_server import nats_server_binary

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
IMAGE = "saga-coordinator:latest"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


def project_services() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in compose()["services"].items() if v.get("image") == IMAGE}


def click_command(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command a container runs, and the arguments it is given."""
    if argv[:2] == ["saga", "coordinator"]:
        command = saga_main.commands["coordinator"]  # type: ignore[attr-defined]
        return command, argv[2:]
    if argv[:2] == ["python", "-m"] and argv[2].startswith("services."):
        module = __import__(f"{argv[2]}.__main__", fromlist=["main"])
        return module.main, argv[3:]
    raise AssertionError(f"unexpected command {argv}")


def accepted(command: click.Command) -> tuple[set[str], set[str]]:
    """The option flags and environment variables a click command accepts."""
    flags: set[str] = set()
    envvars: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            flags.update(param.opts, param.secondary_opts)
        if param.envvar:
            envvars.update([param.envvar] if isinstance(param.envvar, str) else param.envvar)
    return flags, envvars


def test_compose_file_has_the_production_topology() -> None:
    services = compose()["services"]
    assert {"nats-1", "nats-2", "nats-3", "postgres"} <= set(services)
    ours = project_services()
    assert {"orders", "payments", "inventory", "shipping"} <= set(ours)
    coordinators = [name for name, s in ours.items() if s["command"][:2] == ["saga", "coordinator"]]
    assert len(coordinators) == 2
    # One active coordinator until leases exist; the other only starts on request.
    assert [name for name in coordinators if "profiles" not in ours[name]] == ["coordinator-a"]
    for name in ("payments", "inventory", "shipping"):
        assert ours[name]["deploy"]["replicas"] >= 2, name


def test_every_command_option_and_variable_is_accepted_by_the_project() -> None:
    for name, service in project_services().items():
        command, args = click_command(service["command"])
        flags, envvars = accepted(command)
        for arg in args:
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in flags, f"{name}: {arg} is not an option"
        for variable in service.get("environment", {}):
            assert variable in envvars, f"{name}: {command.name} does not read {variable}"
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
    services = compose()["services"]
    for name in ("nats-1", "nats-2", "nats-3"):
        flags = [arg for arg in services[name]["command"] if arg.startswith("--")]
        assert flags, name
        assert set(flags) <= known, f"{name}: {set(flags) - known}"


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="needs the docker client with the compose plugin")
def test_docker_compose_config_accepts_the_file() -> None:
    done = subprocess.run(
        ["docker", "compose", "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
