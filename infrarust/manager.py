"""Servers on demand (``[server_manager]``): started when a player arrives, stopped when nobody plays.

Each managed server is one :class:`ManagedServer` with one state (:class:`ServerState`, Infrarust's names)
changed in one place, :meth:`ManagedServer._set`. The proxy asks three things of it:

- on login, ``await managed.ensure_started()`` before connecting: it returns once the server is ready
  (many players arriving together start it once) or raises :class:`ServerStartError` whose message is
  the Login Disconnect text;
- ``session_started()`` / ``session_ended()`` around every relayed session, which drive idle stops;
- on a status ping, :func:`state_motd` for any state but ``online`` (a ping never starts a server).

A ``local`` server is a child process in its own process group (so a wrapper script's children go with
it), its output appended to ``infrarust-<name>.log`` in its working directory; the proxy stops it on
shutdown with SIGTERM, then SIGKILL after ``shutdown_timeout``. A ``docker`` server is a container started
and stopped through the Engine API; the container outlives the proxy, which adopts it at the next start.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import math
import os
import re
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import trio

from infrarust._logfmt import quote
from infrarust.config import ManagerType, Motd, ServerConfig, ServerManager
from infrarust.dockerengine import DockerEngine, DockerError
from infrarust.ping import PingError, ping

logger = logging.getLogger(__name__)

# A vanilla client gives up on a login that stays silent for 30 s; a held login must end before that.
CLIENT_HOLD_LIMIT = 25.0
# After a crash the server is not started again before this back-off, doubled per crash in a row.
CRASH_BACKOFF_FIRST = 5.0
CRASH_BACKOFF_MAX = 300.0
# How often a docker server is inspected while starting (for readiness) and while up (to see it exit).
DOCKER_POLL_STARTING = 0.25
DOCKER_POLL_ONLINE = 2.0
STATUS_PROBE_TIMEOUT = 2.0
GROUP_EXIT_WAIT = 2.0  # seconds to see a killed process group's last members reaped
MAX_OUTPUT_LINE = 64 * 1024  # bytes kept of one output line when looking for the ready pattern


class ServerState(enum.Enum):
    """Where a managed server is in its life; the value names its ``[motd.<state>]`` table."""

    SLEEPING = "sleeping"  # stopped on purpose (or never started): the next login starts it
    STARTING = "starting"  # launched, not ready yet
    ONLINE = "online"  # ready: logins connect, status pings are relayed to it
    STOPPING = "stopping"  # being stopped on purpose (idle)
    CRASHED = "crashed"  # exited on its own: started again only when a player asks, after a back-off


DEFAULT_STATE_TEXT = {
    ServerState.SLEEPING: "This server is sleeping. Join to wake it up!",
    ServerState.STARTING: "This server is starting. It will be ready in a moment.",
    ServerState.ONLINE: "This server is online.",
    ServerState.STOPPING: "This server is stopping. Join again in a moment to wake it up.",
    ServerState.CRASHED: "This server has crashed. Join to try starting it again.",
}


def state_motd(server: ServerConfig, state: ServerState) -> Motd:
    """The MOTD a status ping gets while the server is in ``state``: ``[motd.<state>]`` or a built-in text."""
    motd = server.motd.get(state.value)
    if motd is not None and motd.text is not None:
        return motd
    base = motd or Motd()
    return Motd(
        text=DEFAULT_STATE_TEXT[state],
        favicon=base.favicon,
        version_name=base.version_name,
        max_players=base.max_players,
    )


class ServerStartError(Exception):
    """The server is not ready for this login; ``str(exc)`` is the message shown to the player."""


class _Writer(Protocol):
    async def write(self, data: bytes | bytearray) -> int: ...


class _LaunchFailed(Exception):
    """The server could not even be launched (command not found, no such container)."""


class _Runner(Protocol):
    async def is_running(self) -> bool:
        """Whether the server already runs (a container left by an earlier proxy run)."""

    async def run(self, ready: Callable[[], None]) -> str:
        """Launch and run until the server ends on its own, calling ``ready()`` once; how it ended."""

    async def stop(self) -> None:
        """Stop it on purpose; :meth:`run` then returns."""


def _working_dir(server: ServerConfig, manager: ServerManager) -> Path:
    """``working_dir``, relative to the server file's folder (like every path in the configuration)."""
    base = server.source.parent if server.source is not None else Path.cwd()
    return (base / manager.working_dir).resolve() if manager.working_dir is not None else base.resolve()


