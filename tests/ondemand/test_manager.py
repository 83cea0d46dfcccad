"""Servers on demand: a real Minecraft server (the tests' minecraft-protocol one) as a local process or a
container, woken by real clients and put to sleep when idle.

``holding_front`` does for these tests what the proxy's login path does once wired: it accepts the
player's connection, holds it with ``await managed.ensure_started()``, then connects to the backend and
relays bytes, reporting the session. The client connects once; it joins without reconnecting.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio
from e2e.harness import E2E_DIR, ClientRun, run_client

import infrarust.manager as manager_module
from infrarust.config import Address, ManagerType, Motd, ServerConfig, ServerManager
from infrarust.dockerengine import DockerEngine
from infrarust.manager import ManagedServer, ServerManagers, ServerStartError, ServerState, state_motd

from ._daemon import Containers, DockerDaemon, free_port, minecraft_container

READY = r'"event":"listening"'  # mc_server.js prints it once its port is open


def local_server(
    tmp_path: Path,
    port: int,
    *,
    command: str,
    args: tuple[str, ...],
    ready_pattern: str = READY,
    start_timeout: float = 30.0,
    shutdown_after: float | None = None,
    motd: dict[str, Motd] | None = None,
) -> ServerConfig:
    manager = ServerManager(
        type=ManagerType.LOCAL,
        command=command,
        args=args,
        working_dir=tmp_path,
        ready_pattern=ready_pattern,
        start_timeout=start_timeout,
        shutdown_after=shutdown_after,
        shutdown_timeout=5.0,
    )
    return ServerConfig(
        name="lobby",
        addresses=(Address("127.0.0.1", port),),
        domains=("lobby.test",),
        server_manager=manager,
        motd=motd or {},
    )


def minecraft_args(port: int) -> tuple[str, ...]:
    return (str(E2E_DIR / "mc_server.js"), "--version", "1.20.4", "--port", str(port), "--lifetime", "300")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_state(managed: ManagedServer, state: ServerState, timeout: float) -> None:
    with trio.fail_after(timeout):
        while managed.state is not state:
            await trio.sleep(0.05)


def starts_logged(managed: ManagedServer) -> int:
    assert managed.log_path is not None
    return managed.log_path.read_text(errors="replace").count("--- infrarust: starting")


@asynccontextmanager
async def running(managed: ManagedServer) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        await nursery.start(managed.run)
        yield nursery
        nursery.cancel_scope.cancel()


async def _relay(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    try:
        async for chunk in source:
            await sink.send_all(chunk)
        await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


class Front:
    """The holding front's port and how many client connections it accepted."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0


@asynccontextmanager
async def holding_front(managed: ManagedServer) -> AsyncIterator[Front]:
    """A loopback listener that holds each connection until the managed server is up."""
    front = Front()

    async def handle(client: trio.SocketStream) -> None:
        front.accepted += 1
        try:
            await managed.ensure_started()
            address = managed.server.addresses[0]
            backend = await trio.open_tcp_stream(address.host, address.port)
        except (ServerStartError, OSError):
            await client.aclose()
            return
        managed.session_started()
        try:
            async with backend, client, trio.open_nursery() as relay:
                relay.start_soon(_relay, client, backend)
                relay.start_soon(_relay, backend, client)
        finally:
            managed.session_ended()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        front.port = listeners[0].socket.getsockname()[1]
        yield front
        nursery.cancel_scope.cancel()


async def join(node: str, port: int, username: str) -> ClientRun:
    client = await run_client(
        node,
        version="1.20.4",
        port=port,
        host="lobby.test",
        username=username,
        message="hi",
        give_up_after=25,
    )
    assert client.returncode == 0, client.describe()
    client.event("joined")
    return client


