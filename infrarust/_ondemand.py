"""The proxy's routes from several providers, and its servers on demand: what :class:`~infrarust.Proxy`
calls in a few places of its pipeline.

Routes come from three providers, merged by :func:`~infrarust.providers.merge_servers` in priority order:
the configuration's servers (``servers_dir`` files, or the servers of a configuration built in code), the
servers an embedding program adds with ``proxy.add_server()``, and the Docker provider's containers. Any
provider's change is applied the way a reload is: one new generation for new connections, sessions left
alone, a ``ConfigReloaded`` event. A file reload replaces only the first provider's servers.

Servers with ``[server_manager]`` (from any provider) get a :class:`~infrarust.manager.ManagedServer`,
kept in step with every generation. A login to one is held until it is online (:meth:`OnDemand.wake`); a
status ping to one that is not online gets its state's MOTD (:meth:`OnDemand.state_motd`) and starts
nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import trio

from infrarust import logs
from infrarust.config import Docker, Motd, ProxyConfig, ServerConfig
from infrarust.connection import Refusal
from infrarust.manager import ServerManagers, ServerStartError, ServerState
from infrarust.providers import DockerProvider, merge_servers

if TYPE_CHECKING:
    from infrarust.serverlist import ServerList

log = logs.get_logger(__name__)

DEFAULT_DOCKER_ENDPOINT = "unix:///var/run/docker.sock"


class OnDemand:
    """One proxy's route providers and managed servers.

    ``apply`` is the proxy's coroutine that builds a generation from :meth:`routed` and publishes it; it
    is awaited whenever the code or Docker servers change.
    """

    def __init__(self, config: ProxyConfig, apply: Callable[[], Awaitable[None]]) -> None:
        self.files: tuple[ServerConfig, ...] = config.servers
        self.code: dict[str, ServerConfig] = {}
        self.docker: tuple[ServerConfig, ...] = ()
        self._apply = apply
        endpoint = config.docker.endpoint if config.docker is not None else DEFAULT_DOCKER_ENDPOINT
        self.managers = ServerManagers(endpoint)
        self.provider: DockerProvider | None = None
        self._docker_config: Docker | None = None
        self._docker_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._servers: tuple[ServerConfig, ...] = config.servers
        self._lock = trio.Lock()  # one manager update at a time, in generation order

    # --- routes ------------------------------------------------------------------------------------

    def from_file(self, config: ProxyConfig) -> ProxyConfig:
        """A reloaded configuration: its servers replace the files provider's; the others are kept."""
        self.files = config.servers
        return self.routed(config)

    def routed(self, config: ProxyConfig) -> ProxyConfig:
        """``config`` with the servers of every provider, merged (files win, conflicts logged)."""
        servers = merge_servers(
            [("files", self.files), ("code", tuple(self.code.values())), ("docker", self.docker)]
        )
        return attrs.evolve(config, servers=servers)

    async def add_server(self, server: ServerConfig) -> None:
        """Route ``server`` (replacing an added server of the same name) and apply it."""
        self.code[server.name] = server
        await self._apply()

    async def remove_server(self, name: str) -> bool:
        """Stop routing the added server ``name``; False when no server of that name was added."""
        if self.code.pop(name, None) is None:
            return False
        await self._apply()
        return True

    async def _docker_changed(self, servers: tuple[ServerConfig, ...]) -> None:
        self.docker = servers
        await self._apply()

    # --- following the generations -----------------------------------------------------------------

    async def follow(self, config: ProxyConfig, serverlist: ServerList) -> None:
        """A new generation is in use: its server list answers the managed states, the managers and the
        Docker provider follow its configuration."""
        serverlist.managed_motd = self.state_motd
        self._servers = config.servers
        if self._nursery is None:  # not running yet: run() starts from the latest servers
            return
        async with self._lock:
            await self.managers.update(self._servers)
        if config.docker != self._docker_config:
            self._start_docker(config.docker)

    def _start_docker(self, docker: Docker | None) -> None:
        assert self._nursery is not None
        if self._docker_scope is not None:
            self._docker_scope.cancel()
            self._docker_scope = None
            self.provider = None
            if self.docker:
                log.info("docker provider stopped", servers=len(self.docker))
                self.docker = ()
                self._nursery.start_soon(self._apply)
        self._docker_config = docker
        if docker is None:
            return
        self.provider = DockerProvider(docker, self._docker_changed)
        self._docker_scope = trio.CancelScope()
        self._nursery.start_soon(_run_in_scope, self.provider.run, self._docker_scope)

    async def run(
        self, docker: Docker | None, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the managed servers and the Docker provider until cancelled; cancelling stops the managed
        local processes (SIGTERM, then SIGKILL after ``shutdown_timeout``): no process outlives the proxy.

        Reports started once the managers run and the provider has listed the containers once (or failed
        to reach the daemon: the proxy never waits for Docker).
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.managers.run, self._servers)
            self._nursery = nursery
            if docker is not None:
                self._docker_config = docker
                self.provider = DockerProvider(docker, self._docker_changed)
                self._docker_scope = trio.CancelScope()
                await nursery.start(_run_in_scope, self.provider.run, self._docker_scope)
            task_status.started()
            await trio.sleep_forever()

    # --- the pipeline's calls ----------------------------------------------------------------------

    async def wake(self, server: ServerConfig) -> Refusal | None:
        """Before connecting a login: hold it until a managed server is online (starting it if asleep).

        ``None`` for a server without ``[server_manager]`` or once it is online; else the refusal the
        player is told (still starting past ``start_timeout``, or crashed).
        """
        managed = self.managers.get(server.name)
        if managed is None:
            return None
        if managed.state is ServerState.ONLINE:
            return None
        started = trio.current_time()
        try:
            await managed.ensure_started()
        except ServerStartError as exc:
            state = managed.state.value
            if managed.state is ServerState.CRASHED:
                return Refusal("server_crashed", str(exc), {"state": state})
            return Refusal("server_starting", str(exc), {"state": state})
        log.info("login held until ready", server=server.name, held=f"{trio.current_time() - started:.3f}s")
        return None

    def state_motd(self, server: ServerConfig) -> Motd | None:
        """The MOTD a status ping to ``server`` gets instead of the backend's: its state's while it is a
        managed server that is not online, else ``None``. Never starts anything."""
        managed = self.managers.get(server.name)
        if managed is None or managed.state is ServerState.ONLINE:
            return None
        return managed.status_motd()

    def session_started(self, server: ServerConfig) -> None:
        """A session to ``server`` began relaying (its idle clock stops).

        Counted per proxy process; with ``[cluster]`` an idle stop also waits for the fleet's other proxies
        to have no player on it (``ServerManagers.players_elsewhere``).
        """
        managed = self.managers.get(server.name)
        if managed is not None:
            managed.session_started()

    def session_ended(self, server: ServerConfig) -> None:
        """A session to ``server`` ended (the last one starts its idle clock)."""
        managed = self.managers.get(server.name)
        if managed is not None:
            managed.session_ended()


async def _run_in_scope(
    run: Callable[..., Awaitable[None]],
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await run(task_status=task_status)
