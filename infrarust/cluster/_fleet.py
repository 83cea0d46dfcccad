"""A fleet of proxies sharing bans, rate-limit budgets and player counts through Redis (``[cluster]``).

Layout in Redis (``P`` is ``key_prefix``)::

    P bans            hash   target -> ban entry JSON (the ban file's entry format)
    P bans:epoch      string counts ban changes; missing means Redis lost its data (refilled from memory)
    P bans            channel one JSON message per ban or unban, applied by every instance at once
    P instances       zset   instance id -> when its entry expires (ms, Redis clock)
    P instance:<id>   hash   "s:<server>" -> sessions, "a:<server>|<address>" -> sessions, "@info" -> JSON;
                             expires three heartbeats after the instance's last one
    P rl:<kind>:<ip>  string a rate-limit window's counter, expiring with the window

Per-connection calls never wait longer than ``[cluster] timeout``. When a call fails or times out the fleet
is *degraded*: ``cluster degraded`` is logged once, every call answers from local state at once (the last
known bans, local budgets, local counts), and a background task probes Redis until it answers, then
re-syncs (replaying ban changes made meanwhile, refilling an emptied Redis) and logs ``cluster recovered``.

The Lua scripts read keys they compute (the instances' hashes), which a single Redis server allows and
Redis Cluster does not: a fleet uses one Redis (with replicas, or Sentinel in front, if it must survive
the loss of that server).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import time
import uuid as uuid_module
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import trio

from infrarust.admission import RateLimiter
from infrarust.bans import BanEntry, BanFileError, BanList, parse_ban_file
from infrarust.config import Address, Cluster, RateLimit

from ._client import RedisClient, RedisError, RedisSubscription
from ._keys import FleetKeys, ban_key, change_commands, encode_entry

logger = logging.getLogger("infrarust.cluster")

# How often a degraded fleet asks Redis whether it is back (bounded by the heartbeat).
RETRY_INTERVAL = 0.5
# Session changes are pushed to Redis at most this often (a burst of disconnects makes one write).
PUSH_COALESCE = 0.05
# An instance's entry outlives its last heartbeat by this many heartbeats.
TTL_HEARTBEATS = 3
INFO_FIELD = "@info"
HEALTH_FIELD = "@health"

_LUA_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: instances, own hash, epoch key. ARGV: hash prefix, own id, ttl ms, field, value, ...
# Writes this instance's sessions (absolute values: the instance's memory is the truth), refreshes its
# expiry, forgets expired instances, and returns [epoch or "", field, sum, field, sum, ...] summed over
# the other live instances.
HEARTBEAT_SCRIPT = (
    _LUA_NOW
    + """
