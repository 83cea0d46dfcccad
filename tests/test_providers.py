"""Route providers without a daemon: merging providers' servers, and Docker labels and addresses as servers.

The container dictionaries have the shape ``GET /containers/json`` answers (API 1.41, as dockerd 20.10
sends them); the real daemon is exercised in ``ondemand/test_docker_provider.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import server

from infrarust.config import Address, ConfigError, Docker, ProxyMode, ServerConfig
from infrarust.providers import (
    ContainerSkipped,
    DockerProvider,
    container_address,
    container_health,
    merge_servers,
    server_from_container,
)

A = (Address("127.0.0.1", 25566),)
B = (Address("127.0.0.1", 25567),)


def container(
    name: str = "/mc",
    labels: dict[str, str] | None = None,
    *,
    network_mode: str = "host",
    networks: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    status: str = "Up 2 seconds",
) -> dict[str, Any]:
    return {
        "Id": "0123456789abcdef",
        "Names": [name],
        "Labels": {"infrarust.enable": "true", **(labels or {})},
        "State": "running",
        "Status": status,
        "Ports": ports or [],
        "HostConfig": {"NetworkMode": network_mode},
        "NetworkSettings": {"Networks": {net: {"IPAddress": ip} for net, ip in (networks or {}).items()}},
    }


def test_merge_keeps_every_server_when_nothing_conflicts() -> None:
    files = [server("lobby", ["lobby.test"], A)]
    docker = [server("survival", ["survival.test"], B)]
    assert merge_servers([("files", files), ("docker", docker)]) == (*files, *docker)


def test_files_win_a_domain_and_the_conflict_names_both_sources(caplog: pytest.LogCaptureFixture) -> None:
    lobby = server("lobby", ["lobby.test"], A, source=Path("servers/lobby.toml"))
    rival = server("rival", ["lobby.test", "rival.test"], B)
    with caplog.at_level(logging.WARNING):
        merged = merge_servers([("files", [lobby]), ("docker", [rival])])
    assert [(item.name, item.domains) for item in merged] == [
        ("lobby", ("lobby.test",)),
        ("rival", ("rival.test",)),
    ]
    [line] = [record.getMessage() for record in caplog.records]
    assert line == (
        'route conflict domain=lobby.test kept="files:lobby (servers/lobby.toml)" dropped=docker:rival'
    )


def test_a_server_left_without_domains_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    lobby = server("lobby", ["lobby.test"], A)
    copy = server("copy", ["lobby.test"], B)
    with caplog.at_level(logging.WARNING):
        merged = merge_servers([("files", [lobby]), ("docker", [copy])])
    assert merged == (lobby,)
    assert any("route dropped server=copy" in record.getMessage() for record in caplog.records)


def test_a_name_taken_by_an_earlier_provider_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    lobby = server("lobby", ["lobby.test"], A)
    same_name = server("lobby", ["other.test"], B)
    with caplog.at_level(logging.WARNING):
        assert merge_servers([("files", [lobby]), ("code", [same_name])]) == (lobby,)
    assert "route conflict name=lobby kept=files:lobby dropped=code:lobby" in caplog.text


def test_one_provider_keeps_its_own_duplicates_for_the_router_to_order() -> None:
    first = server("a", ["same.test"], A)
    second = server("b", ["same.test"], B)
    assert merge_servers([("files", [first, second])]) == (first, second)


def test_labels_become_a_server() -> None:
    labels = {
        "infrarust.domains": "Survival.Example.com, *.survival.example.com ,",
        "infrarust.port": "25570",
        "infrarust.proxy_mode": "zero_copy",
        "infrarust.send_proxy_protocol": "true",
        "infrarust.name": "Survival_1",
        "infrarust.motd.text": "Welcome",
    }
    result = server_from_container(container(labels=labels))
    assert result.name == "survival_1"
    assert result.domains == ("survival.example.com", "*.survival.example.com")
    assert result.addresses == (Address("127.0.0.1", 25570),)
    assert result.proxy_mode is ProxyMode.ZERO_COPY
    assert result.send_proxy_protocol is True
    assert result.motd["online"].text == "Welcome"


def test_defaults_follow_infrarust() -> None:
    result = server_from_container(container("/My.Server"))
    assert result.name == "my-server"
    assert result.domains == ("my-server.docker.local",)
    assert result.addresses == (Address("127.0.0.1", 25565),)
    assert result.proxy_mode is ProxyMode.PASSTHROUGH


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"infrarust.port": "0"}, "label infrarust.port='0' is not a port number"),
        ({"infrarust.port": "http"}, "label infrarust.port='http' is not a port number"),
        ({"infrarust.send_proxy_protocol": "maybe"}, "is not true or false"),
    ],
)
def test_bad_labels_are_reported(labels: dict[str, str], message: str) -> None:
    with pytest.raises(ContainerSkipped, match=message):
        server_from_container(container(labels=labels))


def test_a_mode_not_built_is_refused_like_in_a_file() -> None:
    with pytest.raises(ConfigError, match="docker container mc: proxy_mode: `full` is not supported"):
        server_from_container(container(labels={"infrarust.proxy_mode": "full"}))


def test_address_prefers_the_configured_network() -> None:
    item = container(network_mode="bridge", networks={"other": "172.18.0.5", "mc": "172.19.0.7"})
    assert container_address(item, 25565, "mc") == "172.19.0.7:25565"
    assert container_address(item, 25565, None) == "172.18.0.5:25565"


def test_address_uses_a_published_port() -> None:
    ports = [
        {"PrivatePort": 25565, "PublicPort": 31000, "Type": "tcp", "IP": "0.0.0.0"},
        {"PrivatePort": 25565, "PublicPort": 31000, "Type": "tcp", "IP": "::"},
    ]
    item = container(network_mode="bridge", networks={"bridge": ""}, ports=ports)
    assert container_address(item, 25565, None) == "127.0.0.1:31000"
    assert container_address(item, 25565, "missing") == "127.0.0.1:31000"


def test_no_reachable_address_skips_the_container() -> None:
    with pytest.raises(ContainerSkipped, match="no address reaches port 25565"):
        container_address(container(network_mode="none", networks={"none": ""}), 25565, None)


@pytest.mark.parametrize(
    ("status", "health"),
    [
        ("Up 3 seconds", None),
        ("Up 3 seconds (healthy)", "healthy"),
        ("Up 3 seconds (unhealthy)", "unhealthy"),
        ("Up 1 second (health: starting)", "starting"),
    ],
)
def test_health_from_the_status_text(status: str, health: str | None) -> None:
    assert container_health(container(status=status)) == health


async def test_provider_without_a_daemon_starts_at_once_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    published: list[tuple[ServerConfig, ...]] = []

    async def on_change(servers: tuple[ServerConfig, ...]) -> None:
        published.append(servers)

    config = Docker(endpoint=f"unix://{tmp_path / 'no-docker.sock'}", reconnect_delay=0.05)
    provider = DockerProvider(config, on_change)
    with caplog.at_level(logging.INFO, logger="infrarust.providers"):
        async with trio.open_nursery() as nursery:
            with trio.fail_after(2):
                await nursery.start(provider.run)
            assert not provider.connected
            await trio.sleep(0.3)  # several reconnect attempts
            nursery.cancel_scope.cancel()
    warnings = [
        record.getMessage() for record in caplog.records if "docker unreachable" in record.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert "No such file or directory" in warnings[0]
    assert published == []
