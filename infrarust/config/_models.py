"""Frozen configuration models: what a loaded ``infrarust.toml`` plus ``servers/*.toml`` become.

Durations are stored as seconds (``float``); the loader turns ``"1h30m"`` strings into them. Every class
can also be built directly in code, which is how embedding programs and tests configure a proxy.
"""

from __future__ import annotations

import enum
from pathlib import Path

import attrs
from attrs import frozen


class ProxyMode(enum.Enum):
    """How a server's connections are handled after the handshake."""

    PASSTHROUGH = "passthrough"
    ZERO_COPY = "zero_copy"
    SERVER_ONLY = "server_only"
    CLIENT_ONLY = "client_only"
    OFFLINE = "offline"

    @property
    def is_forwarding(self) -> bool:
        """True for the modes that relay raw bytes after the handshake."""
        return self in _FORWARDING_MODES


_FORWARDING_MODES = frozenset({ProxyMode.PASSTHROUGH, ProxyMode.ZERO_COPY, ProxyMode.SERVER_ONLY})


class ForwardingMode(enum.Enum):
    """``[forwarding] mode`` / a server's ``forwarding_mode``: how an intercepted session tells the backend
    who the player is (Infrarust v2's names)."""

    NONE = "none"
    VELOCITY = "velocity"
    BUNGEECORD = "bungeecord"
    BUNGEEGUARD = "bungeeguard"


class LogFormat(enum.Enum):
    """``log_format``: how log lines are written."""

    TEXT = "text"
    JSON = "json"


class UnknownDomainBehavior(enum.Enum):
    """What a connection for a domain no server claims gets."""

    DEFAULT_MOTD = "default_motd"
    DROP = "drop"


@frozen
class Address:
    """A ``host:port`` pair; ``host`` is kept without IPv6 brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class RewriteKind(enum.Enum):
    """Which host a backend sees in the forwarded handshake."""

    NONE = "none"
    FROM_BACKEND = "from_backend"
    EXPLICIT = "explicit"


@frozen
class DomainRewrite:
    """``domain_rewrite``: ``"none"``, ``"from_backend"`` or ``{ explicit = "host" }``."""

    kind: RewriteKind = RewriteKind.NONE
    host: str | None = None


@frozen
class Motd:
    """One ``[motd.<state>]`` table; ``favicon`` is already a ``data:image/png;base64,...`` URI."""

    text: str | None = None
    favicon: str | None = None
    version_name: str | None = None
    max_players: int | None = None


@frozen
class Timeouts:
    """``[timeouts]`` of a server; ``connect=None`` means the proxy's ``connect_timeout``."""

    connect: float | None = None
    read: float | None = None
    write: float | None = None


@frozen
class IpFilter:
    """``[ip_filter]``: CIDR strings, validated at load."""

    whitelist: tuple[str, ...] = ()
    blacklist: tuple[str, ...] = ()


class LoadBalance(enum.Enum):
    """How a server with several ``addresses`` picks one for a new login (Gate Lite's strategy names)."""

    FAILOVER = "failover"
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    LEAST_CONNECTIONS = "least_connections"
    LOWEST_LATENCY = "lowest_latency"


@frozen
class HealthCheck:
    """``[health_check]`` of a server: a status ping to each address every ``interval`` seconds.

    An address is taken out after ``unhealthy_after`` failed pings in a row (a ping fails when no status
    answer comes within ``timeout``) and put back after ``healthy_after`` answered ones in a row.
    """

    interval: float = 10.0
    timeout: float = 2.0
    unhealthy_after: int = 2
    healthy_after: int = 1


class ManagerType(enum.Enum):
    """Who starts and stops a ``[server_manager]`` server."""

    LOCAL = "local"
    DOCKER = "docker"


# The vanilla server's last start-up line is "Done (12.345s)! For help, type "help"".
DEFAULT_READY_PATTERN = r"Done \("


@frozen
class ServerManager:
    """``[server_manager]`` of a server: started when a player arrives, stopped when idle.

    ``type = "local"`` uses ``command``, ``args``, ``working_dir`` and ``ready_pattern``;
    ``type = "docker"`` uses ``container`` (a name or id) on the ``[docker]`` endpoint. Durations in seconds;
    ``shutdown_after=None`` means never stopped for being idle.
    """

    type: ManagerType
    command: str | None = None
    args: tuple[str, ...] = ()
    working_dir: Path | None = None
    ready_pattern: str = DEFAULT_READY_PATTERN
    container: str | None = None
    start_timeout: float = 60.0
    shutdown_after: float | None = None
    shutdown_timeout: float = 30.0


@frozen
class ServerConfig:
    """One backend server (one file in ``servers_dir``)."""

    name: str
    addresses: tuple[Address, ...]
    domains: tuple[str, ...] = ()
    proxy_mode: ProxyMode = ProxyMode.PASSTHROUGH
    send_proxy_protocol: bool = False
    domain_rewrite: DomainRewrite = DomainRewrite()
    max_players: int = 0
    disconnect_message: str = "Server is currently unreachable. Please try again later."
    motd: dict[str, Motd] = attrs.field(factory=dict, hash=False)
    timeouts: Timeouts = Timeouts()
    ip_filter: IpFilter = IpFilter()
    load_balance: LoadBalance = LoadBalance.FAILOVER
    status_aggregate: bool = False
    health_check: HealthCheck = HealthCheck()
    server_manager: ServerManager | None = None
    forwarding_mode: ForwardingMode | None = None  # None: the proxy's [forwarding] mode
    source: Path | None = None  # the file it was loaded from, for messages; None when built in code


