"""infrarust: a Minecraft Java Edition reverse proxy on Trio.

Routes each player by the domain in their handshake and relays the connection; ``zero_copy`` relays inside
the kernel with splice(2). This module only re-exports the public names.

The names are loaded on first use (PEP 562): ``import infrarust.ping`` (the ping command, run in CI loops)
must not pay for importing the whole proxy. To export a name, add it to the ``TYPE_CHECKING`` block (for
type checkers) and to ``_EXPORTS`` (for the import); ``tests/test_packaging.py`` checks the two agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infrarust.bans import BanEntry as BanEntry
    from infrarust.bans import BanFileError as BanFileError
    from infrarust.bans import BanList as BanList
    from infrarust.collector import tune_collector as tune_collector
    from infrarust.config import Address as Address
    from infrarust.config import ConfigError as ConfigError
    from infrarust.config import ProxyConfig as ProxyConfig
    from infrarust.config import ProxyMode as ProxyMode
    from infrarust.config import ServerConfig as ServerConfig
    from infrarust.config import load_config as load_config
    from infrarust.events import ConfigReloaded as ConfigReloaded
    from infrarust.events import ConnectionRefused as ConnectionRefused
    from infrarust.events import Event as Event
    from infrarust.events import EventsDropped as EventsDropped
    from infrarust.events import PlayerChat as PlayerChat
    from infrarust.events import PlayerCommand as PlayerCommand
    from infrarust.events import SessionEnded as SessionEnded
    from infrarust.events import SessionStarted as SessionStarted
    from infrarust.hooks import CancelCommand as CancelCommand
    from infrarust.hooks import Deny as Deny
    from infrarust.hooks import HookHandle as HookHandle
    from infrarust.hooks import PreConnect as PreConnect
    from infrarust.hooks import Redirect as Redirect
    from infrarust.intercepted import ActivePlayer as ActivePlayer
    from infrarust.player import Player as Player
    from infrarust.player import PlayerNotActiveError as PlayerNotActiveError
    from infrarust.proxy import Proxy as Proxy
    from infrarust.proxy import serve as serve
    from infrarust.transport import ForwardEndReason as ForwardEndReason
    from infrarust.transport import ForwardResult as ForwardResult

    __version__: str

_EXPORTS = {
    "BanEntry": "infrarust.bans",
    "BanFileError": "infrarust.bans",
    "BanList": "infrarust.bans",
    "tune_collector": "infrarust.collector",
    "Address": "infrarust.config",
    "ConfigError": "infrarust.config",
    "ProxyConfig": "infrarust.config",
    "ProxyMode": "infrarust.config",
    "ServerConfig": "infrarust.config",
    "load_config": "infrarust.config",
    "ConfigReloaded": "infrarust.events",
    "ConnectionRefused": "infrarust.events",
    "Event": "infrarust.events",
    "EventsDropped": "infrarust.events",
    "PlayerChat": "infrarust.events",
    "PlayerCommand": "infrarust.events",
    "SessionEnded": "infrarust.events",
    "SessionStarted": "infrarust.events",
    "CancelCommand": "infrarust.hooks",
    "Deny": "infrarust.hooks",
    "HookHandle": "infrarust.hooks",
    "PreConnect": "infrarust.hooks",
    "Redirect": "infrarust.hooks",
    "ActivePlayer": "infrarust.intercepted",
    "Player": "infrarust.player",
    "PlayerNotActiveError": "infrarust.player",
    "Proxy": "infrarust.proxy",
    "serve": "infrarust.proxy",
    "ForwardEndReason": "infrarust.transport",
    "ForwardResult": "infrarust.transport",
}

__all__ = sorted([*_EXPORTS, "__version__"])

DISTRIBUTION = "infrarust"
UNKNOWN_VERSION = "0+unknown"


def _version() -> str:
    """The installed distribution's version: pyproject.toml's ``version`` is the one source."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return UNKNOWN_VERSION


if not TYPE_CHECKING:  # type checkers see the imports above; a typo must stay an error for them

    def __getattr__(name: str) -> Any:
        if name == "__version__":
            value = _version()
        elif name in _EXPORTS:
            value = getattr(importlib.import_module(_EXPORTS[name]), name)
        else:
            raise AttributeError(f"module 'infrarust' has no attribute {name!r}")
        globals()[name] = value  # looked up once
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
