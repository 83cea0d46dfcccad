"""Persistent bans: IP addresses and CIDRs, player names, player UUIDs, kept in a JSON file (``[ban] file``).

:class:`BanList` is the ban list a proxy owns (``proxy.bans``) and what the ``ban`` / ``unban`` / ``bans``
commands edit. Its matching core is pure (no trio; ``match`` takes an explicit ``now`` when asked), so it
is tested without I/O. File work is synchronous in :class:`BanList`'s plain methods (for the command line
and for threads); on a trio event loop use their ``*_async`` twins, which run it in a worker thread
(``trio.to_thread.run_sync``), so a ``ban`` command holding the file's lock never stalls the sessions.
:func:`maintain`, the proxy's upkeep task, does the same.

The file, written by infrarust and fine to edit by hand::

    {
      "version": 1,
      "bans": [
        {"ip": "203.0.113.0/24", "reason": "spam bots", "created_at": "2025-06-01T12:00:00Z",
         "expires_at": null, "source": "cli:alice"},
        {"name": "Griefer", "reason": "griefing", "created_at": "2025-06-01T12:00:00Z",
         "expires_at": "2025-06-08T12:00:00Z", "source": "api"},
        {"uuid": "069a79f4-44e9-4726-a5be-fca90e38aaf5", "reason": "...", ...}
      ]
    }

An entry bans an ``ip`` (an address or a CIDR), or a player by ``name`` (case-insensitive), ``uuid``, or
both (then either one matches). ``expires_at`` null is a permanent ban; an expired entry never matches and
is dropped by the next purge. Times are UTC, ISO 8601. Saving is atomic (a temporary file in the same
folder, fsync, rename), so a reader never sees half a file; writers (the proxy, the commands) take an
advisory lock on the folder around each read-modify-write, so two of them never lose each other's changes.
A save killed half-way (SIGKILL, power loss) can leave its temporary file (``.bans.json.XXXXXXXX.tmp``);
loading the list removes such leftovers.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import ipaddress
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import attrs
import trio

from infrarust._logfmt import quote
from infrarust.admission import IpAddress, IpNetwork, parse_ip
from infrarust.config import ConfigError, ConfigProblem, ProxyConfig

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger("infrarust.bans")
audit_logger = logging.getLogger("infrarust.audit")

FILE_VERSION: Final = 1
# A name in a login start is at most 16 characters; offline-mode servers allow more than [A-Za-z0-9_].
MAX_NAME_CHARS: Final = 16
# How long a change waits for another writer (a command, another worker) to finish with the file.
LOCK_TIMEOUT: Final = 2.0
# The maintenance task wakes at least this often, so a changed purge_interval applies within a second.
MAINTENANCE_TICK: Final = 1.0
BANNED_MESSAGE: Final = "You are banned from this server"
_ENTRY_KEYS: Final = ("ip", "name", "uuid", "reason", "created_at", "expires_at", "source")
_TIME_EXAMPLE: Final = '"2025-06-01T12:00:00Z"'

# (inode, mtime in ns, size) of the file as last read or written; None when there was no file.
_Signature = tuple[int, int, int] | None
# What tempfile.mkstemp puts between the prefix and the suffix of a save's temporary file.
_TEMPORARY_RANDOM = re.compile(r"[a-z0-9_]{8}", re.ASCII)


class BanFileError(Exception):
    """A ban file that cannot be read or written; ``problems`` says what is wrong, each naming ``path``."""

    def __init__(self, path: Path, problems: str | Sequence[str]) -> None:
        self.path = path
        self.problems: tuple[str, ...] = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.path}: {problem}" for problem in self.problems)

    def config_error(self, config_file: Path | str | None) -> ConfigError:
        """The same problems as configuration errors: ``FILE: ban.file: PATH: what is wrong``."""
        where = str(config_file) if config_file is not None else "-"
        return ConfigError(ConfigProblem(where, "ban.file", f"{self.path}: {p}") for p in self.problems)


@attrs.frozen
class BanEntry:
    """One ban: an ``ip`` (address or CIDR), or a player by ``name`` and/or ``uuid``.

    Times are Unix seconds (UTC in the file); ``expires_at`` None is permanent. ``source`` says who banned
    (``api``, ``cli:alice``, ``file`` for a hand-written entry without one).
    """

    ip: str | None = None
    name: str | None = None
    uuid: uuid_module.UUID | None = None
    reason: str = ""
    created_at: float = 0.0
    expires_at: float | None = None
    source: str = "api"

    @property
    def target(self) -> str:
        """What is banned, for messages: ``ip 10.0.0.0/8``, ``player Steve``, ``player Steve <uuid>``."""
        if self.ip is not None:
            return f"ip {self.ip}"
        return "player " + " ".join(str(part) for part in (self.name, self.uuid) if part is not None)

    def expired(self, now: float) -> bool:
        """True once the ban has run out (never for a permanent one)."""
        return self.expires_at is not None and self.expires_at <= now

    def message(self) -> str:
        """What a refused player reads: the reason, and the end of a temporary ban."""
        text = f"{BANNED_MESSAGE}: {self.reason}" if self.reason else f"{BANNED_MESSAGE}."
        if self.expires_at is not None:
            until = datetime.datetime.fromtimestamp(self.expires_at, datetime.UTC)
            text += f" (until {until:%Y-%m-%d %H:%M:%S} UTC)"
        return text

    def log_fields(self) -> str:
        """The entry as ``key=value`` log fields."""
        parts = [f"ip={self.ip}"] if self.ip is not None else []
        if self.name is not None:
            parts.append(f"name={quote(self.name)}")
        if self.uuid is not None:
            parts.append(f"uuid={self.uuid}")
        expires = format_time(self.expires_at) if self.expires_at is not None else "never"
        parts += [f"reason={quote(self.reason)}", f"expires={expires}", f"source={quote(self.source)}"]
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The entry as it is stored in the file."""
        data: dict[str, Any] = {}
        if self.ip is not None:
            data["ip"] = self.ip
        if self.name is not None:
            data["name"] = self.name
        if self.uuid is not None:
            data["uuid"] = str(self.uuid)
        data["reason"] = self.reason
        data["created_at"] = format_time(self.created_at)
        data["expires_at"] = format_time(self.expires_at) if self.expires_at is not None else None
        data["source"] = self.source
        return data

    def _same_target(self, other: BanEntry) -> bool:
        return (self.ip, _folded(self.name), self.uuid) == (other.ip, _folded(other.name), other.uuid)


