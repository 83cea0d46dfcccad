"""Infrarust v2 files load unchanged where the feature exists; keys of features not built are refused by name.

The files below restate, by hand, what Infrarust v2's own ``examples/`` folder and configuration reference
(``docs/v2/reference/config-schema.md``) contain: the same keys and values, in our own words and comments.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from infrarust.config import (
    IGNORED,
    MOTD_STATES,
    MOTD_STATES_UNUSED,
    NOT_BUILT,
    Address,
    ConfigError,
    ConfigProblem,
    IpFilter,
    Motd,
    ProxyConfig,
    ProxyMode,
    ServerConfig,
    Timeouts,
    load_config,
)
from infrarust.config._structure import make_converter

REPO = Path(__file__).resolve().parent.parent

# --- Infrarust's examples/ folder --------------------------------------------------------------------------
# Its infrarust.toml is written to be run from the repository root, so its paths start with ./examples/.
# infrarust resolves them against the file's folder, so the copy sits where that root would be.
EXAMPLE_MAIN = """
    # the smoke-test proxy of Infrarust's examples/ folder
    servers_dir = "./examples/servers"

    [ban]
    file = "./examples/bans.json"
    purge_interval = "5m"
    enable_audit_log = true
"""
# The newest version of that file ends by turning on the web admin UI with an empty table.
EXAMPLE_MAIN_WITH_WEB = EXAMPLE_MAIN + "\n    [web]\n"
# Three servers named after the Minecraft version they run: the file name is the server id there.
EXAMPLE_VERSIONS = {
    "1.2.5.toml": ('domains = ["test.fr"]\naddresses = ["127.0.0.1:25568"]\n', "test.fr", 25568),
    "1.4.5.toml": ('domains = ["test-2.fr"]\naddresses = ["127.0.0.1:25569"]\n', "test-2.fr", 25569),
    "1.6.4.toml": ('domains = ["test-3.fr"]\naddresses = ["127.0.0.1:25566"]\n', "test-3.fr", 25566),
}
# The example of the newest Minecraft version uses an intercepted mode ("client_only" in older versions).
EXAMPLE_LATEST = (
    'domains = ["localhost", "test-4.fr"]\naddresses = ["127.0.0.1:25570"]\nproxy_mode = "offline"\n'
)
# A newer example: load balancing over weighted replicas.
EXAMPLE_BALANCED = """
    domains = ["balanced.example.com"]
    balance = "least_conn"
    slow_start = "45s"
    addresses = [
        { address = "10.0.0.1:25565", weight = 3 },
        { address = "10.0.0.2:25565", weight = 1 },
        "10.0.0.3:25565",
    ]
"""

# --- Infrarust's configuration reference: its "complete" examples --------------------------------------
DOCS_MAIN = """
    bind = "0.0.0.0:25565"
    servers_dir = "./servers"
    max_connections = 500
    connect_timeout = "5s"
    worker_threads = 0
    receive_proxy_protocol = false
    so_reuseport = false
    unknown_domain_behavior = "default_motd"

    [rate_limit]
    max_connections = 3
    window = "10s"
    status_max = 30
    status_window = "10s"

    [status_cache]
    ttl = "5s"
    max_entries = 1000

    [keepalive]
    time = "30s"
    interval = "10s"
    retries = 3

    [ban]
    file = "bans.json"
    purge_interval = "300s"
    enable_audit_log = true

    [default_motd.offline]
    text = "§cNo server found for this domain"
    version_name = "Infrarust"
    max_players = 0
"""
# Its tables for features infrarust does not build, by key. Features being built now (docker...) take their
# key out of NOT_BUILT; the tests below then leave their table out, since its schema is that feature's.
DOCS_MAIN_UNBUILT = {
    "docker": """
    [docker]
    endpoint = "unix:///var/run/docker.sock"
    network = "minecraft-net"
    poll_interval = "30s"
    reconnect_delay = "5s"
