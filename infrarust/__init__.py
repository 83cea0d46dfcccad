"""infrarust: a Minecraft Java Edition reverse proxy on Trio.

Routes each player by the domain in their handshake and relays the connection; ``zero_copy`` relays inside
the kernel with splice(2). This module only re-exports the public names.
"""

from infrarust.bans import BanEntry as BanEntry
from infrarust.bans import BanFileError as BanFileError
from infrarust.bans import BanList as BanList
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
from infrarust.events import SessionEnded as SessionEnded
from infrarust.events import SessionStarted as SessionStarted
from infrarust.hooks import Deny as Deny
from infrarust.hooks import HookHandle as HookHandle
from infrarust.hooks import PreConnect as PreConnect
from infrarust.hooks import Redirect as Redirect
from infrarust.player import Player as Player
from infrarust.player import PlayerNotActiveError as PlayerNotActiveError
from infrarust.proxy import Proxy as Proxy
from infrarust.proxy import serve as serve
from infrarust.transport import ForwardEndReason as ForwardEndReason
from infrarust.transport import ForwardResult as ForwardResult

__version__ = "0.1.0"
