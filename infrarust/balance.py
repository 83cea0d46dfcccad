"""Spreading a server's logins over its addresses: the ``load_balance`` strategies and each address's health.

A :class:`Balancer` belongs to one server. The connect stage asks it for the order in which to try the
addresses (:meth:`Balancer.order`), tells it about connect failures (:meth:`Balancer.mark_down`) and holds
an address for the life of each session (:meth:`Balancer.acquire` / :meth:`Balancer.release`). The health
checker (:mod:`infrarust.health`) feeds it ping results. Nothing here does I/O or sleeps: every method is
synchronous and cheap, so it can sit on the path of every login.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs

from infrarust.config import Address, LoadBalance, ServerConfig

logger = logging.getLogger("infrarust.balance")

# A server list shows at most this many player names (what vanilla servers send).
MAX_SAMPLE = 12
# Weight of the newest latency measurement: smooths loopback jitter yet follows a real change in two checks.
LATENCY_SMOOTHING = 0.5

# Sessions on other fleet instances for (server name, address); None without a fleet.
RemoteSessions = Callable[[str, Address], int]


@attrs.define(eq=False)
class AddressState:
    """What a balancer knows of one address; :meth:`Balancer.snapshot` hands out copies."""

    address: Address
    up: bool = True
    sessions: int = 0
    latency: float | None = None  # seconds, smoothed connect + status time of the health checks
    failures: int = 0  # consecutive failed checks (a connect failure counts as enough of them)
    successes: int = 0  # consecutive answered checks
    checks: int = 0
    last_error: str | None = None
    last_status: str | None = None  # the status JSON of the last answered check


@attrs.frozen
class CheckResult:
    """One health check of one address: answered (with its latency and status JSON) or not (why)."""

    ok: bool
    latency: float | None = None
    status_json: str | None = None
    error: str | None = None


class Balancer:
    """One server's addresses: their order for a new login by ``load_balance``, their health, their sessions.

    Addresses start up. A *monitored* balancer (the health checker runs for it) leaves down addresses out of
    :meth:`order` until checks bring them back; with every address down the order is empty and the login
    gets the server's ``disconnect_message``. An unmonitored one (a single address) only moves a failed
    address to the back, since no check would ever bring it back.
    """

    def __init__(
        self,
        server: ServerConfig,
        *,
        rng: random.Random | None = None,
        remote_sessions: RemoteSessions | None = None,
    ) -> None:
        self.server = server
        self.monitored = False
        self._rng = rng if rng is not None else random.Random()
        self._remote = remote_sessions
        self._states = {address: AddressState(address) for address in dict.fromkeys(server.addresses)}
        self._next_login = 0
        self._next_status = 0

    @property
    def strategy(self) -> LoadBalance:
        """The server's ``load_balance``."""
        return self.server.load_balance

    def update(self, server: ServerConfig) -> None:
        """Take in a reloaded configuration of the same server; kept addresses keep health and sessions."""
        old = self._states
        self.server = server
        self._states = {
            address: old.get(address) or AddressState(address) for address in dict.fromkeys(server.addresses)
        }

    # The login path.

    def order(self) -> list[Address]:
        """The addresses to try for a new login, best first; empty when a monitored server has none up."""
        return self._ordered(login=True)

    def status_order(self) -> list[Address]:
        """The addresses to ask for a server-list answer, by the same strategy (its own round-robin turn)."""
        return self._ordered(login=False)

    def acquire(self, address: Address) -> None:
        """A session on ``address`` started (its connect succeeded)."""
        state = self._states.get(address)
        if state is None:
            return  # the address left the configuration during the connect
        state.sessions += 1
        if not self.monitored and not state.up:
            self._set_up(state, "connected")

    def release(self, address: Address) -> None:
        """A session acquired on ``address`` ended."""
        state = self._states.get(address)
        if state is not None and state.sessions > 0:
            state.sessions -= 1

    @contextlib.contextmanager
    def session(self, address: Address) -> Iterator[None]:
        """:meth:`acquire` for the duration of a ``with`` block."""
        self.acquire(address)
        try:
            yield
        finally:
            self.release(address)

    def mark_down(self, address: Address, reason: str) -> None:
        """A login could not connect to ``address``: take it out at once; checks bring it back."""
        state = self._states.get(address)
        if state is None:
            return
        state.failures = max(state.failures + 1, self.server.health_check.unhealthy_after)
        state.successes = 0
        state.last_error = reason
        if state.up:
            self._set_down(state, reason)

    # The health checker's side.

    def record_check(self, address: Address, result: CheckResult) -> None:
        """Count one health check; the thresholds of ``[health_check]`` decide when health changes."""
        state = self._states.get(address)
        if state is None:
            return
        state.checks += 1
        thresholds = self.server.health_check
        if result.ok:
            state.failures = 0
            state.successes += 1
            state.last_error = None
            if result.status_json is not None:
                state.last_status = result.status_json
            if result.latency is not None:
                state.latency = (
                    result.latency
                    if state.latency is None
                    else LATENCY_SMOOTHING * result.latency + (1 - LATENCY_SMOOTHING) * state.latency
                )
            if not state.up and state.successes >= thresholds.healthy_after:
                self._set_up(state, "health check answered")
        else:
            state.successes = 0
            state.failures += 1
            state.last_error = result.error
            if state.up and state.failures >= thresholds.unhealthy_after:
                self._set_down(state, result.error or "health check failed")

    def addresses(self) -> tuple[Address, ...]:
        """Every address, in configuration order."""
        return tuple(self._states)

    def is_up(self, address: Address) -> bool:
        """The address's health (False for an address the server does not have)."""
        state = self._states.get(address)
        return state is not None and state.up

    def sessions(self, address: Address) -> int:
        """This proxy's sessions on ``address``."""
        state = self._states.get(address)
        return state.sessions if state is not None else 0

    def snapshot(self) -> tuple[AddressState, ...]:
        """A copy of every address's state, for metrics and ``infrarust status``."""
        return tuple(attrs.evolve(state) for state in self._states.values())

    # Server list.

    def aggregate(self, status_json: str, answered_by: Address | None = None) -> str:
        """With ``status_aggregate``: ``status_json`` (one backend's answer to a client) with the player
        counts summed over every healthy address, from their last health checks, and the samples merged.

        Without it, or when nothing else is known, ``status_json`` comes back unchanged.
        """
        if not self.server.status_aggregate:
            return status_json
        others = [
            state.last_status
            for state in self._states.values()
            if state.up and state.address != answered_by and state.last_status is not None
        ]
        return aggregate_status([status_json, *others]) if others else status_json

    # Internals.

    def _ordered(self, *, login: bool) -> list[Address]:
        states = list(self._states.values())
        up = [state for state in states if state.up]
        down = [state for state in states if not state.up]
        if self.monitored:
            down = []
        strategy = self.server.load_balance
        if strategy is LoadBalance.ROUND_ROBIN and up:
            turn = self._next_login if login else self._next_status
            if login:
                self._next_login += 1
            else:
                self._next_status += 1
            start = turn % len(up)
            up = up[start:] + up[:start]
        elif strategy is LoadBalance.RANDOM:
            self._rng.shuffle(up)
        elif strategy is LoadBalance.LEAST_CONNECTIONS:
            # sorted() is stable: ties keep configuration order.
            up.sort(key=self._load)
        elif strategy is LoadBalance.LOWEST_LATENCY:
            up.sort(key=lambda state: state.latency if state.latency is not None else float("inf"))
        return [state.address for state in (*up, *down)]

    def _load(self, state: AddressState) -> int:
        remote = self._remote(self.server.name, state.address) if self._remote is not None else 0
        return state.sessions + remote

    def _set_down(self, state: AddressState, reason: str) -> None:
        state.up = False
        logger.warning(
            "backend down server=%s address=%s reason=%s", self.server.name, state.address, json.dumps(reason)
        )

    def _set_up(self, state: AddressState, reason: str) -> None:
        state.up = True
        latency = f" latency={state.latency * 1000:.1f}ms" if state.latency is not None else ""
        logger.info(
            "backend up server=%s address=%s reason=%s%s",
            self.server.name,
            state.address,
            json.dumps(reason),
            latency,
        )


