"""Servers on demand through the real proxy (``infrarust.serve``): real clients (the tests'
minecraft-protocol client) log in through it to a real Minecraft server (the tests' minecraft-protocol
server) that the proxy starts as a local process or as a container, and stops when idle or at shutdown.

Also the routes added from code (``proxy.add_server``), merged with the configuration's servers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio
from e2e.harness import ClientRun, MinecraftServer, run_client
from helpers import handshake, login_start, proxy_config

import infrarust
from infrarust.config import Address, ManagerType, Motd, ServerConfig, ServerManager, load_config
from infrarust.manager import ManagedServer, ServerState
from infrarust.ping import ping

from ._daemon import Containers, DockerDaemon, free_port, minecraft_container
from .test_manager import local_server, minecraft_args, pid_alive, starts_logged, wait_state

Events = list[infrarust.Event]


@attrs.define
class Running:
    proxy: infrarust.Proxy
    events: Events
    nursery: trio.Nursery

    def managed(self, name: str = "lobby") -> ManagedServer:
        managed = self.proxy._ondemand.managers.get(name)
        assert managed is not None, f"{name} is not managed"
        return managed

    def refusals(self) -> list[infrarust.ConnectionRefused]:
        return [event for event in self.events if isinstance(event, infrarust.ConnectionRefused)]

    def sessions_started(self) -> int:
        return sum(isinstance(event, infrarust.SessionStarted) for event in self.events)

    async def seen(self, kind: type[infrarust.Event], timeout: float = 5.0) -> None:
        """Wait for the collector to have received an event of ``kind`` (it runs in its own task)."""
        with trio.fail_after(timeout):
            while not any(isinstance(event, kind) for event in self.events):
                await trio.sleep(0.01)


async def _collect(proxy: infrarust.Proxy, seen: Events, *, task_status: trio.TaskStatus[None]) -> None:
    async with proxy.subscribe() as events:
        task_status.started()
        async for event in events:
            seen.append(event)


@asynccontextmanager
async def running_proxy(config: infrarust.ProxyConfig) -> AsyncIterator[Running]:
    async with trio.open_nursery() as nursery:
        proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
        seen: Events = []
        await nursery.start(_collect, proxy, seen)
        yield Running(proxy, seen, nursery)
        nursery.cancel_scope.cancel()


async def join(node: str, proxy: infrarust.Proxy, username: str, host: str = "lobby.test") -> ClientRun:
    client = await run_client(
        node, version="1.20.4", port=proxy.port, host=host, username=username, message="hi", give_up_after=25
    )
    assert client.returncode == 0, client.describe()
    client.event("joined")
    return client


async def refused_login(node: str, proxy: infrarust.Proxy, username: str) -> str:
    """A login the proxy refuses: what the client printed (its kick message is in it)."""
    client = await run_client(
        node, version="1.20.4", port=proxy.port, host="lobby.test", username=username, message="x"
    )
    assert client.returncode != 0, client.describe()
    return client.stdout + client.stderr


async def motd_text(proxy: infrarust.Proxy, host: str = "lobby.test") -> tuple[str, str | None]:
    result = await ping("127.0.0.1", proxy.port, domain=host, ask_source=True)
    return str(result.status["description"]), result.source


async def test_sleeping_motd_through_the_proxy_and_a_ping_never_starts_it(tmp_path: Path) -> None:
    port = free_port()
    motd = {"sleeping": Motd(text="Zzz, join to wake me")}
    server = local_server(tmp_path, port, command="node", args=minecraft_args(port), motd=motd)
    async with running_proxy(proxy_config(server)) as run:
        for _ in range(3):
            text, source = await motd_text(run.proxy)
            assert "Zzz, join to wake me" in text
            assert source == "managed_state"
        assert run.managed().state is ServerState.SLEEPING
        assert run.managed().process_id is None
        assert not (tmp_path / "infrarust-lobby.log").exists(), "a ping must never start the server"


async def test_one_login_wakes_the_server_and_joins_on_its_one_connection(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port))
    async with running_proxy(proxy_config(server)) as run:
        asleep_at = trio.current_time()
        await join(node, run.proxy, "first_player")
        wake_to_join = trio.current_time() - asleep_at
        managed = run.managed()
        assert managed.state is ServerState.ONLINE
        assert run.refusals() == [], "the player must not be asked to reconnect"
        assert run.sessions_started() == 1
        _text, source = await motd_text(run.proxy)
        assert source in ("backend", "cache"), "an online server's status comes from the server"

        online_at = trio.current_time()
        await join(node, run.proxy, "second_player")
        online_join = trio.current_time() - online_at
        assert starts_logged(managed) == 1
        assert managed.ready_after is not None
        print(
            f"through the proxy: wake_to_join={wake_to_join:.3f}s ready_after={managed.ready_after:.3f}s"
            f" join_when_online={online_join:.3f}s"
        )


async def test_three_logins_at_once_start_it_once(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port))
    async with running_proxy(proxy_config(server)) as run:
        async with trio.open_nursery() as players:
            for name in ("alice", "bob", "carol"):
                players.start_soon(join, node, run.proxy, name)
        assert starts_logged(run.managed()) == 1, "three players must start the server once"
        assert run.refusals() == []
        assert run.sessions_started() == 3


async def test_idle_past_shutdown_after_stops_it(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port), shutdown_after=1.0)
    async with running_proxy(proxy_config(server)) as run:
        await join(node, run.proxy, "visitor")
        managed = run.managed()
        pid = managed.process_id
        assert pid is not None
        await wait_state(managed, ServerState.SLEEPING, 10)
        assert not pid_alive(pid), "the idle server's process must be gone"
        text, source = await motd_text(run.proxy)
        assert source == "managed_state"
        assert "sleeping" in text

        await join(node, run.proxy, "second_visit")  # and it wakes again
        assert starts_logged(managed) == 2


async def test_never_stopped_while_a_player_plays_through_the_proxy(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port), shutdown_after=0.3)
    async with running_proxy(proxy_config(server)) as run:
        managed = run.managed()
        await managed.ensure_started()
        # A raw session held open: the handshake and login start, then the relay keeps it.
        stream = await trio.open_tcp_stream("127.0.0.1", run.proxy.port)
        await stream.send_all(handshake("lobby.test") + login_start("Stayer"))
        with trio.fail_after(5):
            while managed.sessions != 1:
                await trio.sleep(0.02)
        await trio.sleep(1.0)  # three times shutdown_after
        assert managed.state is ServerState.ONLINE
        await stream.aclose()
        await wait_state(managed, ServerState.SLEEPING, 5)


async def test_a_crash_at_start_gives_the_crashed_motd_and_a_clear_message(tmp_path: Path, node: str) -> None:
    script = "console.log('loading world'); console.error('java.lang.OutOfMemoryError'); process.exit(3)"
    server = local_server(tmp_path, free_port(), command="node", args=("-e", script))
    async with running_proxy(proxy_config(server)) as run:
        printed = await refused_login(node, run.proxy, "unlucky")
        assert "exited with code 3" in printed and "OutOfMemoryError" in printed, printed
        await run.seen(infrarust.ConnectionRefused)
        (refusal,) = run.refusals()
        assert refusal.reason == "server_crashed"
        assert refusal.message is not None and "failed to start" in refusal.message
        text, source = await motd_text(run.proxy)
        assert source == "managed_state"
        assert "crashed" in text
        assert run.managed().state is ServerState.CRASHED


async def test_past_start_timeout_the_player_is_told_it_is_starting(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(
        tmp_path,
        port,
        command=node,
        args=minecraft_args(port),
        ready_pattern="never printed",
        start_timeout=1.0,
    )
    async with running_proxy(proxy_config(server)) as run:
        before = trio.current_time()
        printed = await refused_login(node, run.proxy, "early")
        assert 1.0 <= trio.current_time() - before < 10.0
        assert "starting" in printed and "try again" in printed, printed
        await run.seen(infrarust.ConnectionRefused)
        assert [event.reason for event in run.refusals()] == ["server_starting"]
        text, _source = await motd_text(run.proxy)
        assert "starting" in text
        assert run.managed().state is ServerState.STARTING


async def test_proxy_shutdown_leaves_no_orphan(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port))
    async with trio.open_nursery() as nursery:
        proxy: infrarust.Proxy = await nursery.start(infrarust.serve, proxy_config(server))
        await join(node, proxy, "last_player")
        managed = proxy._ondemand.managers.get("lobby")
        assert managed is not None
        pid = managed.process_id
        assert pid is not None and pid_alive(pid)
        await proxy.drain(1.0)  # serve() returns once drained: the nursery closes with it
    assert not pid_alive(pid), "the managed server outlived the proxy"


async def test_a_reload_keeps_the_manager_and_adds_new_managed_servers(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port))
    config = proxy_config(server)
    async with running_proxy(config) as run:
        await join(node, run.proxy, "before_reload")
        managed = run.managed()
        pid = managed.process_id
        retitled = attrs.evolve(server, motd={"sleeping": Motd(text="renamed")})
        other_server = local_server(tmp_path, free_port(), command=node, args=())
        other = attrs.evolve(other_server, name="other", domains=("o.test",))
        await run.proxy.reload(attrs.evolve(config, servers=(retitled, other)))
        assert run.managed() is managed and managed.process_id == pid and pid is not None and pid_alive(pid)
        assert run.managed("other").state is ServerState.SLEEPING
        await run.proxy.reload(attrs.evolve(config, servers=(retitled,)))
        assert run.proxy._ondemand.managers.get("other") is None


# --- the Docker manager through the proxy ------------------------------------------------------------


async def test_docker_managed_container_wakes_and_sleeps_through_the_proxy(
    docker_daemon: DockerDaemon, containers: Containers, node: str
) -> None:
    port = free_port()
    await containers.create("mc-proxy-managed", minecraft_container(port=port))
    manager = ServerManager(
        type=ManagerType.DOCKER, container="mc-proxy-managed", shutdown_after=1.0, shutdown_timeout=5.0
    )
    server = ServerConfig(
        name="lobby", addresses=(Address("127.0.0.1", port),), domains=("lobby.test",), server_manager=manager
    )
    config = proxy_config(server, docker=infrarust.config.Docker(endpoint=docker_daemon.endpoint))
    async with running_proxy(config) as run:
        text, source = await motd_text(run.proxy)
        assert source == "managed_state" and "sleeping" in text
        asleep_at = trio.current_time()
        await join(node, run.proxy, "container_player")
        print(f"docker through the proxy: wake_to_join={trio.current_time() - asleep_at:.3f}s")
        assert (await containers.inspect("mc-proxy-managed"))["State"]["Running"] is True
        assert run.refusals() == []
        await wait_state(run.managed(), ServerState.SLEEPING, 20)
        assert (await containers.inspect("mc-proxy-managed"))["State"]["Running"] is False


# --- servers added from code ---------------------------------------------------------------------------


async def test_add_and_remove_server_from_code(
    tmp_path: Path, node: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = MinecraftServer(node, "1.20.4")
    try:
        await trio.to_thread.run_sync(backend.wait_listening, 20)
        address = Address("127.0.0.1", backend.port)
        files = ServerConfig(name="files", addresses=(address,), domains=("taken.test",))
        config = proxy_config(files)
        async with running_proxy(config) as run:
            added = ServerConfig(name="added", addresses=(address,), domains=("taken.test", "code.test"))
            with caplog.at_level(logging.WARNING):
                await run.proxy.add_server(added)
            await run.seen(infrarust.ConfigReloaded)
            assert all(e.ok for e in run.events if isinstance(e, infrarust.ConfigReloaded))
            routed = {server.name: server.domains for server in run.proxy.config.servers}
            assert routed == {"files": ("taken.test",), "added": ("code.test",)}, "files win a domain"
            assert "files:files" in caplog.text and "code:added" in caplog.text, "both sources logged"
            await join(node, run.proxy, "from_code", host="code.test")

            await run.proxy.reload(attrs.evolve(config, servers=(files,)))  # a reload keeps it
            assert {server.name for server in run.proxy.config.servers} == {"files", "added"}

            assert await run.proxy.remove_server("added") is True
            assert await run.proxy.remove_server("added") is False
            assert {server.name for server in run.proxy.config.servers} == {"files"}
            client = await run_client(
                node, version="1.20.4", port=run.proxy.port, host="code.test", username="gone", message="x"
            )
            assert client.returncode != 0
            await run.seen(infrarust.ConnectionRefused)
            assert run.refusals()[-1].reason == "unknown_domain"
    finally:
        backend.stop()


def test_state_motds_load_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "servers").mkdir()
    main = tmp_path / "infrarust.toml"
    main.write_text("")
    tables = "".join(f"[motd.{state.value}]\ntext = '{state.value}'\n" for state in ServerState)
    (tmp_path / "servers" / "a.toml").write_text(
        'domains = ["a.test"]\naddresses = ["127.0.0.1:1"]\n'
        '[server_manager]\ntype = "local"\ncommand = "true"\n' + tables
    )
    with caplog.at_level(logging.WARNING):
        (server,) = load_config(main).servers
    assert set(server.motd) == {state.value for state in ServerState}
    assert "no answer uses" not in caplog.text
