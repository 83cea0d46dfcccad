"""Recognising the proxy's own chat command, ``/infrarust`` (alias ``/ir``), in what a player typed.

Pure parsing: the proxy decides what each subcommand answers. A command the proxy does not own returns
None and goes to the backend untouched.
"""

from __future__ import annotations

from attrs import frozen

COMMAND_NAMES = ("infrarust", "ir")
"""The command and its alias, as added to the client's command tree."""

PLAYER_SUBCOMMANDS = ("help", "version", "list", "server", "find")
"""Subcommands every player may use (unless ``[permissions] player_commands`` is off)."""

ADMIN_SUBCOMMANDS = ("kick", "broadcast")
"""Subcommands reserved to ``[permissions] admins``."""

USAGE = {
    "help": "/infrarust help",
    "version": "/infrarust version",
    "list": "/infrarust list",
    "server": "/infrarust server",
    "find": "/infrarust find <player>",
    "kick": "/infrarust kick <player> [reason]",
    "broadcast": "/infrarust broadcast <message>",
}
"""One usage line per subcommand, for help and for a subcommand given the wrong arguments."""


@frozen
class ProxyCommand:
    """A parsed ``/infrarust`` command.

    ``subcommand`` is lower-cased ("help" when none was given); ``argument`` is everything after it
    with the player's spacing kept, for messages and reasons; ``words`` is that split on whitespace.
    """

    label: str
    subcommand: str
    argument: str

    @property
    def words(self) -> tuple[str, ...]:
        """The arguments as words."""
        return tuple(self.argument.split())

    @property
    def known(self) -> bool:
        """Whether the subcommand exists."""
        return self.subcommand in USAGE

    @property
    def admin_only(self) -> bool:
        """Whether only admins may run it."""
        return self.subcommand in ADMIN_SUBCOMMANDS

    def after_words(self, count: int) -> str:
        """The argument text after its first ``count`` words (the reason of ``kick <player> reason``)."""
        rest = self.argument
        for _ in range(count):
            parts = rest.lstrip().split(maxsplit=1)
            rest = parts[1] if len(parts) == 2 else ""
        return rest.strip()


def parse_proxy_command(command: str) -> ProxyCommand | None:
    """The proxy command in ``command`` (a chat command without its slash), or None when the command
    belongs to the backend. The command name is matched without regard to case."""
    parts = command.split(maxsplit=1)
    if not parts or parts[0].lower() not in COMMAND_NAMES:
        return None
    rest = parts[1].split(maxsplit=1) if len(parts) == 2 else []
    subcommand = rest[0].lower() if rest else "help"
    return ProxyCommand(parts[0].lower(), subcommand, rest[1].strip() if len(rest) == 2 else "")
