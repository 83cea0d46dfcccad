"""What the proxy runs beyond one backend and one instance: the balancers and their health checks, and the
fleet (``[cluster]``) that shares bans, rate limits and player counts through Redis.

:class:`Scaling` outlives reloads, as the proxy's bans and metrics do. The pipeline asks it in a few lines:
admission for bans, budgets and ``max_players`` (:mod:`infrarust.admission`), the connect stage for the
order of addresses (:meth:`Scaling.connect`), and the end of every connection (:meth:`Scaling.end`) gives
back what the connection held: its fleet reservation and its balancer session.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import NoReturn

import attrs
import trio

from infrarust.backend import connect_backend
from infrarust.balance import Balancer, Balancers, CheckResult
from infrarust.bans import BanEntry
from infrarust.cluster import Fleet
from infrarust.config import Address, ProxyConfig, ServerConfig
from infrarust.connection import Connection
from infrarust.health import is_monitored, run_health_checks
from infrarust.metrics import Metrics

logger = logging.getLogger("infrarust.scaling")


@attrs.define
class _Hold:
    """What one admitted connection holds until it ends."""

    server: ServerConfig
    reserved: bool = False  # a fleet reservation (Fleet.reserve said yes)
    address: Address | None = None  # the address its session acquired


class Scaling:
    """The proxy's balancers (one per server) and, with ``[cluster]``, its :class:`~infrarust.cluster.Fleet`.

    The fleet is made by :meth:`run` (its initial bans are the ban file's), so until then, and without
    ``[cluster]``, ``fleet`` is None and everything stays local.
    """

    def __init__(
        self, config: ProxyConfig, metrics: Metrics | None = None, worker: int | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.worker = worker
        self.fleet: Fleet | None = None
        self.balancers = Balancers(config.servers, remote_sessions=self._remote_sessions)
        self._holds: dict[int, _Hold] = {}

    def _remote_sessions(self, server: str, address: Address) -> int:
        return self.fleet.remote_sessions(server, address) if self.fleet is not None else 0

    # Start, stop and reload.

    async def run(
        self, bans: Iterable[BanEntry] = (), *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Run the health checks and, with ``[cluster]``, the fleet (joined, or degraded, before this
        reports through ``task_status``) until cancelled."""
        async with trio.open_nursery() as nursery:
            settings = self.config.cluster
            if settings is not None:
                if self.worker is not None and settings.instance_id:
                    # Each worker process is an instance of its own: one id would count them as one.
                    settings = attrs.evolve(settings, instance_id=f"{settings.instance_id}-w{self.worker}")
                fleet = Fleet(settings, self.config.rate_limit, bans=bans)
                fleet.health_report = self.balancers.health_report
                await nursery.start(fleet.run)
                self.fleet = fleet
            await nursery.start(functools.partial(run_health_checks, self.balancers, on_check=self._checked))
            if self.metrics is not None:
                self.metrics.backend_addresses = self._address_metrics
                self.metrics.cluster_state = self._cluster_metrics
            task_status.started()
            await trio.sleep_forever()
        raise AssertionError("unreachable")

    def reload(self, config: ProxyConfig) -> None:
        """Take in a reloaded configuration: servers, rate limits. ``[cluster]`` applies at start only."""
        if config.cluster != self.config.cluster:
            logger.warning("cluster changes take effect at the next start")
            config = attrs.evolve(config, cluster=self.config.cluster)
        self.config = config
        self.balancers.update(config.servers)
        if self.fleet is not None:
            self.fleet.update_rate_limit(config.rate_limit)

    def _checked(self, balancer: Balancer, address: Address, result: CheckResult) -> None:
        if self.metrics is not None and result.ok and result.latency is not None:
            self.metrics.health_check_time(balancer.server.name, str(address), result.latency)

    def _address_metrics(self) -> list[tuple[str, str, bool, int]]:
        return [
            (balancer.server.name, str(state.address), state.up, state.sessions)
            for balancer in self.balancers
            if is_monitored(balancer.server)
            for state in balancer.snapshot()
        ]

    def _cluster_metrics(self) -> tuple[bool, int] | None:
        fleet = self.fleet
        return (fleet.degraded, fleet.degraded_count) if fleet is not None else None

    # The pipeline.

    async def reserve(self, connection: Connection, server: ServerConfig) -> bool:
        """Admission, last step of a login with a fleet: count the player fleet-wide within
        ``max_players``; False when the fleet is full. Without a fleet, True (admission counts locally)."""
        fleet = self.fleet
        if fleet is None:
            return True
        if not await fleet.reserve(server.name, server.max_players):
            return False
        self._holds[id(connection)] = _Hold(server, reserved=True)
        return True

    async def connect(
        self, connection: Connection, server: ServerConfig, config: ProxyConfig
    ) -> tuple[trio.SocketStream, Address] | None:
        """The connect stage of a login: the server's addresses in its balancer's order (a failed one is
        marked down); the address reached holds a session until :meth:`end`."""
        balancer = self.balancers.for_server(server)
        # One address, or failover, keeps today's plain try-in-order (and its log lines).
        choice = balancer if is_monitored(server) else None
        connected = await connect_backend(server, config.connect_timeout, config.keepalive, choice)
        if connected is not None:
            address = connected[1]
            balancer.acquire(address)
            hold = self._holds.setdefault(id(connection), _Hold(server))
            hold.address = address
            if hold.reserved and self.fleet is not None:
                self.fleet.session_started(server.name, address)
        return connected

    def end(self, connection: Connection) -> None:
        """A connection is over (called once for every connection, also when cancelled): give back its
        reservation (exactly one ``session_ended`` per reservation) and its balancer session."""
        hold = self._holds.pop(id(connection), None)
        if hold is None:
            return
        if hold.address is not None:
            balancer = self.balancers.get(hold.server.name)
            if balancer is not None:
                balancer.release(hold.address)
        if hold.reserved and self.fleet is not None:
            self.fleet.session_ended(hold.server.name, hold.address)

    # The server list.

    def fleet_players(self, server: str) -> int:
        """The fleet's players on the server named ``server`` (0 without a fleet, or while it is away)."""
        return self.fleet.player_count(server) if self.fleet is not None else 0

    def player_count(self, server: ServerConfig) -> int | None:
        """The fleet's players on ``server`` (None without a fleet)."""
        return self.fleet.player_count(server.name) if self.fleet is not None else None