@frozen
class RateLimit:
    """``[rate_limit]``: per client IP budgets; 0 disables a budget."""

    max_connections: int = 3
    window: float = 10.0
    status_max: int = 30
    status_window: float = 10.0


@frozen
class StatusCache:
    """``[status_cache]``."""

    ttl: float = 5.0
    max_entries: int = 1000


@frozen
class Keepalive:
    """``[keepalive]``: TCP keepalive applied to client and backend sockets."""

    time: float = 30.0
    interval: float = 10.0
    retries: int = 3


@frozen
class Ban:
    """``[ban]``: persistent bans (see :mod:`infrarust.bans`)."""

    # Relative to the configuration file's folder, like servers_dir: a loaded configuration holds it
    # absolute; one built in code resolves it against the working directory.
    file: str = "bans.json"
    purge_interval: float = 300.0
    enable_audit_log: bool = True


@frozen
class ZeroCopy:
    """``[zero_copy]``: kernel pipe size per direction for splice."""

    pipe_size: int = 65536


@frozen
class Metrics:
    """``[metrics]``: present means on."""

    bind: Address = Address("127.0.0.1", 9100)


@frozen
class RedisUrl:
    """Where a fleet's Redis is: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS."""

    host: str
    port: int = 6379
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    def __str__(self) -> str:
        # Never the password: this is what logs and messages show.
        auth = "***@" if self.password is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{self.port}/{self.db}"


@frozen
class Cluster:
    """``[cluster]``: present means this instance shares bans, rate limits and player counts through Redis.

    ``instance_id`` empty means host name + pid, chosen at start (each worker process is an instance).
    Every Redis call is bounded by ``timeout``; each instance refreshes its entry every ``heartbeat``, and
    a silent instance's players leave the fleet's counts after three heartbeats.
    """

    redis: RedisUrl
    key_prefix: str = "infrarust:"
    instance_id: str = ""
    timeout: float = 0.25
    heartbeat: float = 2.0


@frozen
class Docker:
    """``[docker]``: present means containers labelled ``infrarust.enable=true`` are routed."""

    endpoint: str = "unix:///var/run/docker.sock"
    network: str | None = None  # which container network's address to use; None = the best one found
    poll_interval: float = 30.0
    reconnect_delay: float = 5.0


MOJANG_SESSION_SERVER = "https://sessionserver.mojang.com"


@frozen
class Auth:
    """``[auth]``: how ``client_only`` authenticates players (a Yggdrasil-compatible session server)."""

    session_server: str = MOJANG_SESSION_SERVER
    prevent_proxy_connections: bool = False  # send the player's IP to hasJoined


@frozen
class Forwarding:
    """``[forwarding]``: player-info forwarding of the intercepted modes; ``secret_file`` holds the velocity
    secret (and the bungeeguard token). Relative to the configuration file's folder, like ``[ban] file``."""

    mode: ForwardingMode = ForwardingMode.NONE
    secret_file: str | None = None


@frozen
class Permissions:
    """``[permissions]``: who may use the admin subcommands of ``/infrarust`` (names or UUIDs, verified
    players only), and whether other players may use it at all."""

    admins: tuple[str, ...] = ()
    player_commands: bool = True


@frozen
class ProxyConfig:
    """The whole configuration: ``infrarust.toml`` and the servers it points at."""

    bind: Address = Address("0.0.0.0", 25565)
    servers_dir: Path = Path("servers")
    max_connections: int = 0
    connect_timeout: float = 5.0
    handshake_timeout: float = 10.0
    receive_proxy_protocol: bool = False
    proxy_protocol_trusted: tuple[str, ...] = ()
    so_reuseport: bool = False
    workers: int = 1
    unknown_domain_behavior: UnknownDomainBehavior = UnknownDomainBehavior.DEFAULT_MOTD
    shutdown_grace: float = 0.0
    hook_timeout: float = 2.0
    log_format: LogFormat = LogFormat.TEXT
    ip_filter: IpFilter = IpFilter()  # applies to every server, before the server's own [ip_filter]
    rate_limit: RateLimit = RateLimit()
    status_cache: StatusCache = StatusCache()
    keepalive: Keepalive = Keepalive()
    ban: Ban = Ban()
    default_motd: dict[str, Motd] = attrs.field(factory=dict, hash=False)
    zero_copy: ZeroCopy = ZeroCopy()
    metrics: Metrics | None = None
    cluster: Cluster | None = None
    docker: Docker | None = None
    auth: Auth = Auth()
    forwarding: Forwarding = Forwarding()
    permissions: Permissions = Permissions()
    servers: tuple[ServerConfig, ...] = ()
    source: Path | None = None  # the infrarust.toml it was loaded from; None for defaults or code