class Balancers:
    """A balancer per server of the running configuration, kept across reloads (health and sessions stay)."""

    def __init__(
        self,
        servers: Iterable[ServerConfig] = (),
        *,
        rng: random.Random | None = None,
        remote_sessions: RemoteSessions | None = None,
    ) -> None:
        self._rng = rng
        self._remote = remote_sessions
        self._by_name: dict[str, Balancer] = {}
        self.update(servers)

    def update(self, servers: Iterable[ServerConfig]) -> None:
        """Match the balancers to a (re)loaded configuration's servers."""
        current: dict[str, Balancer] = {}
        for server in servers:
            balancer = self._by_name.get(server.name)
            if balancer is None:
                balancer = Balancer(server, rng=self._rng, remote_sessions=self._remote)
            else:
                balancer.update(server)
            current[server.name] = balancer
        self._by_name = current

    def get(self, name: str) -> Balancer | None:
        """The balancer of the server called ``name``."""
        return self._by_name.get(name)

    def for_server(self, server: ServerConfig) -> Balancer:
        """The balancer of ``server``, made on the spot for a server built after the last update."""
        balancer = self._by_name.get(server.name)
        if balancer is None:
            balancer = self._by_name[server.name] = Balancer(
                server, rng=self._rng, remote_sessions=self._remote
            )
        return balancer

    def __iter__(self) -> Iterator[Balancer]:
        return iter(list(self._by_name.values()))

    def health_report(self) -> dict[str, list[dict[str, Any]]]:
        """Every address's health as JSON-ready data, per server (for ``infrarust status`` and a fleet's
        ``health_report``)."""
        return {
            balancer.server.name: [
                {
                    "address": str(state.address),
                    "up": state.up,
                    "sessions": state.sessions,
                    "latency_ms": round(state.latency * 1000, 3) if state.latency is not None else None,
                    "error": state.last_error,
                }
                for state in balancer.snapshot()
            ]
            for balancer in self
        }

    def __len__(self) -> int:
        return len(self._by_name)


