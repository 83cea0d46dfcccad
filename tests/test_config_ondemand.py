"""``[docker]`` and per-server ``[server_manager]``: Infrarust v2 key names, defaults and every error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from infrarust.config import (
    ConfigError,
    Docker,
    ManagerType,
    ProxyMode,
    ServerManager,
    load_config,
    structure_server,
)

SERVER = 'domains = ["play.example.com"]\naddresses = ["127.0.0.1:25566"]\n'


def load(tmp_path: Path, main: str, server: str = SERVER) -> Path:
    (tmp_path / "servers").mkdir(exist_ok=True)
    (tmp_path / "servers" / "play.toml").write_text(textwrap.dedent(server))
    path = tmp_path / "infrarust.toml"
    path.write_text(textwrap.dedent(main))
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [f"{problem.key}: {problem.message}" for problem in info.value.problems]


def test_docker_absent_is_off_and_present_takes_infrarust_defaults(tmp_path: Path) -> None:
    assert load_config(load(tmp_path, "")).docker is None
    assert load_config(load(tmp_path, "[docker]\n")).docker == Docker(
        endpoint="unix:///var/run/docker.sock", network=None, poll_interval=30.0, reconnect_delay=5.0
    )


def test_docker_keys(tmp_path: Path) -> None:
    config = load_config(
        load(
            tmp_path,
            """
            [docker]
            endpoint = "tcp://127.0.0.1:2375"
            network = "minecraft"
            poll_interval = "10s"
            reconnect_delay = "500ms"
            """,
        )
    )
    assert config.docker == Docker("tcp://127.0.0.1:2375", "minecraft", 10.0, 0.5)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'endpoint = "docker.sock"',
            "docker.endpoint: expected unix:///path/to/docker.sock or tcp://host:port",
        ),
        ('endpoint = "unix://docker.sock"', "docker.endpoint: expected an absolute socket path"),
        ("poll_interval = 30", "docker.poll_interval: durations are strings with a unit"),
        ('reconect_delay = "1s"', "docker.reconect_delay: unknown key; did you mean 'reconnect_delay'?"),
    ],
)
def test_docker_errors(tmp_path: Path, line: str, expected: str) -> None:
    [problem] = errors(load(tmp_path, f"[docker]\n{line}\n"))
    assert problem.startswith(expected)


def test_local_server_manager_keys_and_defaults(tmp_path: Path) -> None:
    config = load_config(
        load(
            tmp_path,
            "",
            SERVER
            + """
            [server_manager]
            type = "local"
            command = "java"
            args = ["-Xmx2G", "-jar", "server.jar", "nogui"]
            working_dir = "survival"
            """,
        )
    )
    assert config.servers[0].server_manager == ServerManager(
        type=ManagerType.LOCAL,
        command="java",
        args=("-Xmx2G", "-jar", "server.jar", "nogui"),
        working_dir=Path("survival"),
        ready_pattern=r"Done \(",
        start_timeout=60.0,
        shutdown_after=None,
        shutdown_timeout=30.0,
    )


def test_docker_server_manager(tmp_path: Path) -> None:
    config = load_config(
        load(
            tmp_path,
            "",
            SERVER
            + """
            [server_manager]
            type = "docker"
            container = "mc-survival"
            shutdown_after = "10m"
            start_timeout = "2m"
            """,
        )
    )
    manager = config.servers[0].server_manager
    assert manager is not None
    assert (manager.type, manager.container, manager.shutdown_after, manager.start_timeout) == (
        ManagerType.DOCKER,
        "mc-survival",
        600.0,
        120.0,
    )


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('type = "local"', 'server_manager.command: type = "local" needs command, like command = "java"'),
        ('type = "docker"', 'server_manager.container: type = "docker" needs container'),
        (
            'type = "docker"\ncontainer = "x"\ncommand = "java"',
            "server_manager.command: command does not apply",
        ),
        (
            'type = "local"\ncommand = "java"\ncontainer = "x"',
            "server_manager.container: container does not apply",
        ),
        ('type = "pterodactyl"', 'server_manager.type: type = "pterodactyl" is not supported yet'),
        ('type = "crafty"', 'server_manager.type: type = "crafty" is not supported yet'),
        ('type = "kubernetes"', "server_manager.type: unknown server_manager type 'kubernetes'"),
        ('command = "java"', "server_manager.type: required key is missing"),
        ('type = "local"\ncommand = ""', "server_manager.command: must not be empty"),
        (
            'type = "local"\ncommand = "java"\nready_pattern = "Done ("',
            "server_manager.ready_pattern: not a valid",
        ),
        (
            'type = "local"\ncommand = "java"\nshutdown_after = 300',
            "server_manager.shutdown_after: durations",
        ),
        (
            'type = "local"\ncommand = "java"\nstartup_timeout = "1s"',
            "server_manager.startup_timeout: unknown key",
        ),
    ],
)
def test_server_manager_errors(tmp_path: Path, table: str, expected: str) -> None:
    found = errors(load(tmp_path, "", SERVER + "[server_manager]\n" + table + "\n"))
    assert any(problem.startswith(expected) for problem in found), found


def test_structure_server_applies_the_server_file_rules() -> None:
    server = structure_server(
        {"name": "lobby", "domains": ["Lobby.Example.COM"], "addresses": ["127.0.0.1:25566"]}, where="test"
    )
    assert server.domains == ("lobby.example.com",)
    assert server.proxy_mode is ProxyMode.PASSTHROUGH
    with pytest.raises(ConfigError) as info:
        structure_server({"name": "Bad Name", "addresses": []}, where="docker container x")
    lines = str(info.value).splitlines()
    assert "docker container x: name: invalid server name 'Bad Name'" in lines[0]
    assert any(line.startswith("docker container x: addresses:") for line in lines)