async def test_sleeping_server_answers_its_state_motd_and_does_not_start(tmp_path: Path) -> None:
    port = free_port()
    motd = {"sleeping": Motd(text="Zzz, join to wake me", version_name="asleep")}
    server = local_server(tmp_path, port, command="node", args=minecraft_args(port), motd=motd)
    managed = ManagedServer(server)
    async with running(managed):
        assert managed.state is ServerState.SLEEPING
        assert managed.status_motd() == Motd(text="Zzz, join to wake me", version_name="asleep")
        await trio.sleep(0.3)  # nothing starts by itself
        assert managed.state is ServerState.SLEEPING
        assert managed.process_id is None
    assert (
        state_motd(server, ServerState.STARTING).text
        == "This server is starting. It will be ready in a moment."
    )


async def test_three_players_at_once_start_it_once_and_join_on_their_first_connection(
    tmp_path: Path, node: str
) -> None:
    port = free_port()
    managed = ManagedServer(local_server(tmp_path, port, command=node, args=minecraft_args(port)))
    async with running(managed), holding_front(managed) as front:
        started = trio.current_time()
        results: dict[str, ClientRun] = {}

        async def player(name: str) -> None:
            results[name] = await join(node, front.port, name)

        async with trio.open_nursery() as players:
            for name in ("alice", "bob", "carol"):
                players.start_soon(player, name)
        wake_to_join = trio.current_time() - started
        assert set(results) == {"alice", "bob", "carol"}
        assert managed.state is ServerState.ONLINE
        assert starts_logged(managed) == 1, "three players must start the server once"
        assert front.accepted == 3, "each player connects once: held, never asked to reconnect"
        assert managed.ready_after is not None
        # Recorded for the report: process launch to ready, and first connect to three players joined.
        print(f"ready_after={managed.ready_after:.3f}s three_joined_after={wake_to_join:.3f}s")


async def test_one_player_wakes_a_sleeping_server_on_one_connection(tmp_path: Path, node: str) -> None:
    port = free_port()
    managed = ManagedServer(local_server(tmp_path, port, command=node, args=minecraft_args(port)))
    async with running(managed), holding_front(managed) as front:
        asleep_at = trio.current_time()
        await join(node, front.port, "first_player")
        wake_to_join = trio.current_time() - asleep_at
        # The same client run, against the server now online: what the wake itself costs.
        online_at = trio.current_time()
        await join(node, front.port, "second_player")
        online_join = trio.current_time() - online_at
        assert front.accepted == 2
        assert starts_logged(managed) == 1
        print(f"wake_to_join={wake_to_join:.3f}s join_when_online={online_join:.3f}s")


async def test_idle_server_is_stopped_and_woken_again(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port), shutdown_after=1.0)
    managed = ManagedServer(server)
    async with running(managed), holding_front(managed) as front:
        await join(node, front.port, "visitor")
        pid = managed.process_id
        assert pid is not None
        assert managed.sessions == 0  # the client left at the end of its run
        await wait_state(managed, ServerState.SLEEPING, 10)
        assert not pid_alive(pid), "the idle server's process must be gone"
        assert managed.status_motd().text == "This server is sleeping. Join to wake it up!"

        await join(node, front.port, "second_visit")
        assert starts_logged(managed) == 2
        assert managed.process_id != pid


async def test_never_stopped_while_a_player_is_connected(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port), shutdown_after=0.3)
    managed = ManagedServer(server)
    async with running(managed):
        await managed.ensure_started()
        managed.session_started()
        await trio.sleep(1.0)  # three times shutdown_after
        assert managed.state is ServerState.ONLINE
        managed.session_ended()
        await wait_state(managed, ServerState.SLEEPING, 5)


async def test_never_stopped_while_the_fleet_has_players_on_it_elsewhere(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port), shutdown_after=0.3)
    managed = ManagedServer(server)
    elsewhere = [2]  # players on this server through the fleet's other proxies ([cluster])
    managed.players_elsewhere = lambda: elsewhere[0]
    async with running(managed):
        await managed.ensure_started()
        await trio.sleep(1.0)  # idle here for three times shutdown_after
        assert managed.state is ServerState.ONLINE
        elsewhere[0] = 0  # the other proxies' players left
        await wait_state(managed, ServerState.SLEEPING, 5)


