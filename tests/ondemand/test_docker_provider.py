"""The Docker route provider against a real dockerd: containers come and go, routes follow.

The proxy is the real one (``infrarust.serve`` with ``[docker]`` set): it runs the provider and applies
each set it publishes like a reload (merged with the configuration's servers, a ``ConfigReloaded`` event).
Players are the tests' real minecraft-protocol client, logging in through the proxy to the Minecraft server
that runs inside the container.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio
from e2e.harness import run_client
from helpers import proxy_config

import infrarust
from infrarust.config import Docker, ProxyConfig, ProxyMode, ServerConfig, load_config
from infrarust.providers import DockerProvider

from ._daemon import Containers, DockerDaemon, free_port, minecraft_container

ROUTE_DEADLINE = 1.0  # the promise: routed within a second of the container starting
LISTEN_TIMEOUT = 20.0


class Routes:
    """The servers the proxy routes after each ``ConfigReloaded``, with the trio time it was seen."""

    def __init__(self) -> None:
        self.history: list[tuple[float, tuple[ServerConfig, ...]]] = []
        self._changed = trio.Event()

    def record(self, servers: tuple[ServerConfig, ...]) -> None:
        self.history.append((trio.current_time(), servers))
        self._changed.set()
        self._changed = trio.Event()

    @property
    def current(self) -> dict[str, ServerConfig]:
        return {server.name: server for server in (self.history[-1][1] if self.history else ())}

    async def wait(self, condition: Callable[[dict[str, ServerConfig]], bool], timeout: float) -> float:
        """Wait until the routed set satisfies ``condition``; the trio time it first did."""
        with trio.fail_after(timeout):
            while True:
                for at, servers in self.history:
                    if condition({server.name: server for server in servers}) and condition(self.current):
                        return at
                await self._changed.wait()


async def _follow(
    proxy: infrarust.Proxy, routes: Routes, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async with proxy.subscribe() as events:
        routes.record(proxy.config.servers)
        task_status.started()
        async for event in events:
            if isinstance(event, infrarust.ConfigReloaded) and event.ok:
                routes.record(proxy.config.servers)


@asynccontextmanager
async def routed_proxy(
    daemon: DockerDaemon, *, reconnect_delay: float = 0.2, config: ProxyConfig | None = None
) -> AsyncIterator[tuple[infrarust.Proxy, DockerProvider, Routes]]:
    docker = Docker(endpoint=daemon.endpoint, reconnect_delay=reconnect_delay, poll_interval=30.0)
    config = attrs.evolve(config or proxy_config(), docker=docker)
    routes = Routes()
    async with trio.open_nursery() as nursery:
        proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
        await nursery.start(_follow, proxy, routes)
        provider = proxy._ondemand.provider
        assert provider is not None and provider.connected
        yield proxy, provider, routes
        nursery.cancel_scope.cancel()


async def wait_listening(port: int) -> None:
    with trio.fail_after(LISTEN_TIMEOUT):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def login(node: str, proxy: infrarust.Proxy, domain: str, username: str) -> None:
    client = await run_client(
        node,
        version="1.20.4",
        port=proxy.port,
        host=domain,
        username=username,
        message="hi",
        give_up_after=20,
    )
    assert client.returncode == 0, client.describe()
    client.event("joined")


async def test_labelled_container_is_routed_within_a_second_and_gone_when_stopped(
    docker_daemon: DockerDaemon, containers: Containers, node: str
) -> None:
    port = free_port()
    labels = {
        "infrarust.enable": "true",
        "infrarust.domains": "survival.docker.test",
        "infrarust.port": str(port),
    }
    async with routed_proxy(docker_daemon) as (proxy, _provider, routes):
        assert routes.current == {}
        await containers.create("survival", minecraft_container(port=port, labels=labels))
        await containers.start("survival")
        started = trio.current_time()
        routed_at = await routes.wait(lambda now: "survival" in now, timeout=5)
        assert routed_at - started < ROUTE_DEADLINE, f"routed {routed_at - started:.3f}s after the start"
        server = routes.current["survival"]
        assert server.domains == ("survival.docker.test",)
        assert [str(address) for address in server.addresses] == [f"127.0.0.1:{port}"]
        assert server.proxy_mode is ProxyMode.PASSTHROUGH

        await wait_listening(port)
        await login(node, proxy, "survival.docker.test", "docker_player")

        await containers.stop("survival")
        await routes.wait(lambda now: "survival" not in now, timeout=10)
        assert all(server.name != "survival" for server in proxy.config.servers)
        refused = await run_client(
            node,
            version="1.20.4",
            port=proxy.port,
            host="survival.docker.test",
            username="late",
            message="x",
            give_up_after=10,
        )
        assert refused.returncode != 0, "a login to a stopped container's domain must not succeed"


async def test_labels_two_domains_custom_port_and_proxy_mode(
    docker_daemon: DockerDaemon, containers: Containers, node: str
) -> None:
    port = free_port()
    labels = {
        "infrarust.enable": "true",
        "infrarust.domains": "a.docker.test, b.docker.test",
        "infrarust.port": str(port),
        "infrarust.proxy_mode": "server_only",
        "infrarust.name": "Creative World",
        "infrarust.motd.text": "Built from labels",
        "infrarust.send_proxy_protocol": "false",
    }
    async with routed_proxy(docker_daemon) as (proxy, _provider, routes):
        await containers.run("creative", minecraft_container(port=port, labels=labels))
        await routes.wait(lambda now: "creative-world" in now, timeout=5)
        server = routes.current["creative-world"]
        assert server.domains == ("a.docker.test", "b.docker.test")
        assert [str(address) for address in server.addresses] == [f"127.0.0.1:{port}"]
        assert server.proxy_mode is ProxyMode.SERVER_ONLY
        assert server.send_proxy_protocol is False
        assert server.motd["online"].text == "Built from labels"

        await wait_listening(port)
        await login(node, proxy, "b.docker.test", "second_domain")


async def test_unlabelled_and_disabled_containers_are_ignored(
    docker_daemon: DockerDaemon, containers: Containers
) -> None:
    async with routed_proxy(docker_daemon) as (_proxy, provider, routes):
        await containers.run("plain", minecraft_container(port=free_port()))
        await containers.run(
            "disabled",
            minecraft_container(
                port=free_port(), labels={"infrarust.enable": "false", "infrarust.domains": "off.docker.test"}
            ),
        )
        # A labelled one started last: once it is routed, the two before it were seen and skipped.
        await containers.run(
            "marker", minecraft_container(port=free_port(), labels={"infrarust.enable": "true"})
        )
        await routes.wait(lambda now: "marker" in now, timeout=5)
        assert set(routes.current) == {"marker"}
        # Infrarust's defaults: <container>.docker.local, port 25565 (host networking: on 127.0.0.1).
        assert routes.current["marker"].domains == ("marker.docker.local",)
        assert [str(address) for address in routes.current["marker"].addresses] == ["127.0.0.1:25565"]
        assert {server.name for server in provider.servers} == {"marker"}


async def test_a_container_with_a_health_check_is_routed_only_while_healthy(
    docker_daemon: DockerDaemon, containers: Containers
) -> None:
    async with routed_proxy(docker_daemon) as (_proxy, _provider, routes):
        enable = {"infrarust.enable": "true"}
        # Its health check probes a port nobody listens on: never healthy, never routed.
        await containers.run(
            "sick",
            minecraft_container(port=free_port(), labels=enable, healthcheck=True, health_port=free_port()),
        )
        await containers.run("fit", minecraft_container(port=free_port(), labels=enable, healthcheck=True))
        await routes.wait(lambda now: "fit" in now, timeout=15)
        assert (await containers.inspect("fit"))["State"]["Health"]["Status"] == "healthy"
        assert (await containers.inspect("sick"))["State"]["Health"]["Status"] != "healthy"
        assert "sick" not in routes.current


async def test_bad_labels_skip_only_that_container(
    docker_daemon: DockerDaemon, containers: Containers
) -> None:
    async with routed_proxy(docker_daemon) as (_proxy, _provider, routes):
        bad = {"infrarust.enable": "true", "infrarust.port": "not-a-port"}
        await containers.run("bad-port", minecraft_container(port=free_port(), labels=bad))
        await containers.run(
            "good", minecraft_container(port=free_port(), labels={"infrarust.enable": "true"})
        )
        await routes.wait(lambda now: "good" in now, timeout=5)
        assert "bad-port" not in routes.current


async def test_routes_come_back_after_dockerd_restarts(
    docker_daemon: DockerDaemon, containers: Containers, node: str
) -> None:
    port = free_port()
    labels = {
        "infrarust.enable": "true",
        "infrarust.domains": "phoenix.docker.test",
        "infrarust.port": str(port),
    }
    async with routed_proxy(docker_daemon, reconnect_delay=0.2) as (proxy, provider, routes):
        await containers.run("phoenix", minecraft_container(port=port, labels=labels, restart_always=True))
        await routes.wait(lambda now: "phoenix" in now, timeout=5)

        before = trio.current_time()
        await trio.to_thread.run_sync(docker_daemon.restart)
        # The daemon stopped the container on its way down and started it again (restart: always); the
        # provider saw the stream drop, reconnected and listed it again.
        with trio.fail_after(30):
            while not (
                provider.connected
                and (provider.connected_at or 0) > before
                and "phoenix" in {server.name for server in provider.servers}
            ):
                await trio.sleep(0.05)
        assert "phoenix" in {server.name for server in proxy.config.servers}
        await wait_listening(port)
        await login(node, proxy, "phoenix.docker.test", "after_restart")


async def test_files_win_a_domain_and_a_file_reload_keeps_the_docker_routes(
    docker_daemon: DockerDaemon, containers: Containers, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main = tmp_path / "infrarust.toml"
    main.write_text('bind = "127.0.0.1:0"\n[rate_limit]\nmax_connections = 0\nstatus_max = 0\n')
    (tmp_path / "servers").mkdir()
    lobby = tmp_path / "servers" / "lobby.toml"
    lobby.write_text('domains = ["shared.docker.test"]\naddresses = ["127.0.0.1:1"]\n')
    labels = {"infrarust.enable": "true", "infrarust.domains": "shared.docker.test, own.docker.test"}
    async with routed_proxy(docker_daemon, config=load_config(main)) as (proxy, _provider, routes):
        with caplog.at_level(logging.WARNING):
            await containers.run("rival", minecraft_container(port=free_port(), labels=labels))
            await routes.wait(lambda now: "rival" in now, timeout=5)
        assert routes.current["lobby"].domains == ("shared.docker.test",)
        assert routes.current["rival"].domains == ("own.docker.test",), "the file keeps its domain"
        assert f"files:lobby ({lobby})" in caplog.text and "docker:rival" in caplog.text

        # SIGHUP's path: the file is read again; the Docker routes stay.
        lobby.write_text('domains = ["renamed.docker.test"]\naddresses = ["127.0.0.1:1"]\n')
        await proxy.reload()
        routed = {server.name: server.domains for server in proxy.config.servers}
        assert routed == {
            "lobby": ("renamed.docker.test",),
            "rival": ("shared.docker.test", "own.docker.test"),
        }


async def test_a_reload_that_adds_docker_starts_the_provider_and_one_that_removes_it_drops_its_routes(
    docker_daemon: DockerDaemon, containers: Containers
) -> None:
    config = proxy_config()
    async with trio.open_nursery() as nursery:
        proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
        routes = Routes()
        await nursery.start(_follow, proxy, routes)
        assert proxy._ondemand.provider is None
        await containers.run(
            "late", minecraft_container(port=free_port(), labels={"infrarust.enable": "true"})
        )
        await proxy.reload(attrs.evolve(config, docker=Docker(endpoint=docker_daemon.endpoint)))
        await routes.wait(lambda now: "late" in now, timeout=10)
        await proxy.reload(config)
        await routes.wait(lambda now: "late" not in now, timeout=10)
        assert proxy._ondemand.provider is None
        nursery.cancel_scope.cancel()
