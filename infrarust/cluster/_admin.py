"""The fleet seen from a command line: its bans (``bans --export`` / ``--import``, ``ban``, ``unban``) and
its live instances (``infrarust status``), read and written straight in Redis."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import attrs

from infrarust.bans import BanEntry
from infrarust.config import Cluster

from ._client import RedisClient
from ._fleet import HEALTH_FIELD, INFO_FIELD, decode_entries
from ._keys import FleetKeys, change_commands


@attrs.frozen
class InstanceView:
    """One live instance: who it is, and its sessions per server and per ``server|address``."""

    instance_id: str
    host: str
    pid: int
    started_at: float
    expires_in: float  # seconds until it drops out unless it sends a heartbeat
    sessions: dict[str, int]
    address_sessions: dict[str, int]
    health: dict[str, Any]  # server -> its addresses' health as the instance sees them (may be empty)


class FleetAdmin:
    """Commands on a fleet's Redis; every call within ``timeout`` (default: ``[cluster] timeout``).

    Raises :class:`~infrarust.cluster.RedisError` when Redis cannot be reached: a command, unlike the
    proxy, has no local state to fall back on.
    """

    def __init__(self, settings: Cluster, *, timeout: float | None = None, source: str = "cli") -> None:
        self.settings = settings
        self.keys = FleetKeys(settings.key_prefix)
        self.source = source
        self._client = RedisClient(settings.redis, timeout if timeout is not None else settings.timeout)

    def close(self) -> None:
        """Drop the connection."""
        self._client.close()

    async def bans(self) -> list[BanEntry]:
        """Every ban the fleet holds (for ``bans --export``)."""
        stored = await self._client.execute("HGETALL", self.keys.bans)
        return decode_entries(stored[1::2])

    async def ban(self, entry: BanEntry) -> None:
        """Ban on every instance (they apply it within moments)."""
        await self._client.pipeline(change_commands(self.keys, "ban", entry, self.source))

    async def unban(self, entry: BanEntry) -> None:
        """Lift the ban on ``entry``'s target on every instance."""
        await self._client.pipeline(change_commands(self.keys, "unban", entry, self.source))

    async def import_bans(self, entries: Iterable[BanEntry]) -> int:
        """Add every entry in one pipelined round trip (``bans --import``); returns how many."""
        commands: list[list[Any]] = []
        for entry in entries:
            commands += change_commands(self.keys, "ban", entry, self.source)
        if commands:
            await self._client.pipeline(commands)
        return len(commands) // 3

    async def instances(self) -> list[InstanceView]:
        """The live instances, in id order."""
        now_reply, members = await self._client.pipeline(
            [["TIME"], ["ZRANGE", self.keys.instances, 0, -1, "WITHSCORES"]]
        )
        now_ms = int(now_reply[0]) * 1000 + int(now_reply[1]) // 1000
        live = [
            (members[i].decode("utf-8", "replace"), float(members[i + 1]))
            for i in range(0, len(members), 2)
            if float(members[i + 1]) > now_ms
        ]
        if not live:
            return []
        hashes = await self._client.pipeline([["HGETALL", self.keys.instance(iid)] for iid, _ in live])
        views = []
        for (instance_id, expires_ms), flat in zip(live, hashes, strict=True):
            fields = {flat[i].decode("utf-8", "replace"): flat[i + 1] for i in range(0, len(flat), 2)}
            info = _json_object(fields.pop(INFO_FIELD, b"{}"))
            health = _json_object(fields.pop(HEALTH_FIELD, b"{}"))
            views.append(
                InstanceView(
                    instance_id=instance_id,
                    host=str(info.get("host", "")),
                    pid=int(info.get("pid", 0)),
                    started_at=float(info.get("started_at", 0.0)),
                    expires_in=(expires_ms - now_ms) / 1000,
                    sessions={k[2:]: int(v) for k, v in fields.items() if k.startswith("s:")},
                    address_sessions={k[2:]: int(v) for k, v in fields.items() if k.startswith("a:")},
                    health=health,
                )
            )
        return sorted(views, key=lambda view: view.instance_id)


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
