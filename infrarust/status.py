"""Server-list answers: the status cache, the proxy's own MOTDs, and the pre-1.7 (legacy) view of a status.

No sockets here: the proxy hands :class:`StatusCache` a coroutine that asks the backend, and turns the JSON
text these functions return into packets.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

import attrs
import trio

from infrarust.config import Motd
from infrarust.protocol import build_status_json, status_object

# Shown when no [motd.*] / [default_motd.*] table gives a text.
BUILTIN_UNREACHABLE_TEXT = "Server is unreachable"
BUILTIN_UNKNOWN_TEXT = "Unknown server: check the address"
PROXY_VERSION_NAME = "infrarust"
# What a modern vanilla server puts in the protocol field of a legacy answer: no pre-1.7 client has it.
LEGACY_FOREIGN_PROTOCOL = 127
# The order in which states stand in for one another.
UNREACHABLE_STATES = ("unreachable", "offline")
DEFAULT_MOTD_STATES = ("online", "offline", "unreachable")


class StatusUnavailable(Exception):
    """No status could be had from the backend (the message says why)."""


@attrs.define(eq=False)
class _Flight:
    """One backend exchange that every concurrent asker for the same key waits on."""

    done: trio.Event = attrs.field(factory=trio.Event)
    value: str | None = None
    error: str = "the status exchange was cancelled"


class StatusCache:
    """Status answers by key (server, protocol, host shown), fresh for ``ttl`` s, at most ``max_entries``.

    Concurrent requests for a key share one backend exchange. Failures are not cached: the next ping asks
    the backend again. ``ttl`` or ``max_entries`` of 0 turns caching off (exchanges are still shared).
    """

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._fresh: dict[Hashable, tuple[float, str]] = {}
        self._flights: dict[Hashable, _Flight] = {}

    def __len__(self) -> int:
        return len(self._fresh)

    def clear(self) -> None:
        """Forget every cached answer (on reload, where MOTDs or backends may have changed)."""
        self._fresh.clear()

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[str]]) -> str:
        """The cached answer for ``key``, or the result of ``fetch()``; raises :class:`StatusUnavailable`."""
        return (await self.lookup(key, fetch))[0]

    async def lookup(self, key: Hashable, fetch: Callable[[], Awaitable[str]]) -> tuple[str, bool]:
        """Like :meth:`get`, and whether the answer was a stored one (True) rather than from an exchange
        made now, by this caller or by a concurrent one it waited for (False)."""
        hit = self._fresh.get(key)
        if hit is not None:
            if hit[0] > trio.current_time():
                return hit[1], True
            del self._fresh[key]
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.value is None:
                raise StatusUnavailable(flight.error)
            return flight.value, False
        flight = self._flights[key] = _Flight()
        try:
            flight.value = await fetch()
        except StatusUnavailable as exc:
            flight.error = str(exc)
            raise
        finally:
            del self._flights[key]
            flight.done.set()
        self._store(key, flight.value)
        return flight.value, False

    def _store(self, key: Hashable, value: str) -> None:
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        while len(self._fresh) >= self.max_entries:
            # Dicts keep insertion order, so the first key is the oldest answer.
            del self._fresh[next(iter(self._fresh))]
        self._fresh[key] = (trio.current_time() + self.ttl, value)


def pick_motd(motds: Mapping[str, Motd], states: tuple[str, ...]) -> Motd | None:
    """The first of ``states`` that has a table."""
    for state in states:
        motd = motds.get(state)
        if motd is not None:
            return motd
    return None


def proxy_status_json(motd: Motd | None, fallback_text: str, protocol: int) -> str:
    """A status answered by the proxy itself, echoing the client's protocol so no client says incompatible."""
    motd = motd or Motd()
    return build_status_json(
        version_name=motd.version_name or PROXY_VERSION_NAME,
        protocol=protocol,
        max_players=motd.max_players or 0,
        online=0,
        description=motd.text if motd.text is not None else fallback_text,
        favicon=motd.favicon,
    )


def apply_online_motd(status_json: str, motd: Motd | None) -> str:
    """The backend's status with ``[motd.online]`` fields laid over it; player counts stay the backend's.

    Without a table (or with JSON we cannot read) the backend's text is returned exactly as it came.
    """
    if motd is None:
        return status_json
    status = status_object(status_json)
    if status is None:
        return status_json
    if motd.text is not None:
        status["description"] = {"text": motd.text}
    if motd.favicon is not None:
        status["favicon"] = motd.favicon
    if motd.version_name is not None:
        version = status.get("version")
        status["version"] = {**(version if isinstance(version, dict) else {}), "name": motd.version_name}
    if motd.max_players is not None:
        players = status.get("players")
        status["players"] = {
            **(players if isinstance(players, dict) else {"online": 0}),
            "max": motd.max_players,
        }
    return json.dumps(status)


def fleet_online(status_json: str, online: int) -> str:
    """fleetwire: a status with ``players.online`` set to the fleet's count for the server (``[cluster]``),
    so every instance shows the same number; JSON we cannot read is returned unchanged."""
    status = status_object(status_json)
    if status is None:
        return status_json
    players = status.get("players")
    status["players"] = {**(players if isinstance(players, dict) else {"max": 0}), "online": online}
    return json.dumps(status)


@attrs.frozen
class LegacyView:
    """What a pre-1.7 server list shows: a one-line MOTD with § codes, counts and a version name."""

    motd: str
    online: int
    max_players: int
    version_name: str
    protocol: int | None


def legacy_view(status_json: str) -> LegacyView:
    """Reduce a modern status to what legacy clients can show; tolerant of missing or odd fields."""
    status = status_object(status_json) or {}
    players = _table(status.get("players"))
    version = _table(status.get("version"))
    protocol = version.get("protocol")
    return LegacyView(
        motd=" ".join(component_to_legacy(status.get("description", "")).split("\n")),
        online=_int(players.get("online")),
        max_players=_int(players.get("max")),
        version_name=str(version.get("name", "")),
        protocol=protocol if isinstance(protocol, int) else None,
    )


_COLOR_CODES = {
    "black": "0", "dark_blue": "1", "dark_green": "2", "dark_aqua": "3", "dark_red": "4",
    "dark_purple": "5", "gold": "6", "gray": "7", "dark_gray": "8", "blue": "9", "green": "a",
    "aqua": "b", "red": "c", "light_purple": "d", "yellow": "e", "white": "f",
}  # fmt: skip
_FORMAT_CODES = {"obfuscated": "k", "bold": "l", "strikethrough": "m", "underlined": "n", "italic": "o"}


def component_to_legacy(component: Any) -> str:
    """A JSON text component as legacy text with § colour and format codes."""
    if isinstance(component, str):
        return component
    if isinstance(component, list):
        return "".join(component_to_legacy(part) for part in component)
    if not isinstance(component, dict):
        return ""
    codes = ""
    color = component.get("color")
    if isinstance(color, str) and color in _COLOR_CODES:
        codes += "§" + _COLOR_CODES[color]
    codes += "".join("§" + code for key, code in _FORMAT_CODES.items() if component.get(key) is True)
    text = component.get("text", component.get("translate", ""))
    extra = component.get("extra", [])
    return codes + (text if isinstance(text, str) else "") + component_to_legacy(extra)


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