async def test_server_crashing_at_start_is_crashed_with_a_clear_message(tmp_path: Path) -> None:
    script = "console.log('loading world'); console.error('java.lang.OutOfMemoryError'); process.exit(3)"
    server = local_server(tmp_path, free_port(), command="node", args=("-e", script))
    managed = ManagedServer(server)
    async with running(managed):
        with pytest.raises(ServerStartError) as first:
            await managed.ensure_started()
        message = str(first.value)
        assert "exited with code 3" in message
        assert "OutOfMemoryError" in message
        assert managed.state is ServerState.CRASHED
        assert managed.status_motd().text == "This server has crashed. Join to try starting it again."
        # Within the back-off a login is refused at once, without starting it again.
        with pytest.raises(ServerStartError, match="Try again in"):
            await managed.ensure_started()
        assert starts_logged(managed) == 1
    assert managed.log_path is not None
    assert "loading world" in managed.log_path.read_text()


async def test_a_crashed_server_is_tried_again_after_a_growing_back_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manager_module, "CRASH_BACKOFF_FIRST", 0.5)
    server = local_server(tmp_path, free_port(), command="node", args=("-e", "process.exit(1)"))
    managed = ManagedServer(server)
    async with running(managed):
        with pytest.raises(ServerStartError, match="exited with code 1"):
            await managed.ensure_started()
        await trio.sleep(0.6)  # past the first back-off: the next login starts it again
        with pytest.raises(ServerStartError, match="exited with code 1"):
            await managed.ensure_started()
        assert starts_logged(managed) == 2
        await trio.sleep(0.6)  # the second back-off is twice as long (1 s): still refused at once
        with pytest.raises(ServerStartError, match=r"Try again in 1 second\.$"):
            await managed.ensure_started()
        assert starts_logged(managed) == 2


async def test_command_that_cannot_run_is_crashed(tmp_path: Path) -> None:
    server = local_server(tmp_path, free_port(), command=str(tmp_path / "no-such-server"), args=())
    managed = ManagedServer(server)
    async with running(managed):
        with pytest.raises(ServerStartError, match="cannot run"):
            await managed.ensure_started()
        assert managed.state is ServerState.CRASHED


async def test_past_start_timeout_the_player_is_told_to_retry_and_the_start_goes_on(
    tmp_path: Path, node: str
) -> None:
    port = free_port()
    # A ready line that never comes: the server runs but is never declared ready.
    server = local_server(
        tmp_path,
        port,
        command=node,
        args=minecraft_args(port),
        ready_pattern="never printed",
        start_timeout=0.5,
    )
    managed = ManagedServer(server)
    async with running(managed):
        before = trio.current_time()
        with pytest.raises(ServerStartError, match="starting"):
            await managed.ensure_started()
        assert 0.5 <= trio.current_time() - before < 2.0
        assert managed.state is ServerState.STARTING
        assert managed.process_id is not None and pid_alive(managed.process_id)


async def test_proxy_shutdown_stops_the_process_and_its_children(tmp_path: Path, node: str) -> None:
    port = free_port()
    shell = shutil.which("sh") or "/bin/sh"
    # A wrapper script, as operators write them: the shell stays, the Minecraft server is its child.
    wrapper = f"{node} {E2E_DIR / 'mc_server.js'} --version 1.20.4 --port {port} --lifetime 300; echo ended"
    managed = ManagedServer(local_server(tmp_path, port, command=shell, args=("-c", wrapper)))
    async with running(managed):
        await managed.ensure_started()
        shell_pid = managed.process_id
        assert shell_pid is not None
        children_file = trio.Path(f"/proc/{shell_pid}/task/{shell_pid}/children")
        children = (await children_file.read_text()).split()
        assert len(children) == 1
        server_pid = int(children[0])
    # `running` cancelled the manager: what a proxy shutdown does.
    assert not pid_alive(shell_pid)
    assert not pid_alive(server_pid), "the wrapper's child outlived the proxy"