def normalize_ip(text: str) -> str:
    """An address or CIDR in the form entries keep: host bits cleared, a single address without ``/32``,
    IPv4-mapped IPv6 (``::ffff:1.2.3.4``) as IPv4. :class:`ValueError` if it is neither."""
    try:
        network: IpNetwork = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"invalid IP or CIDR {text!r}: expected an address or network like '203.0.113.7',"
            " '203.0.113.0/24' or '2001:db8::/32'"
        ) from None
    mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
    if mapped is not None and network.prefixlen >= 96:
        network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def normalize_name(text: str) -> str:
    """A player name as typed (matching ignores case); :class:`ValueError` if no client could send it."""
    if not 1 <= len(text) <= MAX_NAME_CHARS or not all(ch.isprintable() and not ch.isspace() for ch in text):
        raise ValueError(
            f"invalid player name {text!r}: 1 to {MAX_NAME_CHARS} characters, no spaces or control characters"
        )
    return text


def parse_uuid(text: str | uuid_module.UUID) -> uuid_module.UUID:
    """A player UUID, with or without hyphens; :class:`ValueError` if it is not one."""
    if isinstance(text, uuid_module.UUID):
        return text
    try:
        return uuid_module.UUID(text.strip())
    except ValueError:
        raise ValueError(f"invalid UUID {text!r}: expected 32 hex digits, hyphens allowed") from None


def format_time(timestamp: float) -> str:
    """Unix seconds as the file writes them: ISO 8601 UTC, ``2025-06-01T12:00:00Z``."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    spec = "seconds" if timestamp == int(timestamp) else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_time(text: str) -> float:
    """An ISO 8601 time with a time zone (``Z`` or ``+02:00``) as Unix seconds; ValueError otherwise."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a UTC time like {_TIME_EXAMPLE}, got {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add 'Z' for UTC, like {_TIME_EXAMPLE}")
    return moment.timestamp()


