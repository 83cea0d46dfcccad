"""Configuration: ``infrarust.toml`` and ``servers/*.toml`` into frozen models, every problem reported."""

from ._addresses import parse_address as parse_address
from ._durations import format_duration as format_duration
from ._durations import parse_duration as parse_duration
from ._errors import ConfigError as ConfigError
from ._errors import ConfigProblem as ConfigProblem
from ._loader import DEFAULT_CONFIG_FILE as DEFAULT_CONFIG_FILE
from ._loader import NOT_YET_ENFORCED as NOT_YET_ENFORCED
from ._loader import load_config as load_config
from ._models import Address as Address
from ._models import Ban as Ban
from ._models import DomainRewrite as DomainRewrite
from ._models import IpFilter as IpFilter
from ._models import Keepalive as Keepalive
from ._models import Metrics as Metrics
from ._models import Motd as Motd
from ._models import ProxyConfig as ProxyConfig
from ._models import ProxyMode as ProxyMode
from ._models import RateLimit as RateLimit
from ._models import RewriteKind as RewriteKind
from ._models import ServerConfig as ServerConfig
from ._models import StatusCache as StatusCache
from ._models import Timeouts as Timeouts
from ._models import UnknownDomainBehavior as UnknownDomainBehavior
from ._models import ZeroCopy as ZeroCopy
