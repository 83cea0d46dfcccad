"""Loading infrarust.toml and servers/*.toml: every key, every default, every error and warning."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest
from test_config_values import png

import infrarust.config._loader as config_loader
from infrarust.config import (
    NOT_YET_ENFORCED,
    Address,
    Ban,
    ConfigError,
    ConfigProblem,
    DomainRewrite,
    IpFilter,
    Keepalive,
    LogFormat,
    Metrics,
    Motd,
    ProxyConfig,
    ProxyMode,
    RateLimit,
    RewriteKind,
    ServerConfig,
    StatusCache,
    Timeouts,
    UnknownDomainBehavior,
    ZeroCopy,
    load_config,
)

REPO = Path(__file__).resolve().parent.parent
MINIMAL_SERVER = 'domains = ["play.example.com"]\naddresses = ["127.0.0.1:25566"]\n'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def main(tmp_path: Path) -> Path:
    """An empty infrarust.toml next to an empty servers/ folder."""
    (tmp_path / "servers").mkdir()
    return write(tmp_path / "infrarust.toml", "")


def server_file(main: Path, name: str, text: str = MINIMAL_SERVER) -> Path:
    return write(main.parent / "servers" / name, text).resolve()


def problems(path: Path | None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return list(info.value.problems)


def only_problem(path: Path) -> ConfigProblem:
    found = problems(path)
    assert len(found) == 1, found
    return found[0]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


# --- every key and every default -------------------------------------------------------------------------


def test_every_proxy_key(main: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(main.parent / "icons" / "unknown.png", "")
    (main.parent / "icons" / "unknown.png").write_bytes(png())
    write(
        main,
        """
        bind = "[::]:25577"
        servers_dir = "backends"
        max_connections = 500
        connect_timeout = "2s"
        handshake_timeout = "1m"
        receive_proxy_protocol = true
        proxy_protocol_trusted = ["10.1.2.3/8", "2001:db8::/32", "192.168.1.1"]
        so_reuseport = true
        workers = 4
        unknown_domain_behavior = "drop"
        shutdown_grace = "30s"
        hook_timeout = "250ms"
        log_format = "json"

        [ip_filter]
        whitelist = ["10.0.0.1/8"]
        blacklist = ["203.0.113.7"]

        [rate_limit]
        max_connections = 5
        window = "1m"
        status_max = 0
        status_window = "30s"

        [status_cache]
        ttl = "500ms"
        max_entries = 10

        [keepalive]
        time = "1m"
        interval = "5s"
        retries = 9

        [ban]
        file = "state/bans.json"
        purge_interval = "1h"
        enable_audit_log = false

        [default_motd.online]
        text = "Unknown server"
        favicon = "icons/unknown.png"
        version_name = "infrarust"
        max_players = 100

        [default_motd.offline]
        text = "Offline"

        [zero_copy]
        pipe_size = 1048576

        [metrics]
        bind = "0.0.0.0:9200"
        """,
    )
    (main.parent / "backends").mkdir()
    config = load_config(main)
    assert config.bind == Address("::", 25577)
    assert config.servers_dir == (main.parent / "backends").resolve()
    assert config.servers_dir.is_absolute()
    assert config.max_connections == 500
    assert config.connect_timeout == 2.0
    assert config.handshake_timeout == 60.0
    assert config.receive_proxy_protocol is True
    assert config.proxy_protocol_trusted == ("10.0.0.0/8", "2001:db8::/32", "192.168.1.1/32")
    assert config.so_reuseport is True
    assert config.workers == 4
    assert config.unknown_domain_behavior is UnknownDomainBehavior.DROP
    assert config.shutdown_grace == 30.0
    assert config.hook_timeout == 0.25
    assert config.log_format is LogFormat.JSON
    assert config.ip_filter == IpFilter(whitelist=("10.0.0.0/8",), blacklist=("203.0.113.7/32",))
    assert config.rate_limit == RateLimit(max_connections=5, window=60.0, status_max=0, status_window=30.0)
    assert config.status_cache == StatusCache(ttl=0.5, max_entries=10)
    assert config.keepalive == Keepalive(time=60.0, interval=5.0, retries=9)
    ban_file = str((main.parent / "state" / "bans.json").resolve())  # relative to the file, like servers_dir
    assert config.ban == Ban(file=ban_file, purge_interval=3600.0, enable_audit_log=False)
    favicon = "data:image/png;base64," + base64.b64encode(png()).decode()
    assert config.default_motd == {
        "online": Motd(text="Unknown server", favicon=favicon, version_name="infrarust", max_players=100),
        "offline": Motd(text="Offline"),
    }
    assert config.zero_copy == ZeroCopy(pipe_size=1048576)
    assert config.metrics == Metrics(bind=Address("0.0.0.0", 9200))
    assert config.servers == ()
    assert config.source == main.resolve()


def test_every_proxy_default(main: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(main)
    assert config.bind == Address("0.0.0.0", 25565)
    assert config.servers_dir == (main.parent / "servers").resolve()
    assert config.max_connections == 0
    assert config.connect_timeout == 5.0
    assert config.handshake_timeout == 10.0
    assert config.receive_proxy_protocol is False
    assert config.proxy_protocol_trusted == ()
    assert config.so_reuseport is False
    assert config.workers == 1
    assert config.unknown_domain_behavior is UnknownDomainBehavior.DEFAULT_MOTD
    assert config.shutdown_grace == 0.0
    assert config.hook_timeout == 2.0
    assert config.log_format is LogFormat.TEXT
    assert config.ip_filter == IpFilter()
    assert config.rate_limit == RateLimit(max_connections=3, window=10.0, status_max=30, status_window=10.0)
    assert config.status_cache == StatusCache(ttl=5.0, max_entries=1000)
    assert config.keepalive == Keepalive(time=30.0, interval=10.0, retries=3)
    ban_file = str((main.parent / "bans.json").resolve())
    assert config.ban == Ban(file=ban_file, purge_interval=300.0, enable_audit_log=True)
    assert config.default_motd == {}
    assert config.zero_copy == ZeroCopy(pipe_size=65536)
    assert config.metrics is None
    assert config.servers == ()
    assert config.source == main.resolve()
    assert warnings(caplog) == []


def test_metrics_table_present_means_on(main: Path) -> None:
    write(main, "[metrics]\n")
    assert load_config(main).metrics == Metrics(bind=Address("127.0.0.1", 9100))


def test_every_server_key(main: Path) -> None:
    (main.parent / "servers" / "icon.png").write_bytes(png())
    path = server_file(
        main,
        "survival.toml",
        """
        name = "smp-1"
        domains = ["Play.Example.COM.", "*.smp.example.com", "mc?.example.com"]
        addresses = ["10.0.0.5:25570", "backup.internal", "[2001:db8::7]:25571"]
        proxy_mode = "zero_copy"
        send_proxy_protocol = true
        domain_rewrite = { explicit = "smp.internal" }
        max_players = 200
        disconnect_message = "SMP is down"

        [motd.online]
        text = "Welcome"
        favicon = "icon.png"
        version_name = "1.21"
        max_players = 200

        [motd.unreachable]
        text = "Restarting"

        [motd.offline]
        max_players = 0

        [timeouts]
        connect = "3s"
        read = "2m"
        write = "90s"

        [ip_filter]
        whitelist = ["192.168.0.0/16"]
        blacklist = ["203.0.113.9/24", "::1"]
        """,
    )
    config = load_config(main)
    (server,) = config.servers
    favicon = "data:image/png;base64," + base64.b64encode(png()).decode()
    assert server == ServerConfig(
        name="smp-1",
        domains=("play.example.com", "*.smp.example.com", "mc?.example.com"),
        addresses=(
            Address("10.0.0.5", 25570),
            Address("backup.internal", 25565),
            Address("2001:db8::7", 25571),
        ),
        proxy_mode=ProxyMode.ZERO_COPY,
        send_proxy_protocol=True,
        domain_rewrite=DomainRewrite(RewriteKind.EXPLICIT, "smp.internal"),
        max_players=200,
        disconnect_message="SMP is down",
        motd={
            "online": Motd(text="Welcome", favicon=favicon, version_name="1.21", max_players=200),
            "unreachable": Motd(text="Restarting"),
            "offline": Motd(max_players=0),
        },
        timeouts=Timeouts(connect=3.0, read=120.0, write=90.0),
        ip_filter=IpFilter(whitelist=("192.168.0.0/16",), blacklist=("203.0.113.0/24", "::1/128")),
        source=path,
    )


def test_every_server_default(main: Path) -> None:
    path = server_file(
        main, "lobby.toml", 'domains = ["lobby.example.com"]\naddresses = ["127.0.0.1:25566"]\n'
    )
    (server,) = load_config(main).servers
    assert server.name == "lobby"
    assert server.domains == ("lobby.example.com",)
    assert server.addresses == (Address("127.0.0.1", 25566),)
    assert server.proxy_mode is ProxyMode.PASSTHROUGH
    assert server.send_proxy_protocol is False
    assert server.domain_rewrite == DomainRewrite(RewriteKind.NONE, None)
    assert server.max_players == 0
    assert server.disconnect_message == "Server is currently unreachable. Please try again later."
    assert server.motd == {}
    assert server.timeouts == Timeouts(connect=None, read=None, write=None)
    assert server.ip_filter == IpFilter(whitelist=(), blacklist=())
    assert server.source == path


@pytest.mark.parametrize(
    ("value", "rewrite"),
    [
        ('"none"', DomainRewrite(RewriteKind.NONE)),
        ('"from_backend"', DomainRewrite(RewriteKind.FROM_BACKEND)),
        ('{ explicit = "10.0.0.5" }', DomainRewrite(RewriteKind.EXPLICIT, "10.0.0.5")),
        ('{ explicit = "::1" }', DomainRewrite(RewriteKind.EXPLICIT, "::1")),
    ],
)
def test_domain_rewrite_forms(main: Path, value: str, rewrite: DomainRewrite) -> None:
    server_file(main, "a.toml", MINIMAL_SERVER + f"domain_rewrite = {value}\n")
    assert load_config(main).servers[0].domain_rewrite == rewrite


@pytest.mark.parametrize("mode", ["passthrough", "zero_copy", "server_only"])
def test_forwarding_modes_load(main: Path, mode: str) -> None:
    server_file(main, "a.toml", MINIMAL_SERVER + f'proxy_mode = "{mode}"\n')
    assert load_config(main).servers[0].proxy_mode is ProxyMode(mode)


def test_favicon_base64_and_data_uri_in_a_file(main: Path) -> None:
    encoded = base64.b64encode(png()).decode()
    server_file(main, "a.toml", MINIMAL_SERVER + f'[motd.online]\nfavicon = "{encoded}"\n')
    server_file(
        main,
        "b.toml",
        MINIMAL_SERVER.replace("play", "b") + f'[motd.online]\nfavicon = "data:image/png;base64,{encoded}"\n',
    )
    first, second = load_config(main).servers
    assert first.motd["online"].favicon == second.motd["online"].favicon == f"data:image/png;base64,{encoded}"


def test_servers_are_sorted_by_file_name_and_skip_other_files(main: Path) -> None:
    server_file(main, "b.toml", MINIMAL_SERVER.replace("play", "b"))
    server_file(main, "a.toml", MINIMAL_SERVER.replace("play", "a"))
    server_file(main, "c.toml.disabled", "this is not toml")
    server_file(main, ".hidden.toml", "this is not toml")
    (main.parent / "servers" / "folder.toml").mkdir()
    assert [server.name for server in load_config(main).servers] == ["a", "b"]


def test_relative_config_path_resolves_servers_dir(main: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server_file(main, "a.toml")
    monkeypatch.chdir(main.parent.parent)
    config = load_config(Path(main.parent.name) / "infrarust.toml")
    assert config.servers_dir == (main.parent / "servers").resolve()
    assert config.source == main.resolve()
    assert config.servers[0].source == (main.parent / "servers" / "a.toml").resolve()


def test_load_config_none_in_empty_cwd_gives_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config == ProxyConfig()
    assert config.source is None
    assert config.servers == ()
    assert warnings(caplog) == []
    assert load_config() == ProxyConfig()


def test_load_config_none_reads_infrarust_toml_in_cwd(main: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(main, "workers = 2\n")
    monkeypatch.chdir(main.parent)
    assert load_config(None).workers == 2
    write(main, "workers = 0\n")
    assert [str(problem) for problem in problems(None)] == [
        "infrarust.toml: workers: at least 1 worker process is needed, got 0"
    ]


def test_shipped_configuration_loads_cleanly(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    config = load_config(REPO / "conf" / "infrarust.toml")
    assert caplog.records == []
    assert config.bind == Address("0.0.0.0", 25565)
    (lobby,) = config.servers
    assert lobby.name == "lobby"
    assert lobby.domains == ("localhost", "lobby.example.com")
    assert lobby.addresses == (Address("127.0.0.1", 25566),)
    assert lobby.proxy_mode is ProxyMode.PASSTHROUGH


# --- errors: "FILE: KEY: what is wrong" ------------------------------------------------------------------

# (main file text, key, message) for problems in infrarust.toml.
PROXY_ERRORS = [
    ("bnd = '0.0.0.0'", "bnd", "unknown key; did you mean 'bind'?"),
    ("servers = []", "servers", "unknown key; did you mean 'servers_dir'?"),
    ("[rate_limit]\nwindw = '1s'", "rate_limit.windw", "unknown key; did you mean 'window'?"),
    ("[keepalive]\nzzz = 1", "keepalive.zzz", "unknown key; valid keys: time, interval, retries"),
    ("[default_motd.online]\ntxt = 'x'", "default_motd.online.txt", "unknown key; did you mean 'text'?"),
    ("[metrics]\nport = 9100", "metrics.port", "unknown key; valid keys: bind"),
    ("max_connections = '3'", "max_connections", "expected a whole number, got string '3'"),
    ("max_connections = 1.5", "max_connections", "expected a whole number, got float 1.5"),
    ("max_connections = -1", "max_connections", "must not be negative, got -1"),
    ("[keepalive]\nretries = -2", "keepalive.retries", "must not be negative, got -2"),
    (
        "[status_cache]\nmax_entries = true",
        "status_cache.max_entries",
        "expected a whole number, got boolean true",
    ),
    ("so_reuseport = 'yes'", "so_reuseport", "expected true or false, got string 'yes'"),
    ("so_reuseport = 1", "so_reuseport", "expected true or false, got integer 1"),
    ("bind = 25565", "bind", "expected a string, got integer 25565"),
    ("servers_dir = ''", "servers_dir", "expected a folder path, got an empty string"),
    ("rate_limit = 3", "rate_limit", "expected a table, got integer 3"),
    (
        "default_motd = 'hi'",
        "default_motd",
        "expected a table of states (like [motd.online]), got string 'hi'",
    ),
    ("[default_motd]\nonline = 'hi'", "default_motd.online", "expected a table, got string 'hi'"),
    ("[ban]\nfile = 5", "ban.file", "expected a string, got integer 5"),
    (
        "connect_timeout = 5",
        "connect_timeout",
        'durations are strings with a unit, like "5s" or "5ms"; got 5',
    ),
    ("connect_timeout = '5'", "connect_timeout", "invalid duration '5': expected a number with a unit"),
    ("[rate_limit]\nwindow = '10 secnds'", "rate_limit.window", "unknown unit 'secnds'"),
    ("hook_timeout = '0s'", "hook_timeout", "must be longer than 0, got '0s'"),
    ("shutdown_grace = 30", "shutdown_grace", 'durations are strings with a unit, like "30s"'),
    ("log_format = 'yaml'", "log_format", "unknown log_format 'yaml'; valid values: 'text', 'json'"),
    ("[ip_filter]\nblacklist = ['lan']", "ip_filter.blacklist[0]", "invalid CIDR 'lan'"),
    ("[ip_filter]\ndeny = []", "ip_filter.deny", "unknown key; valid keys: whitelist, blacklist"),
    ("worker_threads = -1", "worker_threads", "must not be negative, got -1"),
    ("worker_threads = 'auto'", "worker_threads", "expected a whole number, got string 'auto'"),
    ("[keepalive]\ntime = true", "keepalive.time", 'expected a duration like "5s", got boolean true'),
    (
        "bind = '0.0.0.0:70000'",
        "bind",
        "invalid address '0.0.0.0:70000': port '70000' is not a number from 0 to 65535",
    ),
    ("bind = ':::25565'", "bind", "put IPv6 addresses in brackets"),
    ("[metrics]\nbind = 'localhost:x'", "metrics.bind", "port 'x' is not a number from 0 to 65535"),
    ("workers = 0", "workers", "at least 1 worker process is needed, got 0"),
    ("workers = -1", "workers", "must not be negative, got -1"),
    (
        "[zero_copy]\npipe_size = 1024",
        "zero_copy.pipe_size",
        "from 4096 to 1048576 (1 MiB), got integer 1024",
    ),
    (
        "[zero_copy]\npipe_size = 2097152",
        "zero_copy.pipe_size",
        "got integer 2097152; the kernel rounds it up",
    ),
    ("[zero_copy]\npipe_size = '64k'", "zero_copy.pipe_size", "got string '64k'"),
    ("unknown_domain_behavior = 'kick'", "unknown_domain_behavior", "valid values: default_motd, drop"),
    ("proxy_protocol_trusted = ['10.0.0.0/33']", "proxy_protocol_trusted[0]", "invalid CIDR '10.0.0.0/33'"),
    ("proxy_protocol_trusted = 'any'", "proxy_protocol_trusted", "expected an array, got string 'any'"),
    (
        "[default_motd.Online]\ntext = 'x'",
        "default_motd.Online",
        "unknown state 'Online'; did you mean 'online'?",
    ),
    ("[default_motd.maintenance]\ntext = 'x'", "default_motd.maintenance", "valid states: online, offline,"),
    ("[default_motd.online]\nmax_players = -1", "default_motd.online.max_players", "must not be negative"),
    (
        "[default_motd.online]\nfavicon = 'missing.png'",
        "default_motd.online.favicon",
        "cannot read favicon file",
    ),
    (
        "[default_motd.online]\nfavicon = 'data:image/jpeg;base64,AAAA'",
        "default_motd.online.favicon",
        "must start with",
    ),
    ("[default_motd.online]\nfavicon = 'iVBORw0KGgo!!!'", "default_motd.online.favicon", "not valid base64"),
    (
        "[default_motd.online]\nfavicon = 'data:image/png;base64,R0lGODlhAQABAAAAACw='",
        "default_motd.online.favicon",
        "the favicon is not a PNG image",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "message"), PROXY_ERRORS, ids=[case[1] + ":" + case[2][:20] for case in PROXY_ERRORS]
)
def test_proxy_file_errors(main: Path, text: str, key: str, message: str) -> None:
    write(main, text + "\n")
    problem = only_problem(main)
    assert (problem.file, problem.key) == (str(main), key)
    assert message in problem.message
    assert str(problem).startswith(f"{main}: {key}: ")


def test_favicon_file_that_is_not_png(main: Path) -> None:
    write(main.parent / "icon.png", "GIF89a")
    write(main, "[default_motd.online]\nfavicon = 'icon.png'\n")
    assert str(only_problem(main)) == (
        f"{main}: default_motd.online.favicon:"
        " the favicon is not a PNG image (it does not start with the PNG signature)"
    )


# (server file text, key, message) for problems in a server file.
SERVER_ERRORS = [
    (MINIMAL_SERVER + "adresses = ['x']", "adresses", "unknown key; did you mean 'addresses'?"),
    (MINIMAL_SERVER + "[timeouts]\nconect = '1s'", "timeouts.conect", "unknown key; did you mean 'connect'?"),
    (MINIMAL_SERVER + "[motd.online]\ntxt = 'x'", "motd.online.txt", "unknown key; did you mean 'text'?"),
    (MINIMAL_SERVER + "[ip_filter]\nallow = []", "ip_filter.allow", "unknown key"),
    (MINIMAL_SERVER + "source = 'x'", "source", "unknown key"),
    (
        MINIMAL_SERVER + "name = 'Lobby'",
        "name",
        "invalid server name 'Lobby': use lower-case letters, digits",
    ),
    (MINIMAL_SERVER + "name = 5", "name", "expected a string, got integer 5"),
    ('domains = ["a.com"]', "addresses", "required key is missing"),
    ('domains = ["a.com"]\naddresses = []', "addresses", "a server needs at least one backend address"),
    ('domains = ["a.com"]\naddresses = "h:1"', "addresses", "expected an array, got string 'h:1'"),
    ('domains = ["a.com"]\naddresses = ["h:1", "h:x"]', "addresses[1]", "port 'x' is not a number"),
    ('domains = ["a.com"]\naddresses = ["h:0"]', "addresses[0]", "a backend port must be from 1 to 65535"),
    ('domains = ["a.com"]\naddresses = ["[::1]:99999"]', "addresses[0]", "port '99999'"),
    ('domains = ["a.com"]\naddresses = [25565]', "addresses[0]", "expected a string, got integer 25565"),
    ('addresses = ["h"]', "domains", "proxy_mode 'passthrough' needs at least one domain"),
    ('addresses = ["h"]\ndomains = []', "domains", "proxy_mode 'passthrough' needs at least one domain"),
    (
        'addresses = ["h"]\nproxy_mode = "zero_copy"',
        "domains",
        "proxy_mode 'zero_copy' needs at least one domain",
    ),
    (
        'addresses = ["h"]\nproxy_mode = "server_only"',
        "domains",
        "proxy_mode 'server_only' needs at least one domain",
    ),
    (
        MINIMAL_SERVER + "proxy_mode = 'full'",
        "proxy_mode",
        "`full` is not supported: it encrypts both legs; use client_only, offline, passthrough,"
        " zero_copy or server_only",
    ),
    (
        MINIMAL_SERVER + "forwarding_mode = 'modern'",
        "forwarding_mode",
        "unknown forwarding mode 'modern'; valid values: none, velocity, bungeecord, bungeeguard",
    ),
    (
        MINIMAL_SERVER + "proxy_mode = 'splice'",
        "proxy_mode",
        "unknown proxy_mode 'splice'; valid values: passthrough, zero_copy, server_only, client_only,"
        " offline",
    ),
    (MINIMAL_SERVER + "proxy_mode = 'Passthrough'", "proxy_mode", "unknown proxy_mode 'Passthrough'"),
    (
        MINIMAL_SERVER + "domain_rewrite = 'backend'",
        "domain_rewrite",
        'expected "none", "from_backend" or { explicit',
    ),
    (MINIMAL_SERVER + "domain_rewrite = true", "domain_rewrite", "got boolean true"),
    (MINIMAL_SERVER + "domain_rewrite = { host = 'x' }", "domain_rewrite", "got a table with keys host"),
    (MINIMAL_SERVER + "domain_rewrite = { explicit = '' }", "domain_rewrite", "explicit must be a host name"),
    (
        MINIMAL_SERVER + "domain_rewrite = { explicit = 'a b' }",
        "domain_rewrite",
        "explicit must be a host name",
    ),
    (
        MINIMAL_SERVER + "[ip_filter]\nwhitelist = ['10.0.0.0/8', 'lan']",
        "ip_filter.whitelist[1]",
        "invalid CIDR 'lan'",
    ),
    (
        MINIMAL_SERVER + "[ip_filter]\nblacklist = ['1.2.3.4/99']",
        "ip_filter.blacklist[0]",
        "invalid CIDR '1.2.3.4/99'",
    ),
    ('addresses = ["h"]\ndomains = ["play example.com"]', "domains[0]", "invalid domain 'play example.com'"),
    ('addresses = ["h"]\ndomains = ["ok.com", "a/b"]', "domains[1]", "invalid domain 'a/b'"),
    ('addresses = ["h"]\ndomains = ["é.com"]', "domains[0]", "xn-- form"),
    ('addresses = ["h"]\ndomains = [""]', "domains[0]", "empty domain"),
    ('addresses = ["h"]\ndomains = "a.com"', "domains", "expected an array, got string 'a.com'"),
    (MINIMAL_SERVER + "max_players = -5", "max_players", "must not be negative, got -5"),
    (MINIMAL_SERVER + "send_proxy_protocol = 'no'", "send_proxy_protocol", "expected true or false"),
    (MINIMAL_SERVER + "disconnect_message = 1", "disconnect_message", "expected a string, got integer 1"),
    (MINIMAL_SERVER + "[timeouts]\nconnect = '5x'", "timeouts.connect", "invalid duration '5x'"),
    (
        MINIMAL_SERVER + "[timeouts]\nread = 30",
        "timeouts.read",
        'durations are strings with a unit, like "30s"',
    ),
    (MINIMAL_SERVER + "[motd.bad-state]\ntext = 'x'", "motd.bad-state", "unknown state 'bad-state'"),
    (
        MINIMAL_SERVER + "[motd.onlin]\ntext = 'x'",
        "motd.onlin",
        "unknown state 'onlin'; did you mean 'online'?",
    ),
    (MINIMAL_SERVER + "id = 'Lobby'", "id", "invalid server id 'Lobby': use lower-case letters"),
    (MINIMAL_SERVER + "id = 7", "id", "invalid server id 7"),
    (
        'domains = ["a.com"]\naddresses = [{ address = "10.0.0.1:25565", weight = 3 }]',
        "addresses[0]",
        "weighted addresses are Infrarust's load balancing, which is not built in infrarust",
    ),
    (MINIMAL_SERVER + "[motd.online]\ntext = 5", "motd.online.text", "expected a string, got integer 5"),
    (
        MINIMAL_SERVER + "[motd.online]\nversion_name = []",
        "motd.online.version_name",
        "expected a string, got an array",
    ),
    (
        MINIMAL_SERVER + "[motd.online]\nfavicon = 'nope.png'",
        "motd.online.favicon",
        "cannot read favicon file",
    ),
    (MINIMAL_SERVER + "motd = 1", "motd", "expected a table of states"),
]


@pytest.mark.parametrize(
    ("text", "key", "message"), SERVER_ERRORS, ids=[case[1] + ":" + case[2][:20] for case in SERVER_ERRORS]
)
def test_server_file_errors(main: Path, text: str, key: str, message: str) -> None:
    path = server_file(main, "lobby.toml", text + "\n")
    problem = only_problem(main)
    assert (problem.file, problem.key) == (str(path), key)
    assert message in problem.message
    assert str(problem).startswith(f"{path}: {key}: ")


def test_favicon_path_is_relative_to_the_server_file(main: Path) -> None:
    (main.parent / "icon.png").write_bytes(png())
    server_file(main, "a.toml", MINIMAL_SERVER + "[motd.online]\nfavicon = 'icon.png'\n")
    assert only_problem(main).key == "motd.online.favicon"
    server_file(main, "a.toml", MINIMAL_SERVER + "[motd.online]\nfavicon = '../icon.png'\n")
    assert load_config(main).servers[0].motd["online"].favicon is not None


def test_file_stem_that_is_not_an_id_gives_a_clean_id(main: Path) -> None:
    server_file(main, "My Server.toml")
    assert load_config(main).servers[0].name == "my-server"
    server_file(main, "My Server.toml", MINIMAL_SERVER + "name = 'mine'\n")
    assert load_config(main).servers[0].name == "mine"


def test_file_stem_with_nothing_to_make_an_id_from(main: Path) -> None:
    path = server_file(main, "+++.toml")
    assert str(only_problem(main)) == (
        f"{path}: name: no server id can be made from the file name '+++.toml'; set `name` in the file"
    )


def test_duplicate_server_names(main: Path) -> None:
    first = server_file(main, "a.toml", MINIMAL_SERVER.replace("play", "a") + "name = 'hub'\n")
    second = server_file(main, "b.toml", MINIMAL_SERVER.replace("play", "b") + "name = 'hub'\n")
    assert str(only_problem(main)) == f"{second}: name: server name 'hub' is already used by {first}"


def test_duplicate_name_from_stem(main: Path) -> None:
    first = server_file(main, "hub.toml", MINIMAL_SERVER.replace("play", "a"))
    second = server_file(main, "z.toml", MINIMAL_SERVER.replace("play", "b") + "name = 'hub'\n")
    problem = only_problem(main)
    assert (problem.file, problem.key) == (str(second), "name")
    assert str(first) in problem.message


def test_explicit_path_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    assert str(only_problem(path)) == f"{path}: -: file not found"


def test_explicit_path_is_a_folder(tmp_path: Path) -> None:
    assert str(only_problem(tmp_path)) == f"{tmp_path}: -: is a folder, expected a TOML file"


def test_unreadable_servers_dir_is_an_error(main: Path) -> None:
    """A folder that cannot be listed is not "no servers": every player would be refused without a word.

    Root reads any folder through its CAP_DAC_* capabilities, so under root the check runs without them.
    """
    servers = main.parent / "servers"
    server_file(main, "lobby.toml")
    servers.chmod(0)
    command = [sys.executable, "-m", "infrarust", "check", "-c", str(main)]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)
    finally:
        servers.chmod(0o755)
    assert result.returncode == 1, result.stderr
    expected = f"{main}: servers_dir: cannot read folder '{servers.resolve()}': Permission denied"
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_servers_dir_that_is_a_file(main: Path) -> None:
    write(main.parent / "servers.txt", "")
    write(main, "servers_dir = 'servers.txt'\n")
    problem = only_problem(main)
    assert (problem.file, problem.key) == (str(main), "servers_dir")
    assert "is not a folder" in problem.message


def test_invalid_toml_reports_line_and_column(main: Path) -> None:
    write(main, 'bind = "0.0.0.0:25565"\nworkers = = 2\n')
    assert str(only_problem(main)) == (
        f"{main}: -: invalid TOML at line 2, column 11: Unexpected character: '='"
    )


def test_invalid_toml_in_a_server_file(main: Path) -> None:
    path = server_file(main, "a.toml", "[motd\n")
    problem = only_problem(main)
    assert (problem.file, problem.key) == (str(path), "-")
    assert problem.message.startswith("invalid TOML at line 1, column ")


def test_duplicate_toml_key(main: Path) -> None:
    write(main, "workers = 1\nworkers = 2\n")
    problem = only_problem(main)
    assert problem.key == "-"
    assert problem.message.startswith('invalid TOML at line 2, column 1: Key "workers" already exists')


def test_not_utf8(main: Path) -> None:
    main.write_bytes(b"bind = '\xff'\n")
    assert str(only_problem(main)) == f"{main}: -: not UTF-8 text (byte 8)"


def test_every_problem_is_reported_together(main: Path) -> None:
    write(
        main,
        """
        workers = 0
        bnd = "x"
        [rate_limit]
        window = 10
        """,
    )
    a = server_file(main, "a.toml", "addresses = ['h:x']\nproxy_mode = 'full'\n[motd.online]\ntxt = 'x'\n")
    b = server_file(main, "b.toml", "domains = ['b.com']\n")
    c = server_file(main, "c.toml", "oops = \n")
    server_file(main, "d.toml", MINIMAL_SERVER)  # fine: contributes nothing
    found = [(problem.file, problem.key) for problem in problems(main)]
    assert found == [
        (str(main), "workers"),
        (str(main), "rate_limit.window"),
        (str(main), "bnd"),
        (str(a), "addresses[0]"),
        (str(a), "proxy_mode"),
        (str(a), "motd.online.txt"),
        (str(b), "addresses"),
        (str(c), "-"),
    ]
    with pytest.raises(ConfigError) as info:
        load_config(main)
    lines = str(info.value).splitlines()
    assert len(lines) == len(found)
    assert lines[0] == f"{main}: workers: at least 1 worker process is needed, got 0"


def test_cross_key_rules_reported_beside_type_errors(main: Path) -> None:
    path = server_file(main, "a.toml", "addresses = []\nmax_players = 'x'\n")
    assert [(problem.file, problem.key) for problem in problems(main)] == [
        (str(path), "domains"),
        (str(path), "addresses"),
        (str(path), "max_players"),
    ]


def test_config_error_lists_problems() -> None:
    error = ConfigError([ConfigProblem("a.toml", "bind", "bad"), ConfigProblem("b.toml", "-", "worse")])
    assert str(error) == "a.toml: bind: bad\nb.toml: -: worse"
    assert len(error.problems) == 2


# --- warnings --------------------------------------------------------------------------------------------


def test_zero_copy_off_linux_warns_and_still_loads(
    main: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.platform", "darwin")
    path = server_file(main, "a.toml", MINIMAL_SERVER + "proxy_mode = 'zero_copy'\n")
    config = load_config(main)
    assert config.servers[0].proxy_mode is ProxyMode.ZERO_COPY
    (warning,) = warnings(caplog)
    assert warning.startswith(f"{path}: proxy_mode: ")
    assert "proxy_mode = zero_copy is only supported on Linux" in warning
    assert caplog.records[0].name == "infrarust.config"


def test_zero_copy_on_linux_does_not_warn(
    main: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    server_file(main, "a.toml", MINIMAL_SERVER + "proxy_mode = 'zero_copy'\n")
    load_config(main)
    assert warnings(caplog) == []


def test_domain_conflict_warns_and_keeps_both_in_order(main: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = server_file(
        main, "10-hub.toml", 'domains = ["Play.Example.com", "*.example.com"]\naddresses = ["h1"]\n'
    )
    second = server_file(
        main, "20-new.toml", 'domains = ["play.example.com.", "*.example.com"]\naddresses = ["h2"]\n'
    )
    config = load_config(main)
    assert [server.name for server in config.servers] == ["10-hub", "20-new"]
    (warning,) = warnings(caplog)
    assert warning == (
        f"{second}: domains: domain 'play.example.com' is also claimed by {first};"
        " this file wins (later by file name)"
    )


def test_missing_servers_dir_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    main = write(tmp_path / "infrarust.toml", "servers_dir = 'nowhere'\n")
    config = load_config(main)
    assert config.servers == ()
    (warning,) = warnings(caplog)
    assert warning.startswith(f"{main}: servers_dir: folder ")
    assert "does not exist" in warning


def test_favicon_not_64x64_warns(main: Path, caplog: pytest.LogCaptureFixture) -> None:
    (main.parent / "big.png").write_bytes(png(128, 128))
    write(main, "[default_motd.offline]\nfavicon = 'big.png'\n")
    load_config(main)
    assert warnings(caplog) == [
        f"{main}: default_motd.offline.favicon: the favicon is 128x128; Minecraft clients expect 64x64"
    ]


def test_not_yet_enforced_keys_warn(
    main: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every key is enforced now; the mechanism stays for the next key that lands before its feature, so it
    # is checked with stand-in entries (a table in the main file, a key in a server file).
    stand_in = MappingProxyType({ProxyConfig: ("metrics",), ServerConfig: ("max_players",)})
    monkeypatch.setattr(config_loader, "NOT_YET_ENFORCED", stand_in)
    write(main, "[metrics]\n")
    path = server_file(main, "a.toml", MINIMAL_SERVER + "max_players = 5\n")
    load_config(main)
    assert warnings(caplog) == [
        f"{main}: metrics: metrics is accepted but not enforced yet",
        f"{path}: max_players: max_players is accepted but not enforced yet",
    ]


def test_every_key_is_enforced(main: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert NOT_YET_ENFORCED[ProxyConfig] == ()
    assert NOT_YET_ENFORCED[ServerConfig] == ()
    write(main, "[metrics]\nbind = '127.0.0.1:9200'\n[ban]\nenable_audit_log = false\n")
    server_file(main, "a.toml")
    assert load_config(main).metrics == Metrics(bind=Address("127.0.0.1", 9200))
    assert warnings(caplog) == []


def test_not_yet_enforced_keys_at_their_defaults_do_not_warn(
    main: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        main,
        """
        receive_proxy_protocol = false
        proxy_protocol_trusted = []
        [rate_limit]
        max_connections = 3
        window = "10s"
        [ban]
        file = "bans.json"
        """,
    )
    server_file(
        main, "a.toml", MINIMAL_SERVER + "send_proxy_protocol = false\nmax_players = 0\n[ip_filter]\n"
    )
    load_config(main)
    assert warnings(caplog) == []


def test_warnings_are_logged_even_when_loading_fails(main: Path, caplog: pytest.LogCaptureFixture) -> None:
    (main.parent / "big.png").write_bytes(png(128, 128))
    write(main, "[default_motd.offline]\nfavicon = 'big.png'\n")
    server_file(main, "a.toml", "addresses = []\n")
    problems(main)
    assert warnings(caplog) == [
        f"{main}: default_motd.offline.favicon: the favicon is 128x128; Minecraft clients expect 64x64"
    ]