class _Index:
    """Entries arranged for a cheap ``match``: exact IPs, names and UUIDs in dicts, CIDRs in a short list.

    Where two entries name the same target (a hand-edited file), the one that lasts longer is kept: a
    permanent ban always wins. An index is never changed once built: a change builds a new one and swaps it
    in with one assignment, so ``match`` on the event loop never sees half of a change made in a thread.
    """

    def __init__(self, entries: Iterable[BanEntry]) -> None:
        self.entries = tuple(entries)
        self.addresses: dict[IpAddress, BanEntry] = {}
        self.networks: dict[IpNetwork, BanEntry] = {}
        self.names: dict[str, BanEntry] = {}
        self.uuids: dict[uuid_module.UUID, BanEntry] = {}
        for entry in self.entries:
            if entry.ip is not None:
                network = ipaddress.ip_network(entry.ip, strict=False)
                if network.prefixlen == network.max_prefixlen:
                    _keep_longest(self.addresses, network.network_address, entry)
                else:
                    _keep_longest(self.networks, network, entry)
            if entry.name is not None:
                _keep_longest(self.names, entry.name.lower(), entry)
            if entry.uuid is not None:
                _keep_longest(self.uuids, entry.uuid, entry)
        self.network_list = tuple(self.networks.items())
        # The address ban (or None) found for a client address text: a flood of logins from a few addresses
        # parses and scans the CIDRs once per address, not once per login. It lives as long as this index
        # (any change builds a new one) and is cleared when full, so it stays bounded under address churn.
        self.by_text: dict[str, BanEntry | None] = {}

    def address_ban(self, text: str, now: float) -> BanEntry | None:
        """The unexpired address or CIDR ban covering the address ``text``, or None."""
        cache = self.by_text
        try:
            entry = cache[text]
        except KeyError:
            entry = self._address_ban(text)
            if len(cache) >= _ADDRESS_CACHE_SIZE:
                cache.clear()
            cache[text] = entry
        if entry is None or not entry.expired(now):
            return entry
        # The best match expired: look again without it (rare; the next purge drops it).
        return self._address_ban(text, now)

    def _address_ban(self, text: str, now: float | None = None) -> BanEntry | None:
        address = parse_ip(text)
        if address is None:
            return None
        entry = self.addresses.get(address)
        if entry is not None and (now is None or not entry.expired(now)):
            return entry
        for network, entry in self.network_list:
            if (
                address.version == network.version
                and address in network
                and (now is None or not entry.expired(now))
            ):
                return entry
        return None


_ADDRESS_CACHE_SIZE = 4096


def _keep_longest(index: dict[Any, BanEntry], key: object, entry: BanEntry) -> None:
    current = index.get(key)
    if current is None or _end(entry) > _end(current):
        index[key] = entry


def _end(entry: BanEntry) -> float:
    return math.inf if entry.expires_at is None else entry.expires_at


def _folded(name: str | None) -> str | None:
    return name.lower() if name is not None else None


