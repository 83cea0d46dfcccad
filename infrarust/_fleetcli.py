"""``infrarust status``, ``bans --export/--import``, and the ban commands on a fleet's Redis (``[cluster]``).

With ``[cluster]`` the fleet's bans live in Redis: ``ban``, ``unban`` and ``bans`` act there (every instance
applies a change within a second), and the ban file is only an import and export format. ``status`` shows
the fleet from Redis, or without ``[cluster]`` the local instance through its metrics endpoint.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio
from prometheus_client.parser import text_string_to_metric_families

from infrarust import _bancli
from infrarust.bans import BanEntry, BanFileError, BanList, encode_ban_file, read_ban_file
from infrarust.cluster import FleetAdmin, InstanceView, RedisError
from infrarust.config import ConfigError, ProxyConfig, load_config

# A command waits longer for Redis than a connection does: nobody is queued behind it.
COMMAND_TIMEOUT = 3.0
METRICS_TIMEOUT = 3.0

T = TypeVar("T")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status`` to the command line's subcommands."""
    status = sub.add_parser(
        "status",
        help="show the fleet's instances and backend health ([cluster]), or this instance's (metrics)",
    )
    status.add_argument("-c", "--config", default=None, help="configuration file (default: ./infrarust.toml)")


def add_ban_file_options(bans: argparse.ArgumentParser) -> None:
    """``bans --export FILE`` and ``bans --import FILE``."""
    bans.add_argument(
        "--export", metavar="FILE", default=None, help="write the bans to FILE (ban file format)"
    )
    bans.add_argument(
        "--import", dest="import_file", metavar="FILE", default=None, help="add the bans in FILE"
    )


# --- the ban commands --------------------------------------------------------------------------------


def run_local_transfer(bans: BanList, options: argparse.Namespace) -> int | None:
    """``bans --export/--import`` on the ban file; None when neither was asked."""
    if options.export is not None:
        entries = bans.entries()
        Path(options.export).write_bytes(encode_ban_file(entries))
        print(f"exported {len(entries)} ban(s) to {options.export}")
        return 0
    if options.import_file is not None:
        imported = _read(Path(options.import_file))
        for entry in imported:
            bans._add(entry)  # same target: replaced, as a ban command would
        print(f"imported {len(imported)} ban(s) into {bans.path}")
        return 0
    return None


def run_fleet_bans(config: ProxyConfig, options: argparse.Namespace, source: str) -> int:
    """``ban``, ``unban`` and ``bans`` on the fleet's Redis (``[cluster]`` is set)."""
    assert config.cluster is not None
    admin = FleetAdmin(config.cluster, timeout=max(config.cluster.timeout, COMMAND_TIMEOUT), source=source)

    async def command() -> int:
        bans = BanList(await admin.bans(), audit=False)  # in memory: the file is not the fleet's
        if options.command == "bans":
            if options.export is not None:
                data = encode_ban_file(bans.entries())
                await trio.to_thread.run_sync(Path(options.export).write_bytes, data)
                print(f"exported {len(bans)} ban(s) from {config.cluster} to {options.export}")
                return 0
            if options.import_file is not None:
                entries = await trio.to_thread.run_sync(_read, Path(options.import_file))
                count = await admin.import_bans(entries)
                print(f"imported {count} ban(s) into {config.cluster}")
                return 0
            code = _bancli._list(bans, options.json)
            return code
        if options.command == "ban":
            before = set(bans.entries())
            code = _bancli._ban(bans, config, options, source, quiet=True)
            for entry in set(bans.entries()) - before:
                await admin.ban(entry)
            if code == 0:
                print(
                    f"every instance of the fleet applies it within a second ({config.cluster})",
                    file=sys.stderr,
                )
            return code
        before = set(bans.entries())
        code = _bancli._unban(bans, options, source)
        for entry in before - set(bans.entries()):
            await admin.unban(entry)
        return code

    return _run_redis(admin, command)


def _read(path: Path) -> list[BanEntry]:
    entries, _ = read_ban_file(path)
    if not path.exists():
        raise BanFileError(path, "no such file")
    return entries