def aggregate_status(answers: Sequence[str]) -> str:
    """The first answer with ``players.online`` and ``players.max`` summed over every answer and the
    player samples merged (first seen wins a duplicate id), at most :data:`MAX_SAMPLE` names.

    Answers that are not JSON objects add nothing; the first one, if unreadable, is returned as it is.
    """
    if not answers:
        raise ValueError("aggregate_status needs at least one answer")
    base = _object(answers[0])
    if base is None:
        return answers[0]
    online = max_players = 0
    sample: list[Any] = []
    seen: set[str] = set()
    for position, text in enumerate(answers):
        status = base if position == 0 else _object(text)
        if status is None:
            continue
        players = status.get("players")
        if not isinstance(players, dict):
            continue
        online += _count(players.get("online"))
        max_players += _count(players.get("max"))
        entries = players.get("sample")
        for entry in entries if isinstance(entries, list) else ():
            key = str(entry.get("id")) if isinstance(entry, dict) else json.dumps(entry)
            if len(sample) < MAX_SAMPLE and key not in seen:
                seen.add(key)
                sample.append(entry)
    players = base.get("players")
    merged: dict[str, Any] = {**(players if isinstance(players, dict) else {}), "online": online}
    merged["max"] = max_players
    if sample:
        merged["sample"] = sample
    base["players"] = merged
    return json.dumps(base)


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