class BanList:
    """The bans, indexed for :meth:`match`, and saved to ``path`` after every change (None: in memory only).

    Every change (``ban_*``, ``unban_*``, :meth:`purge`) first takes in what another process wrote to the
    file, then saves atomically, under an advisory lock on the file's folder. The plain methods do that
    synchronously, waiting up to :data:`LOCK_TIMEOUT` for another writer's lock: call them from scripts or
    threads. On a trio event loop await their ``*_async`` twins (``ban_player_async``...), which do the same
    in a worker thread. :meth:`match` never touches the file and is safe to call at any time, also while a
    thread changes the list. Changes and purges are logged on the ``infrarust.audit`` logger, one
    ``event=... key=value`` line each, when ``audit`` is true.
    """

    def __init__(
        self,
        entries: Iterable[BanEntry] = (),
        *,
        path: str | os.PathLike[str] | None = None,
        audit: bool = True,
    ) -> None:
        self.path = Path(path).absolute() if path is not None else None
        self.audit = audit
        self._index = _Index(entries)
        self._signature: _Signature = None
        # Serializes this list's file work between threads (two *_async calls at once); the folder lock
        # does the same between processes.
        self._file_lock = threading.RLock()

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, audit: bool = True) -> BanList:
        """The bans in ``path``: a missing file is an empty list; an unreadable or invalid one raises
        :class:`BanFileError` naming the file and every problem. Temporary files that a killed save left in
        the folder are removed first (see :func:`remove_stale_temporaries`). Blocking: on a trio event loop
        use :meth:`load_async`."""
        bans = cls(path=path, audit=audit)
        assert bans.path is not None
        remove_stale_temporaries(bans.path)
        entries, bans._signature = read_ban_file(bans.path)
        bans._set(entries)
        return bans

    @classmethod
    async def load_async(cls, path: str | os.PathLike[str], *, audit: bool = True) -> BanList:
        """:meth:`load` in a worker thread."""
        return await trio.to_thread.run_sync(functools.partial(cls.load, path, audit=audit))

    @property
    def _entries(self) -> tuple[BanEntry, ...]:
        return self._index.entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<BanList {len(self._entries)} entries path={self.path}>"

    def entries(self) -> tuple[BanEntry, ...]:
        """Every entry, expired ones not yet purged included, in the file's order."""
        return self._entries

    def match(
        self,
        ip: str | IpAddress | None,
        name: str | None = None,
        uuid: str | uuid_module.UUID | None = None,
        now: float | None = None,
    ) -> BanEntry | None:
        """The ban that applies to a client at ``ip`` logging in as ``name`` / ``uuid``, or None.

        Expired entries never match. ``ip`` may be IPv4-mapped IPv6. ``now`` defaults to the wall clock.
        An empty list answers at once.
        """
        index = self._index  # one snapshot: a thread may swap in a new index meanwhile
        if not index.entries:
            return None
        if now is None:
            now = time.time()
        if uuid is not None and index.uuids:
            try:
                entry = index.uuids.get(parse_uuid(uuid))
            except ValueError:
                entry = None
            if entry is not None and not entry.expired(now):
                return entry
        if name is not None and index.names:
            entry = index.names.get(name.lower())
            if entry is not None and not entry.expired(now):
                return entry
        if ip is None or not (index.addresses or index.network_list):
            return None
        return index.address_ban(str(ip), now)

    def ban_ip(
        self,
        cidr: str,
        *,
        reason: str,
        duration: float | None = None,
        source: str = "api",
        now: float | None = None,
    ) -> BanEntry:
        """Ban an address or a CIDR, for ``duration`` seconds (None: for good); saved at once.

        A ban of the same address or network replaces the old one. Raises ValueError for a bad CIDR or
        duration, :class:`BanFileError` when the file cannot be read or written (nothing changes then).
        """
        entry = self._new_entry(
            ip=normalize_ip(cidr), reason=reason, duration=duration, source=source, now=now
        )
        return self._add(entry)

    def ban_player(
        self,
        name: str | None = None,
        uuid: str | uuid_module.UUID | None = None,
        *,
        reason: str,
        duration: float | None = None,
        source: str = "api",
        now: float | None = None,
    ) -> BanEntry:
        """Ban a player by name (any case), UUID, or both (either then matches); saved at once.

        A ban of the same name and UUID replaces the old one. Raises ValueError, or :class:`BanFileError`.
        """
        if name is None and uuid is None:
            raise ValueError("a player ban needs a name, a UUID, or both")
        entry = self._new_entry(
            name=normalize_name(name) if name is not None else None,
            uuid=parse_uuid(uuid) if uuid is not None else None,
            reason=reason,
            duration=duration,
            source=source,
            now=now,
        )
        return self._add(entry)

    def unban_ip(self, cidr: str, *, source: str = "api") -> list[BanEntry]:
        """Lift the ban of exactly this address or network (a ban of a wider network stays).

        Returns the entries removed (empty when there was none). Raises ValueError, or BanFileError.
        """
        ip = normalize_ip(cidr)
        return self._remove(lambda entry: entry.ip == ip, source)

    def unban_player(
        self, name: str | None = None, uuid: str | uuid_module.UUID | None = None, *, source: str = "api"
    ) -> list[BanEntry]:
        """Lift every ban of this name (any case) or this UUID; returns the entries removed."""
        if name is None and uuid is None:
            raise ValueError("an unban needs a name, a UUID, or both")
        folded = name.lower() if name is not None else None
        player_uuid = parse_uuid(uuid) if uuid is not None else None

        def lifted(entry: BanEntry) -> bool:
            return (folded is not None and _folded(entry.name) == folded) or (
                player_uuid is not None and entry.uuid == player_uuid
            )

        return self._remove(lifted, source)

    def purge(self, now: float | None = None) -> list[BanEntry]:
        """Drop expired entries and save if any were dropped; returns them. Raises BanFileError."""
        moment = time.time() if now is None else now
        if not any(entry.expired(moment) for entry in self._entries):
            return []  # changes on disk are refresh()'s business: upkeep() calls it first
        purged: list[BanEntry] = []

        def change(entries: tuple[BanEntry, ...]) -> tuple[BanEntry, ...]:
            purged[:] = [entry for entry in entries if entry.expired(moment)]
            return tuple(entry for entry in entries if not entry.expired(moment))

        self._update(change)
        for entry in purged:
            self._log_audit("purge", entry)
        return purged

    def refresh(self) -> bool:
        """Read the file again if it changed on disk since it was last read or written (a hand edit, the
        ``ban`` command, another worker); True if it did. A deleted file means no bans.

        Raises :class:`BanFileError` for an invalid file, keeping the current entries.
        """
        if self.path is None:
            return False
        with self._file_lock:
            if _signature(self.path) == self._signature:
                return False
            entries, signature = read_ban_file(self.path)
            self._take_in(entries, signature)
            return True

    def upkeep(self, now: float | None = None) -> None:
        """One round of upkeep, for :func:`maintain`: take in changes on disk, then purge. Never raises:
        a file that cannot be read or written is logged and the entries in memory stay in force."""
        try:
            self.refresh()
        except BanFileError as exc:
            logger.error("ban file unreadable, keeping the bans in memory: %s", exc)
            return
        try:
            self.purge(now)
        except BanFileError as exc:
            logger.error("ban purge not saved: %s", exc)

    # The same, off the event loop: each runs its plain twin in a worker thread. Cancelling the caller waits
    # for the thread (at most LOCK_TIMEOUT plus the file work), so a change is never half-known.

    async def ban_ip_async(
        self,
        cidr: str,
        *,
        reason: str,
        duration: float | None = None,
        source: str = "api",
        now: float | None = None,
    ) -> BanEntry:
        """:meth:`ban_ip` in a worker thread."""
        return await trio.to_thread.run_sync(
            functools.partial(self.ban_ip, cidr, reason=reason, duration=duration, source=source, now=now)
        )

    async def ban_player_async(
        self,
        name: str | None = None,
        uuid: str | uuid_module.UUID | None = None,
        *,
        reason: str,
        duration: float | None = None,
        source: str = "api",
        now: float | None = None,
    ) -> BanEntry:
        """:meth:`ban_player` in a worker thread."""
        return await trio.to_thread.run_sync(
            functools.partial(
                self.ban_player, name, uuid, reason=reason, duration=duration, source=source, now=now
            )
        )

    async def unban_ip_async(self, cidr: str, *, source: str = "api") -> list[BanEntry]:
        """:meth:`unban_ip` in a worker thread."""
        return await trio.to_thread.run_sync(functools.partial(self.unban_ip, cidr, source=source))

    async def unban_player_async(
        self, name: str | None = None, uuid: str | uuid_module.UUID | None = None, *, source: str = "api"
    ) -> list[BanEntry]:
        """:meth:`unban_player` in a worker thread."""
        return await trio.to_thread.run_sync(functools.partial(self.unban_player, name, uuid, source=source))

    async def purge_async(self, now: float | None = None) -> list[BanEntry]:
        """:meth:`purge` in a worker thread."""
        return await trio.to_thread.run_sync(self.purge, now)

    async def refresh_async(self) -> bool:
        """:meth:`refresh` in a worker thread."""
        return await trio.to_thread.run_sync(self.refresh)

    def log_refusal(
        self, entry: BanEntry, *, client: str, name: str | None, uuid: uuid_module.UUID | None
    ) -> None:
        """Log a login refused because of ``entry``: on ``infrarust.audit`` when the audit log is on, else
        on ``infrarust`` like the proxy's other refusals."""
        (audit_logger if self.audit else logging.getLogger("infrarust")).info(
            "event=login_refused client=%s player=%s player_uuid=%s %s",
            client,
            quote(name or "-"),
            uuid or "-",
            entry.log_fields(),
        )

    # Internals.

    def _new_entry(
        self,
        *,
        ip: str | None = None,
        name: str | None = None,
        uuid: uuid_module.UUID | None = None,
        reason: str,
        duration: float | None,
        source: str,
        now: float | None,
    ) -> BanEntry:
        if duration is not None and not (duration > 0 and math.isfinite(duration)):
            raise ValueError(f"a ban's duration must be a positive number of seconds, got {duration!r}")
        created = math.floor(time.time() if now is None else now)
        # Whole seconds, rounded so that a temporary ban never ends early; the file then holds them exactly.
        expires = math.ceil(created + duration) if duration is not None else None
        return BanEntry(
            ip=ip, name=name, uuid=uuid, reason=reason, created_at=created, expires_at=expires, source=source
        )

    def _add(self, entry: BanEntry) -> BanEntry:
        self._update(lambda entries: (*(e for e in entries if not e._same_target(entry)), entry))
        self._log_audit("ban", entry)
        return entry

    def _remove(self, lifted: Callable[[BanEntry], bool], source: str) -> list[BanEntry]:
        removed: list[BanEntry] = []

        def change(entries: tuple[BanEntry, ...]) -> tuple[BanEntry, ...]:
            removed[:] = [entry for entry in entries if lifted(entry)]
            return tuple(entry for entry in entries if not lifted(entry))

        self._update(change)
        for entry in removed:
            self._log_audit("unban", entry, f"by={quote(source)}")
        return removed

    def _update(self, change: Callable[[tuple[BanEntry, ...]], tuple[BanEntry, ...]]) -> None:
        """Read-modify-write: take in the file's current state, apply ``change``, save, all under the lock."""
        if self.path is None:
            self._set(change(self._entries))
            return
        with self._file_lock, _locked(self.path):
            self.refresh()
            entries = change(self._entries)
            if entries == self._entries:
                return
            self._signature = write_ban_file(self.path, entries)
            self._set(entries)

    def _take_in(self, entries: Sequence[BanEntry], signature: _Signature) -> None:
        """Use entries read from the file, auditing what another writer added or removed."""
        before = self._entries
        self._signature = signature
        self._set(entries)
        if not self.audit:
            return
        now = time.time()
        old, new = set(before), set(self._entries)
        for entry in before:
            if entry not in new:
                self._log_audit("purge" if entry.expired(now) else "unban", entry, "via=file")
        for entry in self._entries:
            if entry not in old:
                self._log_audit("ban", entry, "via=file")

    def _set(self, entries: Iterable[BanEntry]) -> None:
        self._index = _Index(entries)

    def _log_audit(self, event: str, entry: BanEntry, extra: str = "") -> None:
        if self.audit:
            audit_logger.info("event=%s %s%s", event, entry.log_fields(), f" {extra}" if extra else "")


