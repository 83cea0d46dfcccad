"""The names a fleet uses in Redis, and the commands of a ban change (shared by instances and commands)."""

from __future__ import annotations

import json
from typing import Any

import attrs

from infrarust.bans import BanEntry


@attrs.frozen
class FleetKeys:
    """Every key and channel under one ``key_prefix`` (see :mod:`infrarust.cluster._fleet` for the layout)."""

    prefix: str

    @property
    def bans(self) -> str:
        """The hash of bans, target -> entry JSON."""
        return self.prefix + "bans"

    @property
    def epoch(self) -> str:
        """The ban change counter; its absence means Redis lost its data."""
        return self.prefix + "bans:epoch"

    @property
    def channel(self) -> str:
        """The pub/sub channel of ban changes."""
        return self.prefix + "bans"

    @property
    def instances(self) -> str:
        """The sorted set of live instances, scored by expiry (ms)."""
        return self.prefix + "instances"

    @property
    def instance_prefix(self) -> str:
        """Prefix of each instance's hash of sessions."""
        return self.prefix + "instance:"

    def instance(self, instance_id: str) -> str:
        """The hash of one instance's sessions."""
        return self.instance_prefix + instance_id

    def rate(self, kind: str, ip: str) -> str:
        """The counter of one client's rate-limit window."""
        return f"{self.prefix}rl:{kind}:{ip}"


def ban_key(entry: BanEntry) -> str:
    """The field a ban is stored under: one per target, as the ban file keeps one entry per target."""
    if entry.ip is not None:
        return f"ip:{entry.ip}"
    return f"player:{(entry.name or '').lower()}|{entry.uuid or ''}"


def encode_entry(entry: BanEntry) -> str:
    """A ban entry as JSON text, in the ban file's entry format."""
    return json.dumps(entry.to_json(), separators=(",", ":"))


def change_commands(keys: FleetKeys, op: str, entry: BanEntry, sender: str) -> list[list[Any]]:
    """Store a ban (``op`` "ban") or lift it ("unban"), count the change, and tell every instance."""
    key = ban_key(entry)
    store: list[Any] = ["HDEL", keys.bans, key]
    if op == "ban":
        store = ["HSET", keys.bans, key, encode_entry(entry)]
    message = json.dumps({"op": op, "entry": entry.to_json(), "from": sender})
    return [store, ["INCR", keys.epoch], ["PUBLISH", keys.channel, message]]