""",
    "telemetry": """
    [telemetry]
    enabled = true
    endpoint = "http://localhost:4317"
    protocol = "grpc"

    [telemetry.metrics]
    enabled = true
    export_interval = "15s"

    [telemetry.traces]
    enabled = true
    sampling_ratio = 0.1

    [telemetry.resource]
    service_name = "infrarust"
""",
    "plugins": """
    [plugins.auth]
    path = "./plugins/libauth.so"
    permissions = ["limbo", "command"]
    enabled = true
""",
}
DOCS_SURVIVAL = """
    name = "survival"
    network = "main"
    domains = ["play.example.com"]
    addresses = ["10.0.0.5:25565"]
    proxy_mode = "client_only"
    max_players = 100
    disconnect_message = "§cSurvival is offline. Try again later."
    limbo_handlers = ["server_wake"]

    [motd.online]
    text = "§aSurvival §7— Online"

    [motd.sleeping]
    text = "§7Survival §8— Sleeping, connect to wake"
    version_name = "Sleeping"

    [timeouts]
    connect = "10s"
    read = "60s"
    write = "60s"

    [ip_filter]
    blacklist = ["203.0.113.0/24"]
"""
DOCS_SURVIVAL_MANAGER = """
    [server_manager]
    type = "local"
    command = "java"
    args = ["-Xmx4G", "-jar", "server.jar", "nogui"]
    working_dir = "/opt/minecraft/survival"
    shutdown_after = "10m"
    start_timeout = "120s"