def ban_file(config: ProxyConfig) -> Path:
    """The ban file of a configuration, absolute. A loaded configuration already holds it resolved against
    the configuration file's folder; one built in code resolves it against the working directory."""
    return Path(config.ban.file).absolute()


def open_ban_list(config: ProxyConfig, current: BanList | None = None) -> BanList:
    """The ban list for ``config``: ``current`` brought up to date when it uses the same file, else the file
    loaded afresh. Raises :class:`BanFileError`; ``current`` is then unchanged."""
    path = ban_file(config)
    if current is not None and current.path == path:
        current.refresh()
        current.audit = config.ban.enable_audit_log
        return current
    return BanList.load(path, audit=config.ban.enable_audit_log)


async def open_ban_list_async(config: ProxyConfig, current: BanList | None = None) -> BanList:
    """:func:`open_ban_list` in a worker thread, for a proxy's start and reload on the event loop."""
    return await trio.to_thread.run_sync(functools.partial(open_ban_list, config, current))


def check_ban_file(config: ProxyConfig) -> BanList:
    """:func:`open_ban_list` for the command line: problems raise :class:`ConfigError` lines
    ``FILE: ban.file: PATH: what is wrong``."""
    try:
        return open_ban_list(config)
    except BanFileError as exc:
        raise exc.config_error(config.source) from None


