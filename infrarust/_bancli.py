"""The ``ban``, ``unban`` and ``bans`` commands: edit and list the ban file of a configuration.

They work on the file itself (``[ban] file`` of ``-c CONFIG``), so they need no running proxy; a running one
takes the change in within its ``purge_interval`` (it watches the file's modification time), or at once on
SIGHUP.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from infrarust.bans import BanEntry, BanFileError, BanList, ban_file, format_time, parse_uuid
from infrarust.config import ConfigError, ProxyConfig, format_duration, load_config, parse_duration

COMMANDS = ("ban", "unban", "bans")
_CONFIG_HELP = "configuration file whose [ban] file is used (default: ./infrarust.toml)"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ban``, ``unban`` and ``bans`` to the command line's subcommands."""
    ban = sub.add_parser("ban", help="ban an IP address or CIDR, or a player, in the ban file")
    ban_kinds = ban.add_subparsers(dest="kind", required=True)
    unban = sub.add_parser("unban", help="lift a ban")
    unban_kinds = unban.add_subparsers(dest="kind", required=True)
    for kinds, verb in ((ban_kinds, "ban"), (unban_kinds, "unban")):
        ip = kinds.add_parser("ip", help=f"{verb} an address or a CIDR (IPv4 or IPv6)")
        ip.add_argument(
            "target", metavar="CIDR", help="an address like 203.0.113.7 or a network like 10.0.0.0/8"
        )
        player = kinds.add_parser("player", help=f"{verb} a player by name (any case) or UUID")
        player.add_argument("target", metavar="NAME|UUID")
        for parser in (ip, player):
            parser.add_argument("-c", "--config", default=None, help=_CONFIG_HELP)
            parser.add_argument(
                "--source", default=None, help="who does it, for the audit log (default: cli:USER)"
            )
            if verb == "ban":
                parser.add_argument("--reason", default="", help="shown to the player when refused")
                parser.add_argument(
                    "--for",
                    dest="duration",
                    default=None,
                    metavar="DURATION",
                    help='like "30m" or "168h" (default: for good)',
                )
    bans = sub.add_parser("bans", help="list the bans in the ban file")
    bans.add_argument("-c", "--config", default=None, help=_CONFIG_HELP)
    bans.add_argument("--json", action="store_true", help="print the entries as the file's JSON")
    from infrarust import _fleetcli  # fleetwire: --export, --import

    _fleetcli.add_ban_file_options(bans)


def run(options: argparse.Namespace) -> int:
    """Run one of the commands; returns the exit code (1 with a message on stderr for any problem)."""
    try:
        config = load_config(options.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    from infrarust import _fleetcli  # fleetwire: the fleet's bans (Redis), export and import

    try:
        if config.cluster is not None:
            return _fleetcli.run_fleet_bans(
                config, options, getattr(options, "source", None) or _default_source()
            )
        bans = BanList.load(ban_file(config), audit=config.ban.enable_audit_log)
        if options.command == "bans":
            transfer = _fleetcli.run_local_transfer(bans, options)
            if transfer is not None:
                return transfer
            return _list(bans, options.json)
        source = options.source or _default_source()
        if options.command == "ban":
            return _ban(bans, config, options, source)
        return _unban(bans, options, source)
    except BanFileError as exc:
        print(exc.config_error(config.source), file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"{options.command}: {exc}", file=sys.stderr)
        return 1


def _ban(
    bans: BanList, config: ProxyConfig, options: argparse.Namespace, source: str, *, quiet: bool = False
) -> int:
    duration = None
    if options.duration is not None:
        try:
            duration = parse_duration(options.duration)
        except ValueError as exc:
            print(f"ban: --for: {exc}", file=sys.stderr)
            return 1
    if options.kind == "ip":
        entry = bans.ban_ip(options.target, reason=options.reason, duration=duration, source=source)
    else:
        name, uuid = _player(options.target)
        entry = bans.ban_player(name, uuid, reason=options.reason, duration=duration, source=source)
    until = f"until {format_time(entry.expires_at)}" if entry.expires_at is not None else "permanently"
    print(f"banned {entry.target} {until}")
    if quiet:  # fleetwire: the fleet applies it through Redis
        return 0
    interval = config.ban.purge_interval
    when = f"within {format_duration(interval)} (purge_interval)" if interval > 0 else "at its next reload"
    print(f"a running proxy applies it {when}, or at once on SIGHUP", file=sys.stderr)
    return 0


def _unban(bans: BanList, options: argparse.Namespace, source: str) -> int:
    if options.kind == "ip":
        removed = bans.unban_ip(options.target, source=source)
    else:
        name, uuid = _player(options.target)
        removed = bans.unban_player(name, uuid, source=source)
    if not removed:
        print(f"unban: {options.kind} {options.target} is not banned", file=sys.stderr)
        return 1
    for entry in removed:
        print(f"unbanned {entry.target}")
    return 0


def _list(bans: BanList, as_json: bool) -> int:
    if as_json:
        print(json.dumps([entry.to_json() for entry in bans.entries()], indent=2, ensure_ascii=False))
        return 0
    now = time.time()
    for entry in bans.entries():
        print(_describe(entry, now))
    print(f"{len(bans)} ban(s) in {bans.path or 'the fleet'}", file=sys.stderr)
    return 0


def _describe(entry: BanEntry, now: float) -> str:
    expires = format_time(entry.expires_at) if entry.expires_at is not None else "never"
    state = " (expired)" if entry.expired(now) else ""
    reason = json.dumps(entry.reason, ensure_ascii=False)
    return (
        f"{entry.target}  expires={expires}{state}  created={format_time(entry.created_at)}"
        f"  source={entry.source}  reason={reason}"
    )


def _player(target: str) -> tuple[str | None, str | None]:
    """A ``NAME|UUID`` argument as (name, uuid): 32 hex digits (hyphens allowed) are a UUID."""
    try:
        parse_uuid(target)
    except ValueError:
        return target, None
    return None, target


def _default_source() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (containers)
        return "cli"