def _run_redis(admin: FleetAdmin, command: Callable[[], Awaitable[T]]) -> T | int:
    async def closing() -> T:
        try:
            return await command()
        finally:
            admin.close()  # on the event loop: trio sockets are closed from inside it

    try:
        return trio.run(closing)
    except RedisError as exc:
        print(f"cannot reach the fleet's Redis at {admin.settings.redis}: {exc}", file=sys.stderr)
        return 1


# --- status --------------------------------------------------------------------------------------------


def run_status(options: argparse.Namespace) -> int:
    """``infrarust status``: the fleet from Redis, or this instance through its metrics endpoint."""
    try:
        config = load_config(options.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if config.cluster is not None:
        admin = FleetAdmin(config.cluster, timeout=max(config.cluster.timeout, COMMAND_TIMEOUT))

        async def ask() -> list[InstanceView]:
            return await admin.instances()

        views = _run_redis(admin, ask)
        if isinstance(views, int):
            return views
        print(format_fleet(views, time.time()), end="")
        return 0
    if config.metrics is None:
        print(
            "status: the configuration has neither [cluster] nor [metrics]: nothing to ask", file=sys.stderr
        )
        return 1
    bind = config.metrics.bind
    host = "127.0.0.1" if bind.host in ("0.0.0.0", "") else "::1" if bind.host == "::" else bind.host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bind.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT) as answer:
            text = answer.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        print(f"status: cannot read {url}: {exc}", file=sys.stderr)
        return 1
    print(format_local(text, url), end="")
    return 0


def format_fleet(views: list[InstanceView], now: float) -> str:
    """The fleet's instances, their sessions per server, and each server's addresses as they see them."""
    lines = [f"{len(views)} instance(s)"]
    for view in views:
        uptime = max(0.0, now - view.started_at) if view.started_at else 0.0
        sessions = " ".join(f"{server}={count}" for server, count in sorted(view.sessions.items())) or "-"
        lines.append(
            f"  {view.instance_id}  host={view.host} pid={view.pid} uptime={uptime:.0f}s"
            f"  sessions: {sessions}  expires_in={view.expires_in:.1f}s"
        )
    lines.append("backends")
    for view in views:
        for server, addresses in sorted(view.health.items()):
            for item in addresses if isinstance(addresses, list) else ():
                lines.append("  " + _address_line(server, item, view.instance_id))
    return "\n".join(lines) + "\n"


def _address_line(server: str, item: Any, seen_by: str) -> str:
    if not isinstance(item, dict):
        return f"{server} ?"
    state = "up" if item.get("up") else "down"
    latency = item.get("latency_ms")
    shown = f" latency={latency:.1f}ms" if isinstance(latency, int | float) else ""
    error = f" error={item['error']!r}" if item.get("error") else ""
    return (
        f"{server} {item.get('address')} {state} sessions={item.get('sessions', 0)}{shown}{error}"
        f" (seen by {seen_by})"
    )


def format_local(metrics_text: str, url: str) -> str:
    """This instance's sessions per server and its balanced addresses, from its Prometheus metrics."""
    sessions: dict[str, float] = {}
    up: dict[tuple[str, str], float] = {}
    address_sessions: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "infrarust_sessions_active":
                sessions[labels["server"]] = sessions.get(labels["server"], 0) + sample.value
            elif sample.name == "infrarust_backend_up":
                up[labels["server"], labels["address"]] = sample.value
            elif sample.name == "infrarust_backend_sessions":
                address_sessions[labels["server"], labels["address"]] = sample.value
    lines = [f"local instance ({url})"]
    lines.append("  sessions: " + (" ".join(f"{s}={int(n)}" for s, n in sorted(sessions.items())) or "-"))
    lines.append("backends")
    for (server, address), value in sorted(up.items()):
        state = "up" if value else "down"
        lines.append(
            f"  {server} {address} {state} sessions={int(address_sessions.get((server, address), 0))}"
        )
    return "\n".join(lines) + "\n"
