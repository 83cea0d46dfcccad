"""The load-balancing and fleet keys in files: ``load_balance``, ``status_aggregate``, ``[health_check]``
and ``[cluster]``, with their defaults and their errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from infrarust.config import (
    Cluster,
    ConfigError,
    HealthCheck,
    LoadBalance,
    ProxyConfig,
    RedisUrl,
    load_config,
    parse_redis_url,
)

SERVER = 'domains = ["lobby.example.com"]\naddresses = ["127.0.0.1:25566", "127.0.0.1:25567"]\n'


def write(folder: Path, main: str, server: str = SERVER) -> Path:
    (folder / "servers").mkdir(exist_ok=True)
    (folder / "servers" / "lobby.toml").write_text(textwrap.dedent(server), encoding="utf-8")
    path = folder / "infrarust.toml"
    path.write_text(textwrap.dedent(main), encoding="utf-8")
    return path


def problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [(problem.key, problem.message) for problem in info.value.problems]


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.cluster is None
    (server,) = config.servers
    assert server.load_balance is LoadBalance.FAILOVER
    assert server.status_aggregate is False
    assert server.health_check == HealthCheck(interval=10.0, timeout=2.0, unhealthy_after=2, healthy_after=1)
    assert ProxyConfig().cluster is None


def test_every_key(tmp_path: Path) -> None:
    main = """
        [cluster]
        redis = "rediss://fleet:p%40ss@redis.internal:6380/2"
        key_prefix = "mc:"
        instance_id = "proxy-a"
        timeout = "100ms"
        heartbeat = "1s"
    """
    server = (
        SERVER
        + """
        load_balance = "least_connections"
        status_aggregate = true
        [health_check]
        interval = "5s"
        timeout = "500ms"
        unhealthy_after = 3
        healthy_after = 2
    """
    )
    config = load_config(write(tmp_path, main, server))
    assert config.cluster == Cluster(
        redis=RedisUrl("redis.internal", 6380, 2, tls=True, username="fleet", password="p@ss"),
        key_prefix="mc:",
        instance_id="proxy-a",
        timeout=0.1,
        heartbeat=1.0,
    )
    (lobby,) = config.servers
    assert lobby.load_balance is LoadBalance.LEAST_CONNECTIONS
    assert lobby.status_aggregate is True
    assert lobby.health_check == HealthCheck(5.0, 0.5, 3, 2)


@pytest.mark.parametrize("strategy", [strategy.value for strategy in LoadBalance])
def test_every_strategy_loads(tmp_path: Path, strategy: str) -> None:
    config = load_config(write(tmp_path, "", SERVER + f'load_balance = "{strategy}"\n'))
    assert config.servers[0].load_balance is LoadBalance(strategy)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ('load_balance = "least_conn"', "load_balance", "unknown load_balance 'least_conn'; valid values:"),
        ("status_aggregate = 1", "status_aggregate", "expected true or false"),
        ('[health_check]\ninterval = "0s"', "health_check.interval", "must be longer than 0"),
        ("[health_check]\ntimeout = 2", "health_check.timeout", "durations are strings with a unit"),
        ("[health_check]\nunhealthy_after = 0", "health_check.unhealthy_after", "must be at least 1"),
        ("[health_check]\nhealthy_after = -1", "health_check.healthy_after", "must not be negative"),
        ("[health_check]\nretries = 3", "health_check.retries", "unknown key"),
    ],
)
def test_server_errors(tmp_path: Path, text: str, key: str, message: str) -> None:
    found = problems(write(tmp_path, "", SERVER + text + "\n"))
    assert len(found) == 1, found
    assert found[0][0] == key
    assert found[0][1].startswith(message), found


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[cluster]", "cluster.redis", "required key is missing"),
        ('[cluster]\nredis = "http://h"', "cluster.redis", "a Redis URL starts with redis://"),
        ('[cluster]\nredis = "redis://"', "cluster.redis", "the Redis URL has no valid host"),
        ('[cluster]\nredis = "redis://h:99999"', "cluster.redis", "invalid Redis URL: Port out of range"),
        ('[cluster]\nredis = "redis://h/x"', "cluster.redis", "the Redis URL's path is the database number"),
        ('[cluster]\nredis = "redis://h"\ntimeout = "0ms"', "cluster.timeout", "must be longer than 0"),
        ('[cluster]\nredis = "redis://h"\ninstance_id = "a b"', "cluster.instance_id", "invalid instance_id"),
        (
            '[cluster]\nredis = "redis://h"\nreddis = 1',
            "cluster.reddis",
            "unknown key; did you mean 'redis'?",
        ),
    ],
)
def test_cluster_errors(tmp_path: Path, text: str, key: str, message: str) -> None:
    found = problems(write(tmp_path, text + "\n"))
    assert len(found) == 1, found
    assert found[0][0] == key
    assert found[0][1].startswith(message), found


def test_redis_urls_never_show_the_password() -> None:
    url = parse_redis_url("redis://:hunter2@127.0.0.1")
    assert url == RedisUrl("127.0.0.1", 6379, 0, password="hunter2")
    assert "hunter2" not in str(url) and "hunter2" not in repr(url)
    assert str(url) == "redis://***@127.0.0.1:6379/0"
    assert str(parse_redis_url("rediss://[::1]:7000/5")) == "rediss://[::1]:7000/5"
    with pytest.raises(ValueError) as info:
        parse_redis_url("redis://user:hunter2@host:notaport")
    assert "hunter2" not in str(info.value)