local ttl = tonumber(ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local sums = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  if id ~= ARGV[2] then
    local flat = redis.call('HGETALL', ARGV[1] .. id)
    for i = 1, #flat, 2 do
      if string.sub(flat[i], 1, 1) ~= '@' then
        sums[flat[i]] = (sums[flat[i]] or 0) + (tonumber(flat[i + 1]) or 0)
      end
    end
  end
end
local out = {redis.call('GET', KEYS[3]) or ''}
for field, total in pairs(sums) do
  out[#out + 1] = field
  out[#out + 1] = total
end
return out
"""
)

# KEYS: instances, own hash. ARGV: hash prefix, own id, field, max (0 = none), ttl ms, mine.
# Counts one more player on a server if the fleet's total stays within max: the fleet total after it,
# or -1 when full. "mine" is this instance's own count before this player (its memory is the truth: a
# session that just ended is not counted even if its heartbeat push is still on the way).
RESERVE_SCRIPT = (
    _LUA_NOW
    + """
local total = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  if id ~= ARGV[2] then
    total = total + (tonumber(redis.call('HGET', ARGV[1] .. id, ARGV[3])) or 0)
  end
end
local mine = tonumber(ARGV[6]) + 1
local max = tonumber(ARGV[4])
if max > 0 and total + mine > max then
  return -1
end
redis.call('HSET', KEYS[2], ARGV[3], mine)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[2])
return total + mine
"""
)

# KEYS: counter. ARGV: window ms. One more event in the current window; returns the window's count.
RATE_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def default_instance_id() -> str:
    """Host name and process id: unique per worker process, readable in ``infrarust status``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def decode_entries(texts: Iterable[str | bytes]) -> list[BanEntry]:
    """Ban entries from their JSON texts, through the ban file's own validation; bad ones are skipped."""
    entries: list[BanEntry] = []
    for text in texts:
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        document = '{"version": 1, "bans": [' + raw + "]}"
        try:
            entries += parse_ban_file(document.encode(), _REDIS_SOURCE, now=0.0)
        except BanFileError as exc:
            logger.warning("cluster skipped a bad ban entry: %s", exc)
    return entries


# What messages about a bad stored entry name as its file.
_REDIS_SOURCE = Path("redis")


class Fleet:
    """This instance's view of the fleet: what the admission, connect and finish stages ask per connection.

    ``bans`` are the initial bans (the ban file's entries): they fill an empty Redis, and stand in until
    the first sync. Start the background work with ``await nursery.start(fleet.run)``; until it runs, and
    whenever Redis is away, every call answers from local state.
    """

    def __init__(
        self,
        settings: Cluster,
        rate_limit: RateLimit | None = None,
        *,
        bans: Iterable[BanEntry] = (),
    ) -> None:
        self.settings = settings
        self.instance_id = settings.instance_id or default_instance_id()
        keys = self.keys = FleetKeys(settings.key_prefix)
        self._bans_key = keys.bans
        self._epoch_key = keys.epoch
        self._channel = keys.channel
        self._instances_key = keys.instances
        self._hash_prefix = keys.instance_prefix
        self._own_key = keys.instance(self.instance_id)
        self._client = RedisClient(settings.redis, settings.timeout)
        self._started_at = time.time()
        # Bans: the local mirror, what changed while Redis was away, the epoch last seen.
        self._entries: dict[str, BanEntry] = {ban_key(entry): entry for entry in bans}
        self.bans = BanList(self._entries.values(), audit=False)
        self._unsynced: list[tuple[str, BanEntry]] = []
        self._epoch: bytes | None = None
        # Sessions: this instance's (the truth), reservations in flight, the others' (last heartbeat).
        self._players: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._address_sessions: Counter[str] = Counter()
        self._remote: dict[str, int] = {}
        self._push = trio.Event()
        # Rate limits: Redis counters, local limiters when degraded.
        rate_limit = rate_limit if rate_limit is not None else RateLimit()
        self.rate_limit = rate_limit
        self._login_limiter = RateLimiter(rate_limit.max_connections, rate_limit.window)
        self._status_limiter = RateLimiter(rate_limit.status_max, rate_limit.status_window)
        # Degraded mode: True until the first successful sync, so nothing waits on a Redis not yet seen.
        self.degraded = True
        self.degraded_count = 0
        self._synced_once = False
        self._synced = trio.Event()
        # Set by the proxy (Balancers.health_report): its view of backend health, shown by `status`.
        self.health_report: Callable[[], Mapping[str, Any]] | None = None
        self._listen_scope: trio.CancelScope | None = None

    # Configuration.

    def update_rate_limit(self, rate_limit: RateLimit) -> None:
        """Take in a reloaded ``[rate_limit]``."""
        if rate_limit != self.rate_limit:
            self.rate_limit = rate_limit
            self._login_limiter = RateLimiter(rate_limit.max_connections, rate_limit.window)
            self._status_limiter = RateLimiter(rate_limit.status_max, rate_limit.status_window)

    @property
    def ttl(self) -> float:
        """Seconds an instance's sessions stay counted after its last heartbeat."""
        return self.settings.heartbeat * TTL_HEARTBEATS

    # Admission: one call per connection, each bounded by the deadline.

    async def allow_login(self, ip: str) -> bool:
        """Count a login attempt from ``ip`` against the fleet's ``[rate_limit] max_connections`` budget."""
        return await self._allow("login", ip, self.rate_limit.max_connections, self.rate_limit.window)

    async def allow_status(self, ip: str) -> bool:
        """Count a server-list ping from ``ip`` against the fleet's ``status_max`` budget."""
        return await self._allow("status", ip, self.rate_limit.status_max, self.rate_limit.status_window)

    def is_banned(
        self, ip: str | None, name: str | None = None, uuid: str | uuid_module.UUID | None = None
    ) -> BanEntry | None:
        """The ban that refuses this client (synchronous: the fleet's bans are mirrored locally)."""
        return self.bans.match(ip, name, uuid)

    async def reserve(self, server: str, max_players: int) -> bool:
        """Count one more player on ``server`` if the fleet's total stays within ``max_players`` (0: no
        limit); False when full. Every True must be matched by one :meth:`session_ended`."""
        if max_players <= 0:
            self._players[server] += 1
            self._wake_push()
            return True
        if not self.degraded:
            # This instance's players and its other reservations in flight (conservative in a burst).
            mine = self._players[server] + self._pending[server]
            self._pending[server] += 1
            try:
                result = await self._call(
                    "EVAL",
                    RESERVE_SCRIPT,
                    2,
                    self._instances_key,
                    self._own_key,
                    self._hash_prefix,
                    self.instance_id,
                    "s:" + server,
                    max_players,
                    self._ttl_ms,
                    mine,
                )
            finally:
                self._pending[server] -= 1
            if result is not None:
                if int(result) < 0:
                    return False
                self._players[server] += 1
                return True
        if self.player_count(server) >= max_players:
            return False
        self._players[server] += 1
        self._wake_push()
        return True

    def session_started(self, server: str, address: Address) -> None:
        """The session counted by :meth:`reserve` reached ``address`` (for fleet-wide least_connections)."""
        self._address_sessions[_address_field(server, address)] += 1

    def session_ended(self, server: str, address: Address | None = None) -> None:
        """Undo :meth:`reserve` (and :meth:`session_started` when ``address`` is given). Synchronous, for
        ``finally`` blocks: the new counts reach Redis in the background within moments."""
        if self._players[server] > 0:
            self._players[server] -= 1
        if address is not None:
            field = _address_field(server, address)
            if self._address_sessions[field] > 0:
                self._address_sessions[field] -= 1
        self._wake_push()

    def player_count(self, server: str) -> int:
        """The fleet's players on ``server``: this instance's now, the others' as of the last heartbeat."""
        return self._players[server] + self._remote.get("s:" + server, 0)

    def remote_sessions(self, server: str, address: Address) -> int:
        """Sessions on ``address`` held by the other instances (a :class:`~infrarust.balance.Balancer`'s
        ``remote_sessions``)."""
        return self._remote.get("a:" + _address_field(server, address), 0)

    # Bans.

    async def ban(self, entry: BanEntry) -> None:
        """Ban fleet-wide: in force here at once, on every instance within moments (kept for Redis if it is
        away)."""
        self._apply("ban", entry)
        await self._publish_change("ban", entry)

    async def unban(self, entry: BanEntry) -> None:
        """Lift the ban on ``entry``'s target fleet-wide."""
        self._apply("unban", entry)
        await self._publish_change("unban", entry)

    def export_bans(self) -> list[BanEntry]:
        """The fleet's bans as this instance knows them (for ``bans --export``, in the ban file format)."""
        return list(self._entries.values())

    async def import_bans(self, entries: Iterable[BanEntry]) -> None:
        """Add every entry (``bans --import``): one pipelined write and one message each."""
        for entry in entries:
            await self.ban(entry)

    # Background work.

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Sync with Redis, then keep the heartbeat and the ban subscription going, and recover from
        outages; reports through ``task_status`` after the first attempt (synced or degraded)."""
        try:
            async with trio.open_nursery() as nursery:
                await self._recover(nursery, first=True)
                task_status.started()
                while True:
                    if self.degraded:
                        await trio.sleep(min(RETRY_INTERVAL, self.settings.heartbeat))
                        await self._recover(nursery)
                        continue
                    with trio.move_on_after(self.settings.heartbeat):
                        await self._push.wait()
                        await trio.sleep(PUSH_COALESCE)
                    self._push = trio.Event()
                    if not self.degraded:
                        await self._heartbeat()
        finally:
            await self._leave()

    async def flush(self) -> None:
        """Write this instance's sessions to Redis now (and read the others'), instead of at the next
        heartbeat; does nothing while degraded."""
        if not self.degraded:
            await self._heartbeat()

    async def wait_synced(self) -> None:
        """Return once this instance is in sync with Redis (at once when it is)."""
        await self._synced.wait()

    # Internals.

    @property
    def _ttl_ms(self) -> int:
        return math.ceil(self.ttl * 1000)

    def _wake_push(self) -> None:
        self._push.set()

    async def _allow(self, kind: str, ip: str, limit: int, window: float) -> bool:
        if limit <= 0:
            return True
        if not self.degraded:
            count = await self._call(
                "EVAL", RATE_SCRIPT, 1, self.keys.rate(kind, ip), max(1, math.ceil(window * 1000))
            )
            if count is not None:
                return int(count) <= limit
        limiter = self._login_limiter if kind == "login" else self._status_limiter
        return limiter.allow(ip, trio.current_time())

    async def _call(self, *args: Any) -> Any:
        """One command, or None after entering degraded mode."""
        try:
            return await self._client.execute(*args)
        except RedisError as exc:
            self._degrade(exc)
            return None

    def _degrade(self, exc: BaseException) -> None:
        self._client.close()
        if self.degraded:
            return
        self.degraded = True
        self.degraded_count += 1
        self._synced = trio.Event()
        if self._listen_scope is not None:
            self._listen_scope.cancel()
        logger.warning("cluster degraded redis=%s error=%s", self.settings.redis, json.dumps(str(exc)))

    def _apply(self, op: str, entry: BanEntry) -> bool:
        """Change the local mirror; True if it changed."""
        key = ban_key(entry)
        if op == "ban":
            if self._entries.get(key) == entry:
                return False
            self._entries[key] = entry
        elif self._entries.pop(key, None) is None:
            return False
        self.bans = BanList(self._entries.values(), audit=False)
        return True

    async def _publish_change(self, op: str, entry: BanEntry) -> None:
        if not self.degraded:
            try:
                await self._client.pipeline(self._change_commands(op, entry))
                return
            except RedisError as exc:
                self._degrade(exc)
        self._unsynced.append((op, entry))

    def _change_commands(self, op: str, entry: BanEntry) -> list[list[Any]]:
        return change_commands(self.keys, op, entry, self.instance_id)

    async def _recover(self, nursery: trio.Nursery, *, first: bool = False) -> None:
        """Subscribe, re-sync the bans and write a heartbeat; on success leave degraded mode."""
        subscription = RedisSubscription(self.settings.redis, self.settings.timeout)
        try:
            await subscription.subscribe(self._channel)
            await self._sync_bans()
            self.degraded = False  # before the heartbeat, which degrades again if it fails
            await self._heartbeat()
        except RedisError as exc:
            subscription.close()
            self.degraded = True
            if first and not self._synced_once and self.degraded_count == 0:
                self.degraded_count += 1
                logger.warning(
                    "cluster degraded redis=%s error=%s", self.settings.redis, json.dumps(str(exc))
                )
            return
        if self.degraded:
            subscription.close()
            return
        if not first or self._synced_once:
            logger.info("cluster recovered redis=%s instance=%s", self.settings.redis, self.instance_id)
        else:
            logger.info("cluster joined redis=%s instance=%s", self.settings.redis, self.instance_id)
        self._synced_once = True
        self._synced.set()
        scope = self._listen_scope = trio.CancelScope()
        nursery.start_soon(self._listen, subscription, scope)

    async def _sync_bans(self) -> None:
        """Replay changes made while away, then take Redis' bans, or refill Redis if it lost them."""
        epoch, stored = await self._client.pipeline([["GET", self._epoch_key], ["HGETALL", self._bans_key]])
        commands: list[list[Any]] = []
        if epoch is None:
            # Redis restarted empty (or never had a fleet): the bans this instance knows go back in.
            fill = [
                part for entry in self._entries.values() for part in (ban_key(entry), encode_entry(entry))
            ]
            if fill:
                commands.append(["HSET", self._bans_key, *fill])
            commands.append(["INCR", self._epoch_key])
            if self._entries:
                logger.info("cluster refilled bans=%d redis=%s", len(self._entries), self.settings.redis)
        for op, entry in self._unsynced:
            commands += self._change_commands(op, entry)
        if commands:
            await self._client.pipeline(commands)
            self._unsynced.clear()
            if epoch is None:
                return  # our mirror is what Redis now holds, plus the replayed changes
            epoch, stored = await self._client.pipeline(
                [["GET", self._epoch_key], ["HGETALL", self._bans_key]]
            )
        values = [stored[i + 1] for i in range(0, len(stored), 2)]
        now = time.time()
        entries = decode_entries(values)
        self._entries = {ban_key(entry): entry for entry in entries if not entry.expired(now)}
        self.bans = BanList(self._entries.values(), audit=False)
        self._epoch = epoch
        expired = [ban_key(entry) for entry in entries if entry.expired(now)]
        if expired:
            # Expired bans match nobody anywhere; dropping them keeps the hash from growing forever.
            await self._client.execute("HDEL", self._bans_key, *expired)

    async def _heartbeat(self) -> None:
        fields: list[Any] = [INFO_FIELD, self._info()]
        if self.health_report is not None:
            fields += [HEALTH_FIELD, json.dumps(self.health_report(), separators=(",", ":"))]
        for server, count in (self._players + self._pending).items():
            fields += ["s:" + server, count]
        for field, count in self._address_sessions.items():
            if count > 0:
                fields += ["a:" + field, count]
        try:
            reply = await self._client.execute(
                "EVAL",
                HEARTBEAT_SCRIPT,
                3,
                self._instances_key,
                self._own_key,
                self._epoch_key,
                self._hash_prefix,
                self.instance_id,
                self._ttl_ms,
                *fields,
            )
        except RedisError as exc:
            self._degrade(exc)
            return
        epoch = reply[0] or None
        self._remote = {
            reply[i].decode("utf-8", "replace"): int(reply[i + 1]) for i in range(1, len(reply) - 1, 2)
        }
        if epoch != self._epoch:
            # A change whose message we missed, or an emptied Redis: sync the bans again.
            try:
                await self._sync_bans()
            except RedisError as exc:
                self._degrade(exc)

    def _info(self) -> str:
        return json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started_at": round(self._started_at, 3)}
        )

    async def _listen(self, subscription: RedisSubscription, scope: trio.CancelScope) -> None:
        try:
            with scope:
                while True:
                    _, data = await subscription.next_message()
                    self._take_message(data)
        except RedisError as exc:
            self._degrade(exc)
        finally:
            subscription.close()

    def _take_message(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            op = message["op"]
            entries = decode_entries([json.dumps(message["entry"])])
        except (ValueError, KeyError, TypeError):
            logger.warning("cluster ignored a bad ban message: %s", data[:200])
            return
        if op not in ("ban", "unban") or not entries:
            return
        if self._apply(op, entries[0]) and message.get("from") != self.instance_id:
            logger.info("cluster %s %s from=%s", op, entries[0].log_fields(), message.get("from"))

    async def _leave(self) -> None:
        """Take this instance out of the counts at once on a clean stop (a crash waits out the TTL)."""
        if self.degraded:
            return
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(self.settings.timeout),
            contextlib.suppress(RedisError),
        ):
            await self._client.pipeline(
                [["DEL", self._own_key], ["ZREM", self._instances_key, self.instance_id]]
            )
        self._client.close()


def _address_field(server: str, address: Address) -> str:
    return f"{server}|{address}"