async def maintain(bans: Callable[[], BanList], purge_interval: Callable[[], float]) -> NoReturn:
    """Every ``purge_interval()`` seconds, re-read the ban file if it changed on disk and drop expired
    entries (saving if any were). 0 turns it off. Both are asked again each round, so a reload that
    replaces the list or changes the interval is followed. The file work runs in a worker thread: waiting
    for another process's lock never stalls the event loop."""
    last = trio.current_time()
    while True:
        interval = purge_interval()
        await trio.sleep(min(interval, MAINTENANCE_TICK) if interval > 0 else MAINTENANCE_TICK)
        interval = purge_interval()
        if interval <= 0 or trio.current_time() - last < interval:
            continue
        last = trio.current_time()
        try:
            # Abandoned on cancel, so a shutdown never waits for a lock: the save is atomic (a rename), and
            # a temporary file it leaves if the process then exits is removed at the next load.
            await trio.to_thread.run_sync(bans().upkeep, abandon_on_cancel=True)
        except Exception:  # upkeep must never take the proxy down; the bans in memory stay in force
            logger.exception("ban upkeep failed")


# The file.


def read_ban_file(path: Path) -> tuple[list[BanEntry], _Signature]:
    """The entries in ``path`` and its signature; a missing file is no entries. Raises BanFileError."""
    try:
        with open(path, "rb") as file:
            stat = os.fstat(file.fileno())
            data = file.read()
    except FileNotFoundError:
        return [], None
    except IsADirectoryError:
        raise BanFileError(path, "is a folder, expected a JSON file") from None
    except OSError as exc:
        raise BanFileError(path, f"cannot read: {exc.strerror or exc}") from None
    return parse_ban_file(data, path), (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def parse_ban_file(data: bytes, path: Path, now: float | None = None) -> list[BanEntry]:
    """Decode a ban file's bytes; every problem is reported at once in a :class:`BanFileError`.

    An entry without ``created_at`` (written by hand) gets ``now``; without ``source``, ``file``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BanFileError(path, f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise BanFileError(
            path, 'the file is empty; no bans is {"version": 1, "bans": []}, or no file at all'
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BanFileError(
            path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(document, dict):
        raise BanFileError(
            path, f'expected an object {{"version": 1, "bans": [...]}}, got {_describe(document)}'
        )
    problems: list[str] = []
    unknown = sorted(set(document) - {"version", "bans"})
    problems += [f"{key}: unknown key; valid keys: version, bans" for key in unknown]
    version = document.get("version", FILE_VERSION)
    if version != FILE_VERSION:
        problems.append(
            f"version: this infrarust reads version {FILE_VERSION} files, got {_describe(version)}"
        )
    raw_entries = document.get("bans", [])
    if not isinstance(raw_entries, list):
        problems.append(f"bans: expected an array of entries, got {_describe(raw_entries)}")
        raw_entries = []
    moment = time.time() if now is None else now
    entries: list[BanEntry] = []
    for position, raw in enumerate(raw_entries):
        entry = _parse_entry(raw, f"bans[{position}]", moment, problems)
        if entry is not None:
            entries.append(entry)
    if problems:
        raise BanFileError(path, problems)
    return entries


def _parse_entry(raw: object, where: str, now: float, problems: list[str]) -> BanEntry | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object, got {_describe(raw)}")
        return None
    before = len(problems)

    def problem(key: str, message: str) -> None:
        problems.append(f"{where}.{key}: {message}" if key else f"{where}: {message}")

    for key in sorted(set(raw) - set(_ENTRY_KEYS)):
        problem(key, f"unknown key; valid keys: {', '.join(_ENTRY_KEYS)}")

    def field(key: str, parse: Callable[[str], Any], *, nullable: bool = False) -> Any:
        value = raw.get(key)
        if value is None:
            if key in raw and not nullable:
                problem(key, "expected a string, got null")
            return None
        if not isinstance(value, str):
            problem(key, f"expected a string, got {_describe(value)}")
            return None
        try:
            return parse(value)
        except ValueError as exc:
            problem(key, str(exc))
            return None

    ip = field("ip", normalize_ip)
    name = field("name", normalize_name)
    player_uuid = field("uuid", parse_uuid)
    reason = field("reason", str)
    created_at = field("created_at", parse_time)
    expires_at = field("expires_at", parse_time, nullable=True)
    source = field("source", str)
    targets = [key for key in ("ip", "name", "uuid") if key in raw]
    if not targets:
        problem("", "an entry needs one of ip, name, uuid")
    elif "ip" in targets and len(targets) > 1:
        problem("", "an entry bans an ip or a player (name and/or uuid), not both")
    if len(problems) > before:
        return None
    return BanEntry(
        ip=ip,
        name=name,
        uuid=player_uuid,
        reason=reason or "",
        created_at=created_at if created_at is not None else math.floor(now),
        expires_at=expires_at,
        source=source if source is not None else "file",
    )


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def encode_ban_file(entries: Iterable[BanEntry]) -> bytes:
    """The file's bytes for ``entries``: indented JSON, one key per line, easy to edit and to diff."""
    document = {"version": FILE_VERSION, "bans": [entry.to_json() for entry in entries]}
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_ban_file(path: Path, entries: Iterable[BanEntry]) -> _Signature:
    """Save atomically: write a temporary file in the same folder, fsync it, rename it over ``path``, fsync
    the folder. A reader sees the old file or the new one, never a mix. Raises :class:`BanFileError`."""
    data = encode_ban_file(entries)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fchmod(file.fileno(), mode)
                os.fsync(file.fileno())
                stat = os.fstat(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _fsync_folder(path.parent)
    except OSError as exc:
        raise BanFileError(path, f"cannot write: {exc.strerror or exc}") from None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _signature(path: Path) -> _Signature:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files (``.NAME.XXXXXXXX.tmp``) that saves of ``path`` killed half-way left in
    its folder; returns those removed.

    It runs under the folder's lock, taken without waiting: a save holds that lock from creating its
    temporary file until renaming it, so a temporary file found while holding the lock is a leftover. When
    another writer holds the lock, nothing is removed now (the next load does it). Never raises: a file that
    cannot be removed is logged.
    """
    if sys.platform == "win32":  # no lock to tell a leftover from a save in progress
        return []
    prefix = f".{path.name}."
    removed: list[Path] = []
    try:
        with _locked(path, timeout=0), os.scandir(path.parent) as entries:
            leftovers = [
                Path(entry.path)
                for entry in entries
                if entry.name.startswith(prefix)
                and entry.name.endswith(".tmp")
                and _TEMPORARY_RANDOM.fullmatch(entry.name[len(prefix) : -len(".tmp")])
            ]
            for leftover in leftovers:
                try:
                    os.unlink(leftover)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    logger.warning(
                        "stale ban file temporary not removed path=%s error=%s",
                        quote(str(leftover)),
                        quote(exc.strerror or str(exc)),
                    )
                    continue
                logger.info("stale ban file temporary removed path=%s", quote(str(leftover)))
                removed.append(leftover)
    except BanFileError:  # another writer holds the lock: its temporary file may be a save in progress
        pass
    except OSError:  # no folder (no file yet either), or one that cannot be listed: loading reports it
        pass
    return removed


@contextlib.contextmanager
def _locked(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive advisory lock on the file's folder (the file itself is replaced by every save, so
    it cannot carry the lock). Raises :class:`BanFileError` if another writer keeps it past ``timeout``
    (0: one attempt)."""
    if sys.platform == "win32":  # no flock: saving stays atomic, concurrent writers are not serialized
        yield
        return
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except FileNotFoundError:  # no folder, no file yet: the first save makes both
        yield
        return
    except OSError as exc:
        raise BanFileError(path, f"cannot lock its folder: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BanFileError(
                        path, f"another process kept the ban file locked for {timeout:g}s"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