@pytest.mark.skipif(sys.platform != "linux", reason="containers need Linux")
async def test_docker_managed_container_wakes_and_sleeps(
    docker_daemon: DockerDaemon, containers: Containers, node: str
) -> None:
    port = free_port()
    await containers.create("mc-managed", minecraft_container(port=port))
    manager = ServerManager(
        type=ManagerType.DOCKER, container="mc-managed", shutdown_after=1.0, shutdown_timeout=5.0
    )
    server = ServerConfig(
        name="lobby", addresses=(Address("127.0.0.1", port),), domains=("lobby.test",), server_manager=manager
    )
    async with DockerEngine(docker_daemon.endpoint) as engine:
        managed = ManagedServer(server, engine=engine)
        async with running(managed), holding_front(managed) as front:
            assert managed.state is ServerState.SLEEPING
            await join(node, front.port, "container_player")
            assert (await containers.inspect("mc-managed"))["State"]["Running"] is True
            assert managed.ready_after is not None
            print(f"docker ready_after={managed.ready_after:.3f}s")
            await wait_state(managed, ServerState.SLEEPING, 20)
            assert (await containers.inspect("mc-managed"))["State"]["Running"] is False


async def test_docker_managed_container_ready_by_health_check_and_adopted_when_running(
    docker_daemon: DockerDaemon, containers: Containers
) -> None:
    port = free_port()
    await containers.run("mc-healthy", minecraft_container(port=port, healthcheck=True))
    manager = ServerManager(type=ManagerType.DOCKER, container="mc-healthy")
    server = ServerConfig(
        name="healthy", addresses=(Address("127.0.0.1", port),), domains=("h.test",), server_manager=manager
    )
    async with DockerEngine(docker_daemon.endpoint) as engine:
        managed = ManagedServer(server, engine=engine)
        async with running(managed):
            # Already running when the proxy starts: adopted, online once the health check passes.
            with trio.fail_after(20):
                await managed.ensure_started(hold_for=20)
            inspected = await containers.inspect("mc-healthy")
            assert inspected["State"]["Health"]["Status"] == "healthy"
        # The container belongs to Docker: a proxy shutdown leaves it running.
        assert (await containers.inspect("mc-healthy"))["State"]["Running"] is True


async def test_docker_managed_missing_container_is_crashed(docker_daemon: DockerDaemon) -> None:
    manager = ServerManager(type=ManagerType.DOCKER, container="does-not-exist")
    server = ServerConfig(
        name="ghost",
        addresses=(Address("127.0.0.1", free_port()),),
        domains=("g.test",),
        server_manager=manager,
    )
    async with DockerEngine(docker_daemon.endpoint) as engine:
        managed = ManagedServer(server, engine=engine)
        async with running(managed):
            with pytest.raises(ServerStartError, match="no container named 'does-not-exist'"):
                await managed.ensure_started()
            assert managed.state is ServerState.CRASHED


async def test_managers_follow_a_reload_and_stop_removed_servers(tmp_path: Path, node: str) -> None:
    port = free_port()
    server = local_server(tmp_path, port, command=node, args=minecraft_args(port))
    plain = ServerConfig(name="plain", addresses=(Address("127.0.0.1", 1),), domains=("plain.test",))
    managers = ServerManagers()
    async with trio.open_nursery() as nursery:
        await nursery.start(managers.run, [server, plain])
        assert managers.get("plain") is None
        managed = managers.get("lobby")
        assert managed is not None
        await managed.ensure_started()
        pid = managed.process_id
        assert pid is not None

        # Only the MOTD changed: the same running server keeps going, with the new table.
        retitled = attrs.evolve(server, motd={"sleeping": Motd(text="new text")})
        await managers.update([retitled, plain])
        assert managers.get("lobby") is managed
        assert managed.server.motd["sleeping"].text == "new text"
        assert pid_alive(pid)

        await managers.update([plain])
        assert managers.get("lobby") is None
        with trio.fail_after(10):
            while pid_alive(pid):
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