"""
# The same server without what infrarust does not build: what an operator keeps to run it here.
DOCS_SURVIVAL_BUILT = "\n".join(
    line
    for line in DOCS_SURVIVAL.splitlines()
    if not line.strip().startswith(("network", "limbo_handlers", "proxy_mode"))
)


def mode_refused(mode: str) -> bool:
    """Whether ``proxy_mode = mode`` is refused (the intercepted modes, until they are built)."""
    try:
        make_converter(REPO).structure(mode, ProxyMode)
    except ValueError:
        return True
    return False


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return list(info.value.problems)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def examples(root: Path, main: str = EXAMPLE_MAIN) -> Path:
    servers = root / "examples" / "servers"
    for name, (text, _, _) in EXAMPLE_VERSIONS.items():
        write(servers / name, text)
    return write(root / "infrarust.toml", main)


# --- the examples/ folder --------------------------------------------------------------------------------


def test_example_files_named_after_versions_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(examples(tmp_path))
    assert warnings(caplog) == []
    by_id = {server.name: server for server in config.servers}
    assert sorted(by_id) == ["1-2-5", "1-4-5", "1-6-4"]  # a clean id made from each file name
    for name, (_, domain, port) in EXAMPLE_VERSIONS.items():
        server = by_id[name.removesuffix(".toml").replace(".", "-")]
        assert server.domains == (domain,)
        assert server.addresses == (Address("127.0.0.1", port),)
        assert server.source == tmp_path / "examples" / "servers" / name  # messages name the file
    assert config.ban.file == str(tmp_path / "examples" / "bans.json")
    assert config.ban.purge_interval == 300.0  # "5m"
    assert config.ban.enable_audit_log is True


def test_example_with_web_is_refused_as_not_built(tmp_path: Path) -> None:
    main = examples(tmp_path, EXAMPLE_MAIN_WITH_WEB)
    assert [str(problem) for problem in problems(main)] == [
        f"{main}: web: the web admin API and UI is not built in infrarust; remove [web] to load this file"
    ]


def test_example_latest_loads_with_its_intercepted_mode(tmp_path: Path) -> None:
    main = examples(tmp_path)
    write(tmp_path / "examples" / "servers" / "latest.toml", EXAMPLE_LATEST)
    latest = next(server for server in load_config(main).servers if server.name == "latest")
    assert latest.proxy_mode is ProxyMode.OFFLINE and latest.domains == ("localhost", "test-4.fr")


def test_example_balanced_is_refused_as_load_balancing(tmp_path: Path) -> None:
    main = examples(tmp_path)
    balanced = write(tmp_path / "examples" / "servers" / "balanced.toml", EXAMPLE_BALANCED)
    found = {problem.key: problem.message for problem in problems(main) if problem.file == str(balanced)}
    assert sorted(found) == ["addresses[0]", "addresses[1]", "balance", "slow_start"]
    assert found["balance"] == (
        "Infrarust's load-balancing keys (infrarust has `load_balance` and `[health_check]` instead)"
        " is not built in infrarust; remove `balance` to load this file"
    )
    assert "weighted addresses are Infrarust's load balancing" in found["addresses[0]"]


# --- the configuration reference -------------------------------------------------------------------------


def test_reference_main_file_loads_and_worker_threads_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "servers").mkdir()
    main = write(tmp_path / "infrarust.toml", DOCS_MAIN)
    config = load_config(main)
    assert config.max_connections == 500
    assert config.connect_timeout == 5.0
    assert config.workers == 1  # worker_threads is not workers
    assert config.default_motd == {
        "offline": Motd(text="§cNo server found for this domain", version_name="Infrarust", max_players=0)
    }
    assert config.ban.purge_interval == 300.0
    assert warnings(caplog) == [
        f"{main}: worker_threads: worker_threads is ignored: infrarust runs one event loop per process;"
        " set `workers` to run several processes"
    ]


def test_reference_main_file_refuses_each_unbuilt_feature_by_name(tmp_path: Path) -> None:
    (tmp_path / "servers").mkdir()
    unbuilt = {key: text for key, text in DOCS_MAIN_UNBUILT.items() if key in NOT_BUILT[ProxyConfig]}
    main = write(tmp_path / "infrarust.toml", DOCS_MAIN + "".join(unbuilt.values()))
    found = problems(main)
    assert {problem.key: problem.message for problem in found} == {
        key: f"{NOT_BUILT[ProxyConfig][key]} is not built in infrarust; remove [{key}] to load this file"
        for key in unbuilt
    }
    assert all(problem.file == str(main) for problem in found)
    # As they read today:
    assert NOT_BUILT[ProxyConfig]["plugins"] == "plugins"
    assert NOT_BUILT[ProxyConfig]["telemetry"] == "OpenTelemetry export"


def test_reference_server_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    main = write(tmp_path / "infrarust.toml", "")
    manager = "server_manager" in NOT_BUILT[ServerConfig]
    survival = write(
        tmp_path / "servers" / "survival.toml", DOCS_SURVIVAL + (DOCS_SURVIVAL_MANAGER if manager else "")
    )
    found = {problem.key: problem.message for problem in problems(main)}
    expected = {"limbo_handlers", "network"} | ({"server_manager"} if manager else set())
    assert sorted(found) == sorted(expected | ({"proxy_mode"} if mode_refused("client_only") else set()))
    assert (
        found["network"]
        == "server switching (networks) is not built in infrarust; remove `network` to load this file"
    )
    if manager:
        assert found["server_manager"] == (
            f"{NOT_BUILT[ServerConfig]['server_manager']} is not built in infrarust;"
            " remove [server_manager] to load this file"
        )
    assert found["limbo_handlers"].startswith("limbo handlers (plugins) is not built in infrarust")
    assert not any("did you mean" in message or "unknown key" in message for message in found.values())

    write(survival, DOCS_SURVIVAL_BUILT)
    (server,) = load_config(main).servers
    assert server.name == "survival"
    assert server.timeouts == Timeouts(connect=10.0, read=60.0, write=60.0)
    assert server.ip_filter == IpFilter(blacklist=("203.0.113.0/24",))
    assert server.max_players == 100
    assert set(server.motd) == {"online", "sleeping"}
    assert not [line for line in warnings(caplog) if "sleeping" in line]  # the server manager shows it


def test_global_ip_filter(tmp_path: Path) -> None:
    (tmp_path / "servers").mkdir()
    main = write(tmp_path / "infrarust.toml", '[ip_filter]\nwhitelist = ["192.168.1.0/24", "10.0.0.0/8"]\n')
    assert load_config(main).ip_filter == IpFilter(whitelist=("192.168.1.0/24", "10.0.0.0/8"))


# --- the server id: id, name, file name ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "text", "expected"),
    [
        ("a.toml", "id = 'hub'\n", "hub"),
        ("1.6.4.toml", "id = 'legacy'\n", "legacy"),
        ("a.toml", "name = 'hub'\n", "hub"),
        ("Lobby EU.toml", "", "lobby-eu"),
        ("1.20.1_creative.toml", "", "1-20-1_creative"),
    ],
)
def test_server_id(tmp_path: Path, file_name: str, text: str, expected: str) -> None:
    main = write(tmp_path / "infrarust.toml", "")
    write(tmp_path / "servers" / file_name, 'domains = ["a.com"]\naddresses = ["h"]\n' + text)
    assert [server.name for server in load_config(main).servers] == [expected]


def test_name_wins_over_id_as_in_infrarust(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    main = write(tmp_path / "infrarust.toml", "")
    path = write(
        tmp_path / "servers" / "a.toml", 'domains = ["a.com"]\naddresses = ["h"]\nid = "x"\nname = "y"\n'
    )
    assert load_config(main).servers[0].name == "y"
    assert warnings(caplog) == [f"{path}: id: both `name` and `id` are set; the server's id is the name 'y'"]


def test_two_file_names_that_make_the_same_id(tmp_path: Path) -> None:
    main = write(tmp_path / "infrarust.toml", "")
    first = write(tmp_path / "servers" / "1-6-4.toml", 'domains = ["a.com"]\naddresses = ["h"]\n')
    second = write(tmp_path / "servers" / "1.6.4.toml", 'domains = ["b.com"]\naddresses = ["h"]\n')
    assert [str(problem) for problem in problems(main)] == [
        f"{second}: name: server id '1-6-4' (made from the file name) is already used by {first};"
        " set `name` in one of them"
    ]


# --- MOTD states Infrarust knows that nothing here shows -----------------------------------------------


# --- the tables stay true --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ProxyConfig, ServerConfig])
def test_no_key_is_both_built_and_not_built(cls: type) -> None:
    """A feature that lands adds its key to the model: its NOT_BUILT entry must then go."""
    fields = {field.name for field in attrs.fields(cls)}
    assert not fields & NOT_BUILT[cls].keys()
    assert not fields & IGNORED[cls].keys()
    assert not NOT_BUILT[cls].keys() & IGNORED[cls].keys()


def test_unused_motd_states_are_infrarust_states() -> None:
    assert set(MOTD_STATES_UNUSED) <= set(MOTD_STATES)


@pytest.mark.parametrize(
    ("cls", "key"), [(cls, key) for cls, table in NOT_BUILT.items() for key in table], ids=str
)
def test_every_unbuilt_key_is_refused_by_name(tmp_path: Path, cls: type, key: str) -> None:
    (tmp_path / "servers").mkdir()
    main = write(tmp_path / "infrarust.toml", "")
    where = main
    if cls is ServerConfig:
        where = write(
            tmp_path / "servers" / "a.toml", f'domains = ["a.com"]\naddresses = ["h"]\n{key} = "x"\n'
        )
    else:
        write(main, f'{key} = "x"\n')
    (problem,) = problems(main)
    assert (problem.file, problem.key) == (str(where), key)
    assert (
        problem.message
        == f"{NOT_BUILT[cls][key]} is not built in infrarust; remove `{key}` to load this file"
    )


# --- the command line ------------------------------------------------------------------------------------


def test_check_command_on_the_examples(tmp_path: Path) -> None:
    main = examples(tmp_path, EXAMPLE_MAIN_WITH_WEB)
    result = subprocess.run(
        [sys.executable, "-m", "infrarust", "check", "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert f"{main}: web: the web admin API and UI is not built in infrarust" in result.stderr
    assert "Traceback" not in result.stderr
    write(main, EXAMPLE_MAIN)
    result = subprocess.run(
        [sys.executable, "-m", "infrarust", "check", "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "1-6-4" in result.stdout + result.stderr
