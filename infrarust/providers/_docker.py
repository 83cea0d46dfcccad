"""Routes from Docker: containers labelled ``infrarust.enable=true`` become servers.

The provider subscribes to the daemon's container events first and lists the labelled containers second,
so no start or stop can fall between the two. Every relevant event (and every ``poll_interval``, as a
safety net) re-lists them: one cheap request, and the published set is always a full, consistent snapshot
rather than a sum of deltas. When the daemon goes away (restart, socket gone, stream dropped) the last
known routes stay, and the provider reconnects after ``reconnect_delay`` and lists again.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from infrarust._logfmt import quote
from infrarust.config import ConfigError, Docker, ServerConfig, structure_server
from infrarust.dockerengine import DockerEngine, DockerError

logger = logging.getLogger(__name__)

ENABLE_LABEL = "infrarust.enable=true"
DEFAULT_PORT = 25565
# Container events after which the set of routes may differ. Health changes count because a container
# with a health check is routed only while healthy.
ROUTE_EVENTS = ("start", "die", "stop", "destroy", "kill", "pause", "unpause", "health_status")
_NAME_CHARS = re.compile(r"[^a-z0-9_-]+")
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::")

OnChange = Callable[[tuple[ServerConfig, ...]], Awaitable[None]]


class ContainerSkipped(ValueError):
    """A labelled container that cannot become a route (bad label, no reachable address)."""


def _container_name(container: Mapping[str, Any]) -> str:
    names = container.get("Names") or []
    if names and isinstance(names[0], str):
        return names[0].lstrip("/")
    return str(container.get("Id", ""))[:12]


def _server_name(text: str) -> str:
    """A container or label name as a server id (``[a-z0-9_-]+``)."""
    name = _NAME_CHARS.sub("-", text.lower()).strip("-")
    return name or "container"


def _bool_label(labels: Mapping[str, str], key: str) -> bool | None:
    value = labels.get(key)
    if value is None:
        return None
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ContainerSkipped(f"label {key}={value!r} is not true or false")


def _port_label(labels: Mapping[str, str]) -> int:
    value = labels.get("infrarust.port")
    if value is None:
        return DEFAULT_PORT
    try:
        port = int(value.strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ContainerSkipped(f"label infrarust.port={value!r} is not a port number (1 to 65535)")
    return port


def container_address(container: Mapping[str, Any], port: int, network: str | None) -> str:
    """The ``host:port`` the proxy reaches a container's Minecraft port at.

    In order: host networking (127.0.0.1 and the port itself); the configured ``network``'s address; the
    host port the container port is published on; the first network that has an address.
    """
    host_config = container.get("HostConfig") or {}
    if host_config.get("NetworkMode") == "host" or network == "host":
        return f"127.0.0.1:{port}"
    networks: Mapping[str, Any] = (container.get("NetworkSettings") or {}).get("Networks") or {}
    if network is not None:
        settings = networks.get(network) or {}
        if settings.get("IPAddress"):
            return f"{settings['IPAddress']}:{port}"
    for published in container.get("Ports") or []:
        if (
            published.get("PrivatePort") == port
            and published.get("PublicPort")
            and published.get("Type") == "tcp"
        ):
            host = published.get("IP") or ""
            host = "127.0.0.1" if host in _UNSPECIFIED_HOSTS else host
            host = f"[{host}]" if ":" in host else host
            return f"{host}:{published['PublicPort']}"
    for settings in networks.values():
        if settings and settings.get("IPAddress"):
            return f"{settings['IPAddress']}:{port}"
    raise ContainerSkipped(
        f"no address reaches port {port}: use host networking, publish the port, or set [docker] network"
    )


def container_health(container: Mapping[str, Any]) -> str | None:
    """``healthy``, ``unhealthy``, ``starting``, or ``None`` for a container without a health check."""
    match = _HEALTH.search(str(container.get("Status", "")))
    if match is None:
        return None
    return match[1].removeprefix("health: ")


def server_from_container(container: Mapping[str, Any], network: str | None = None) -> ServerConfig:
    """The route a labelled container's ``infrarust.*`` labels describe; checked like a server file.

    Raises :class:`ContainerSkipped` (or :class:`ConfigError`) saying which label is wrong.
    """
    labels: Mapping[str, str] = container.get("Labels") or {}
    container_name = _container_name(container)
    name = _server_name(labels.get("infrarust.name") or container_name)
    domains = [part.strip() for part in labels.get("infrarust.domains", "").split(",") if part.strip()]
    port = _port_label(labels)
    data: dict[str, Any] = {
        "name": name,
        # Infrarust's default: a container without domains answers at <container>.docker.local.
        "domains": domains or [f"{_server_name(container_name)}.docker.local"],
        "addresses": [container_address(container, port, network)],
    }
    if "infrarust.proxy_mode" in labels:
        data["proxy_mode"] = labels["infrarust.proxy_mode"].strip()
    send_proxy_protocol = _bool_label(labels, "infrarust.send_proxy_protocol")
    if send_proxy_protocol is not None:
        data["send_proxy_protocol"] = send_proxy_protocol
    if "infrarust.motd.text" in labels:
        data["motd"] = {"online": {"text": labels["infrarust.motd.text"]}}
    return structure_server(data, where=f"docker container {container_name}")


class DockerProvider:
    """Publishes the servers of the labelled, running (and, with a health check, healthy) containers.

    ``on_change(servers)`` is awaited with the full new set whenever it differs from the last one; start
    :meth:`run` in a nursery (``await nursery.start(provider.run)`` returns after the first listing, or
    after the first failure to reach the daemon, so a proxy never waits for Docker to start).
    """

    name = "docker"

    def __init__(self, config: Docker, on_change: OnChange) -> None:
        self.config = config
        self.servers: tuple[ServerConfig, ...] = ()
        self.connected = False
        self.connected_at: float | None = None  # trio time of the last (re)connection
        self._on_change = on_change
        self._warned: set[tuple[str, str]] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the daemon until cancelled, reconnecting after ``reconnect_delay`` whenever it is lost."""
        started = False
        outage_logged = False
        while True:
            try:
                async with (
                    DockerEngine(self.config.endpoint) as engine,
                    engine.events([ENABLE_LABEL], ROUTE_EVENTS) as events,
                ):
                    await self.refresh(engine)
                    if outage_logged or not started:
                        logger.info(
                            "docker connected endpoint=%s servers=%d",
                            quote(self.config.endpoint),
                            len(self.servers),
                        )
                    self.connected, outage_logged = True, False
                    self.connected_at = trio.current_time()
                    if not started:
                        task_status.started()
                        started = True
                    await self._follow(engine, events)
            except DockerError as exc:
                self.connected = False
                if not outage_logged:
                    logger.warning(
                        "docker unreachable endpoint=%s error=%s retry_every=%ss routes_kept=%d",
                        quote(self.config.endpoint),
                        quote(str(exc)),
                        self.config.reconnect_delay,
                        len(self.servers),
                    )
                    outage_logged = True
            if not started:
                task_status.started()
                started = True
            await trio.sleep(self.config.reconnect_delay)

    async def _follow(self, engine: DockerEngine, events: Any) -> None:
        """Re-list on every relevant event and every ``poll_interval``; raise DockerError when it drops."""
        wake_send, wake_receive = trio.open_memory_channel[None](1)
        failure: list[DockerError] = []

        async def read_events() -> None:
            try:
                async for _event in events:
                    # When a re-list is already due it will see this change too.
                    with contextlib.suppress(trio.WouldBlock):
                        wake_send.send_nowait(None)
                failure.append(DockerError("the events stream ended (daemon stopped or restarted)"))
            except DockerError as exc:
                failure.append(exc)
            nursery.cancel_scope.cancel()

        async def relist() -> None:
            try:
                while True:
                    with trio.move_on_after(self.config.poll_interval):
                        await wake_receive.receive()
                    await self.refresh(engine)
            except DockerError as exc:
                failure.append(exc)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_events)
            nursery.start_soon(relist)
        if failure:
            raise failure[0]

    async def refresh(self, engine: DockerEngine) -> None:
        """List the labelled containers now and publish the result if it changed."""
        containers = await engine.list_containers([ENABLE_LABEL])
        servers: list[ServerConfig] = []
        for container in sorted(containers, key=_container_name):
            if container.get("State", "running") != "running" or container_health(container) in (
                "starting",
                "unhealthy",
            ):
                continue
            try:
                servers.append(server_from_container(container, self.config.network))
            except (ContainerSkipped, ConfigError) as exc:
                self._warn_once(container, str(exc))
        await self._publish(tuple(servers))

    def _warn_once(self, container: Mapping[str, Any], problem: str) -> None:
        key = (str(container.get("Id", "")), problem)
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning(
            "docker container skipped container=%s problem=%s", _container_name(container), quote(problem)
        )

    async def _publish(self, servers: tuple[ServerConfig, ...]) -> None:
        if servers == self.servers:
            return
        before = {server.name for server in self.servers}
        after = {server.name for server in servers}
        self.servers = servers
        logger.info(
            "docker routes changed servers=%d added=%s removed=%s",
            len(servers),
            quote(",".join(sorted(after - before))),
            quote(",".join(sorted(before - after))),
        )
        try:
            await self._on_change(servers)
        except ConfigError as exc:
            # The proxy refused the merged routes (its reload path rejects whole); keep following Docker.
            logger.warning("docker routes rejected error=%s", quote(str(exc)))