class _LocalRunner:
    """A child process in its own process group, output appended to a log file."""

    def __init__(self, server: ServerConfig, manager: ServerManager) -> None:
        assert manager.command is not None
        self.name = server.name
        self.argv = [manager.command, *manager.args]
        self.cwd = _working_dir(server, manager)
        self.log_path = self.cwd / f"infrarust-{server.name}.log"
        self.ready_pattern = re.compile(manager.ready_pattern)
        self.shutdown_timeout = manager.shutdown_timeout
        self.process: trio.Process | None = None

    async def is_running(self) -> bool:
        return False  # a process of an earlier proxy run is not ours to adopt

    async def run(self, ready: Callable[[], None]) -> str:
        try:
            # Unbuffered: operators tail the log while the server starts.
            log = await trio.open_file(self.log_path, "ab", buffering=0)
        except OSError as exc:
            raise _LaunchFailed(f"cannot open the log file {self.log_path}: {exc.strerror}") from None
        try:
            await log.write(f"--- infrarust: starting {' '.join(self.argv)} in {self.cwd}\n".encode())
            try:
                process = await trio.lowlevel.open_process(
                    self.argv,
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise _LaunchFailed(f"cannot run {self.argv[0]!r}: {exc.strerror or exc}") from None
            self.process = process
            logger.info("server process started server=%s pid=%d", self.name, process.pid)
            try:
                last_line = await self._pump(process, log, ready)
                code = await process.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await self._terminate(process)
            ending = f"exited with code {code}"
            return f"{ending}; last output: {last_line}" if last_line else ending
        finally:
            with trio.CancelScope(shield=True):
                await log.aclose()

    async def _pump(self, process: trio.Process, log: _Writer, ready: Callable[[], None]) -> str:
        """Copy the output to the log until it closes, watching for the ready pattern; the last line."""
        assert process.stdout is not None
        pending = b""
        last_line = ""
        is_ready = False
        async for chunk in process.stdout:
            await log.write(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_OUTPUT_LINE:
                lines.append(pending)
                pending = b""
            for raw in lines:
                text = raw.decode("utf-8", "replace").rstrip("\r")
                if text.strip():
                    last_line = text[:200]
                if not is_ready and self.ready_pattern.search(text):
                    is_ready = True
                    ready()
        return last_line

    async def stop(self) -> None:
        if self.process is not None:
            await self._terminate(self.process)

    async def _terminate(self, process: trio.Process) -> None:
        """SIGTERM to the process group, SIGKILL after ``shutdown_timeout``; leaves no member behind."""
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            with trio.move_on_after(self.shutdown_timeout):
                await process.wait()
            if process.returncode is None:
                logger.warning(
                    "server process killed server=%s pid=%d after=%ss",
                    self.name,
                    process.pid,
                    self.shutdown_timeout,
                )
        # Members of the group that outlived its leader (a wrapper script's java) go too. They are not our
        # children, so we cannot wait for them: watch the group empty out instead (bounded).
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()
        with trio.move_on_after(GROUP_EXIT_WAIT):
            while _group_exists(process.pid):  # noqa: ASYNC110 (no event tells when a non-child is reaped)
                await trio.sleep(0.02)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    # ProcessLookupError: the group is already empty.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class _DockerRunner:
    """A named container, started and stopped through the Engine API."""

    def __init__(self, server: ServerConfig, manager: ServerManager, engine: DockerEngine) -> None:
        assert manager.container is not None
        self.name = server.name
        self.container = manager.container
        self.engine = engine
        self.probe = server.addresses[0] if server.addresses else None
        self.shutdown_timeout = manager.shutdown_timeout

    async def is_running(self) -> bool:
        try:
            info = await self.engine.inspect(self.container)
        except DockerError as exc:
            logger.warning("server container unknown server=%s error=%s", self.name, quote(str(exc)))
            return False
        return bool(info and (info.get("State") or {}).get("Running"))

    async def run(self, ready: Callable[[], None]) -> str:
        try:
            info = await self.engine.inspect(self.container)
            if info is None:
                raise _LaunchFailed(f"there is no container named {self.container!r}")
            if not (info.get("State") or {}).get("Running"):
                await self.engine.start(self.container)
        except DockerError as exc:
            raise _LaunchFailed(f"cannot start container {self.container!r}: {exc}") from None
        is_ready = False
        while True:
            await trio.sleep(DOCKER_POLL_ONLINE if is_ready else DOCKER_POLL_STARTING)
            try:
                info = await self.engine.inspect(self.container)
            except DockerError as exc:
                # The daemon may be restarting; the container's fate is unknown, so keep asking.
                logger.warning("server container unreachable server=%s error=%s", self.name, quote(str(exc)))
                continue
            if info is None:
                return f"container {self.container!r} was removed"
            state = info.get("State") or {}
            if not state.get("Running"):
                return f"container {self.container!r} exited with code {state.get('ExitCode')}"
            if not is_ready and await self._is_ready(state):
                is_ready = True
                ready()

    async def _is_ready(self, state: dict[str, object]) -> bool:
        """Healthy when the image has a health check; else when the server answers a status ping."""
        health = state.get("Health")
        if isinstance(health, dict) and health.get("Status"):
            return bool(health["Status"] == "healthy")
        if self.probe is None:
            return True
        with trio.move_on_after(STATUS_PROBE_TIMEOUT):
            try:
                await ping(self.probe.host, self.probe.port)
            except (PingError, OSError):
                return False
            return True
        return False

    async def stop(self) -> None:
        try:
            await self.engine.stop(self.container, self.shutdown_timeout)
        except DockerError as exc:
            logger.warning("server container stop failed server=%s error=%s", self.name, quote(str(exc)))


class ManagedServer:
    """One ``[server_manager]`` server: its state machine, its idle timer and its process or container.

    Start :meth:`run` in a nursery (``await nursery.start(managed.run)``); cancelling it stops a local
    process (SIGTERM, then SIGKILL) and leaves a container running.
    """

    def __init__(self, server: ServerConfig, *, engine: DockerEngine | None = None) -> None:
        manager = server.server_manager
        if manager is None:
            raise ValueError(f"server {server.name!r} has no [server_manager]")
        self.server = server
        self.config = manager
        self._runner: _Runner
        if manager.type is ManagerType.LOCAL:
            self._runner = _LocalRunner(server, manager)
        else:
            if engine is None:
                raise ValueError(
                    f"server {server.name!r} is managed by Docker, but no Docker engine was given"
                )
            self._runner = _DockerRunner(server, manager, engine)
        self._state = ServerState.SLEEPING
        self._changed = trio.Event()
        self._sessions = 0
        self._holds = 0
        self._idle_since: float | None = None
        self._crashes = 0
        self._retry_at = 0.0
        self._launched_at = 0.0
        self._stop_requested = False
        self._nursery: trio.Nursery | None = None
        self.last_error: str | None = None
        self.ready_after: float | None = None  # seconds from launch to ready, for the last start
        # Players on this server through the other proxies of a fleet ([cluster]); an idle stop waits for
        # them too. None: this proxy is alone.
        self.players_elsewhere: Callable[[], int] | None = None

    @property
    def state(self) -> ServerState:
        """The current state."""
        return self._state

    @property
    def sessions(self) -> int:
        """Relayed sessions the proxy reported as running."""
        return self._sessions

    @property
    def process_id(self) -> int | None:
        """The PID of a local server's process (the last one started), else ``None``."""
        if isinstance(self._runner, _LocalRunner) and self._runner.process is not None:
            return self._runner.process.pid
        return None

    @property
    def log_path(self) -> Path | None:
        """Where a local server's output goes."""
        return self._runner.log_path if isinstance(self._runner, _LocalRunner) else None

    def status_motd(self) -> Motd:
        """The MOTD for a status ping in the current state (call it for any state but ``online``)."""
        return state_motd(self.server, self._state)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the server until cancelled: adopt it if it already runs, watch for idleness."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if await self._runner.is_running():
                self._launch()
            nursery.start_soon(self._idle_watch)
            task_status.started()
            await trio.sleep_forever()

    async def ensure_started(self, hold_for: float | None = None) -> None:
        """Return once the server is online, starting it if it sleeps; one start for any number of callers.

        Waits at most ``hold_for`` seconds (default: ``start_timeout``, capped at :data:`CLIENT_HOLD_LIMIT`
        so the held client never times out first), then raises :class:`ServerStartError`; the start goes on. A
        server that crashed raises at once until its back-off is over. While a caller waits, the server is
        never stopped for being idle.
        """
        limit = min(self.config.start_timeout, CLIENT_HOLD_LIMIT) if hold_for is None else hold_for
        self._holds += 1
        self._activity()
        try:
            with trio.move_on_after(limit):
                while True:
                    state = self._state
                    if state is ServerState.ONLINE:
                        return
                    if state is ServerState.SLEEPING:
                        self._launch()
                    elif state is ServerState.CRASHED:
                        wait = self._retry_at - trio.current_time()
                        if wait > 0:
                            seconds = math.ceil(wait)
                            raise ServerStartError(
                                f"The server failed to start ({self.last_error}). Try again in"
                                f" {seconds} second{'' if seconds == 1 else 's'}."
                            )
                        self._launch()
                    await self._changed.wait()
            raise ServerStartError("The server is starting. Please try again in a moment.")
        finally:
            self._holds -= 1
            self._activity()

    def session_started(self) -> None:
        """The proxy began relaying a session to this server."""
        self._sessions += 1
        self._activity()

    def session_ended(self) -> None:
        """A session to this server ended."""
        self._sessions = max(0, self._sessions - 1)
        self._activity()

    async def stop(self) -> None:
        """Stop the server on purpose (it goes to ``sleeping``); nothing happens unless it runs."""
        if self._state not in (ServerState.STARTING, ServerState.ONLINE):
            return
        self._stop_requested = True
        self._set(ServerState.STOPPING)
        await self._runner.stop()
        with trio.move_on_after(self.config.shutdown_timeout + 15):
            while self.state is ServerState.STOPPING:
                await self._changed.wait()

    # -- internals: every state change goes through _set ----------------------------------------

    def _set(self, state: ServerState) -> None:
        if state is self._state:
            return
        logger.info(
            "server state server=%s state=%s previous=%s", self.server.name, state.value, self._state.value
        )
        self._state = state
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _activity(self) -> None:
        """Players or held logins changed: restart or stop the idle clock."""
        idle = self._sessions == 0 and self._holds == 0
        self._idle_since = trio.current_time() if idle else None
        self._notify()

    def _launch(self) -> None:
        if self._nursery is None:
            raise RuntimeError("ManagedServer.run() must be running before the server can be started")
        self._stop_requested = False
        self._launched_at = trio.current_time()
        self._set(ServerState.STARTING)
        self._activity()
        self._nursery.start_soon(self._lifecycle)

    def _on_ready(self) -> None:
        if self._state is not ServerState.STARTING:
            return
        self.ready_after = trio.current_time() - self._launched_at
        self._crashes = 0
        logger.info("server ready server=%s after=%.3fs", self.server.name, self.ready_after)
        self._set(ServerState.ONLINE)
        self._activity()

    async def _lifecycle(self) -> None:
        try:
            ending = await self._runner.run(self._on_ready)
        except _LaunchFailed as exc:
            ending = str(exc)
        if self._stop_requested:
            self._crashes = 0
            logger.info("server stopped server=%s", self.server.name)
            self._set(ServerState.SLEEPING)
            return
        self._crashes += 1
        backoff = min(CRASH_BACKOFF_FIRST * 2 ** (self._crashes - 1), CRASH_BACKOFF_MAX)
        self._retry_at = trio.current_time() + backoff
        self.last_error = ending
        logger.warning(
            "server crashed server=%s error=%s retry_after=%gs", self.server.name, quote(ending), backoff
        )
        self._set(ServerState.CRASHED)

    async def _idle_watch(self) -> None:
        after = self.config.shutdown_after
        if after is None:
            return
        while True:
            idle_since = self._idle_since
            if self._state in (ServerState.STARTING, ServerState.ONLINE) and idle_since is not None:
                deadline = idle_since + after
                if trio.current_time() >= deadline:
                    elsewhere = self.players_elsewhere() if self.players_elsewhere is not None else 0
                    if elsewhere > 0:  # idle here, but the fleet's other proxies have players on it
                        self._idle_since = trio.current_time()
                        continue
                    logger.info("server idle server=%s idle_for=%gs", self.server.name, after)
                    await self.stop()
                    continue
                with trio.move_on_at(deadline):
                    await self._changed.wait()
            else:
                await self._changed.wait()


class ServerManagers:
    """The managed servers of one proxy, by server name; kept in step with reloads by :meth:`update`."""

    def __init__(self, docker_endpoint: str = "unix:///var/run/docker.sock") -> None:
        self.docker_endpoint = docker_endpoint
        # With a fleet: the players a server has through the other proxies (see ManagedServer).
        self.players_elsewhere: Callable[[str], int] | None = None
        self._managed: dict[str, tuple[ManagedServer, trio.CancelScope]] = {}
        self._nursery: trio.Nursery | None = None
        self._engine: DockerEngine | None = None

    def get(self, name: str) -> ManagedServer | None:
        """The managed server of that name, or ``None`` when it has no ``[server_manager]``."""
        entry = self._managed.get(name)
        return entry[0] if entry is not None else None

    async def run(
        self,
        servers: Sequence[ServerConfig],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run every managed server until cancelled (which stops the local processes)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._apply(servers)
                task_status.started()
                await trio.sleep_forever()
        finally:
            if self._engine is not None:
                with trio.CancelScope(shield=True):
                    await self._engine.aclose()

    async def update(self, servers: Sequence[ServerConfig]) -> None:
        """Follow a reload: new managed servers start sleeping, removed or changed ones are stopped."""
        await self._apply(servers)

    async def _apply(self, servers: Sequence[ServerConfig]) -> None:
        assert self._nursery is not None, "ServerManagers.run() is not running"
        wanted = {server.name: server for server in servers if server.server_manager is not None}
        for name, (managed, scope) in list(self._managed.items()):
            server = wanted.get(name)
            if server is not None and _same_backend(managed.server, server):
                managed.server = server  # MOTDs and other keys apply at once
                continue
            del self._managed[name]
            scope.cancel()  # stops its process through ManagedServer.run's cancellation
        for name, server in wanted.items():
            if name in self._managed:
                continue
            engine = None
            if server.server_manager is not None and server.server_manager.type is ManagerType.DOCKER:
                if self._engine is None:
                    self._engine = DockerEngine(self.docker_endpoint)
                engine = self._engine
            managed = ManagedServer(server, engine=engine)
            if self.players_elsewhere is not None:
                managed.players_elsewhere = functools.partial(self.players_elsewhere, name)
            scope = trio.CancelScope()
            self._managed[name] = (managed, scope)
            await self._nursery.start(_run_in_scope, managed, scope)


def _same_backend(old: ServerConfig, new: ServerConfig) -> bool:
    return old.server_manager == new.server_manager and old.addresses == new.addresses


async def _run_in_scope(
    managed: ManagedServer,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await managed.run(task_status=task_status)
