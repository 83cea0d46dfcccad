"""What ``/infrarust`` (``/ir``) answers: the proxy's own chat command in the intercepted modes.

Parsing is :mod:`infrarust.commands`; this module decides and replies. Every answer is a chat message
to the player who typed it; ``kick`` and ``broadcast`` act on other sessions too.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import trio

from infrarust import logs
from infrarust.commands import ADMIN_SUBCOMMANDS, PLAYER_SUBCOMMANDS, USAGE, ProxyCommand

if TYPE_CHECKING:
    from infrarust.intercepted import ActivePlayer
    from infrarust.player import Player
    from infrarust.proxy import Proxy

log = logs.get_logger(__name__)

BROADCAST_TIMEOUT = 5.0
DEFAULT_KICK = "You were kicked from the server."


async def answer(proxy: Proxy, player: ActivePlayer, command: ProxyCommand, *, admin: bool) -> None:
    """Run ``command`` for ``player`` and tell them the result."""
    for line in await _run(proxy, player, command, admin):
        await player.send_message(line)


async def _run(proxy: Proxy, player: ActivePlayer, command: ProxyCommand, admin: bool) -> list[str]:
    sub = command.subcommand
    if not command.known:
        return [f"§cUnknown subcommand {sub!r}. Try §f/{command.label} help"]
    if command.admin_only and not admin:
        return [f"§cYou do not have permission to use /{command.label} {sub}."]
    if sub == "help":
        allowed = PLAYER_SUBCOMMANDS + (ADMIN_SUBCOMMANDS if admin else ())
        return ["§6infrarust commands:", *(f"§e{USAGE[name]}" for name in allowed)]
    if sub == "version":
        from infrarust import __version__

        return [f"§6infrarust §f{__version__}"]
    if sub == "list":
        by_server: dict[str, list[str]] = collections.defaultdict(list)
        for session in proxy.sessions:
            by_server[session.server.name].append(session.name or "?")
        lines = [f"§6{sum(len(names) for names in by_server.values())} player(s) online"]
        for server, names in sorted(by_server.items()):
            lines.append(f"§e{server} §7({len(names)})§f: {', '.join(sorted(names, key=str.lower))}")
        return lines
    if sub == "server":
        return [f"§6You are on §e{player.server.name}"]
    if sub == "find":
        if len(command.words) != 1:
            return [f"§cUsage: {USAGE['find']}"]
        wanted = command.words[0].lower()
        for session in proxy.sessions:
            if (session.name or "").lower() == wanted:
                return [f"§e{session.name} §6is on §e{session.server.name}"]
        return [f"§c{command.words[0]} is not online."]
    if sub == "kick":
        if not command.words:
            return [f"§cUsage: {USAGE['kick']}"]
        wanted = command.words[0].lower()
        reason = command.after_words(1) or DEFAULT_KICK
        for session in proxy.sessions:
            if (session.name or "").lower() == wanted:
                log.info("player kicked", player=session.name, by=player.name, reason=reason)
                session.disconnect(reason)
                return [f"§6Kicked §e{session.name}"]
        return [f"§c{command.words[0]} is not online."]
    # broadcast
    if not command.argument:
        return [f"§cUsage: {USAGE['broadcast']}"]
    async with trio.open_nursery() as nursery:
        for session in proxy.sessions:
            if session.active:
                nursery.start_soon(_tell, session, command.argument)
    return []


async def _tell(player: Player, message: str) -> None:
    with trio.move_on_after(BROADCAST_TIMEOUT):
        await player.send_message(message)
