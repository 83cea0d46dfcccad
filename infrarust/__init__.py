"""infrarust: a Minecraft Java Edition reverse proxy on Trio.

Routes each player by the domain in their handshake and relays the connection; ``zero_copy`` relays inside
the kernel with splice(2). This module only re-exports the public names.
"""

from infrarust.bans import BanEntry as BanEntry
from infrarust.bans import BanFileError as BanFileError
from infrarust.bans import BanList as BanList
from infrarust.config import ConfigError as ConfigError
from infrarust.config import load_config as load_config
from infrarust.config._models import Address as Address
from infrarust.config._models import ProxyConfig as ProxyConfig
from infrarust.config._models import ProxyMode as ProxyMode
from infrarust.config._models import ServerConfig as ServerConfig
from infrarust.proxy import Player as Player
from infrarust.proxy import PlayerNotActiveError as PlayerNotActiveError
from infrarust.proxy import Proxy as Proxy
from infrarust.proxy import serve as serve
from infrarust.transport import ForwardEndReason as ForwardEndReason
from infrarust.transport import ForwardResult as ForwardResult

__version__ = "0.1.0"
