"""Metrics: the registry and its text format, the HTTP endpoint, and a proxy scraped over real sockets.

Every value is asserted exactly: each step of a test causes a known number of connections, sessions, bytes
and server-list answers, and the scrape must show precisely those. Every scrape is read with
``prometheus_client``'s own parser, so the text is what Prometheus reads.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio
from helpers import (
    Backend,
    ask_status,
    free_port,
    handshake,
    login_start,
    proxy_config,
    read_exactly,
    read_until_eof,
    server,
    start_fake_status_server,
    start_proxy,
    start_recording_backend,
)
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from test_workers import Supervisor, relay_once, worker_pids

import infrarust
import infrarust.metrics as metrics_module
from infrarust.config._models import Address, ProxyMode, ServerConfig, StatusCache
from infrarust.config._models import Metrics as MetricsConfig
from infrarust.metrics import (
    CONTENT_TYPE,
    HEAD_LIMIT,
    Metrics,
    MetricsBindError,
    escape_label_value,
    serve_metrics,
    worker_bind,
)
from infrarust.protocol import LegacyPingKind, encode_legacy_ping, encode_packet
from infrarust.transport import ForwardEndReason, ForwardResult, Traffic

ROOT = Path(__file__).resolve().parent.parent
ON = MetricsConfig(Address("127.0.0.1", 0))
FAMILIES = [
    ("infrarust_connections_total", "counter"),
    ("infrarust_connections_open", "gauge"),
    ("infrarust_sessions_active", "gauge"),
    ("infrarust_sessions_ended_total", "counter"),
    ("infrarust_relayed_bytes_total", "counter"),
    ("infrarust_status_answers_total", "counter"),
    ("infrarust_backend_connect_failures_total", "counter"),
    ("infrarust_config_reloads_total", "counter"),
    ("infrarust_backend_connect_seconds", "histogram"),
    ("infrarust_handshake_seconds", "histogram"),
    ("infrarust_session_duration_seconds", "histogram"),
    ("infrarust_build_info", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
]
# The families whose every sample a test asserts exactly; histograms, build_info and process_* are checked
# on their own.
COUNTING = tuple(name.removesuffix("_total") for name, _ in FAMILIES[:8])
HANDSHAKE_AT_ZERO = {
    **{
        f'infrarust_handshake_seconds_bucket{{le="{le}"}}': 0
        for le in (*map(repr, metrics_module.HANDSHAKE_BUCKETS), "+Inf")
    },
    "infrarust_handshake_seconds_count": 0,
    "infrarust_handshake_seconds_sum": 0,
}
OUTCOMES_AT_ZERO = {
    f'infrarust_connections_total{{outcome="{outcome}"}}': 0 for outcome in metrics_module.OUTCOMES
}


# --- helpers ------------------------------------------------------------------------------------------


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_reply(data: bytes) -> Reply:
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator, data[:200]
    lines = head.decode("ascii").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return Reply(int(status), headers, body)


async def exchange(address: tuple[str, int], request: bytes) -> Reply:
    """Send raw bytes to the endpoint and read its whole answer (it closes after one)."""
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(request)
        return parse_reply(await read_until_eof(stream))


async def scrape(address: tuple[str, int] | None) -> dict[str, float]:
    """``GET /metrics``: every sample as ``name{labels}`` -> value, after checking the answer's form."""
    assert address is not None
    reply = await exchange(address, b"GET /metrics HTTP/1.1\r\nHost: prometheus\r\n\r\n")
    assert reply.status == 200
    assert reply.headers["content-type"] == CONTENT_TYPE
    assert reply.headers["connection"] == "close"
    assert int(reply.headers["content-length"]) == len(reply.body)
    return samples(reply.body.decode("utf-8"))


def parse(text: str) -> dict[str, Metric]:
    """Every family as ``prometheus_client``'s parser reads it, by name (counters without ``_total``)."""
    assert text.endswith("\n")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert len(families) == len(list(text_string_to_metric_families(text)))
    return families


def key(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels.items())) + "}"


def samples(text: str, names: tuple[str, ...] = COUNTING) -> dict[str, float]:
    """The samples of the counting families as ``name{labels}`` (labels sorted) -> value."""
    values: dict[str, float] = {}
    for name, parsed in parse(text).items():
        if name not in names:
            continue
        for sample in parsed.samples:
            label = key(sample.name, sample.labels)
            assert label not in values, f"{label} twice"
            values[label] = sample.value
    return values


def nonzero(values: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in values.items() if value}


def family(values: dict[str, float], name: str) -> dict[str, float]:
    return {key: value for key, value in values.items() if key == name or key.startswith(name + "{")}


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


async def connect(proxy: infrarust.Proxy) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", proxy.port)


async def start_endpoint(nursery: trio.Nursery, metrics: Metrics | None = None) -> tuple[str, int]:
    address: tuple[str, int] = await nursery.start(
        serve_metrics, metrics if metrics is not None else Metrics(), Address("127.0.0.1", 0)
    )
    return address


def reset(stream: trio.SocketStream) -> None:
    """Close with an RST (SO_LINGER 0), as a crashing client does."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


@attrs.frozen
class FakeSession:
    server: ServerConfig
    traffic: Traffic

    @property
    def mode(self) -> ProxyMode:
        return self.server.proxy_mode


# --- the registry and its text ------------------------------------------------------------------------


def test_an_empty_registry_renders_every_family_with_help_and_type() -> None:
    text = Metrics().render()
    lines = text.splitlines()
    for name, kind in FAMILIES:
        help_index = lines.index(next(line for line in lines if line.startswith(f"# HELP {name} ")))
        assert lines[help_index + 1] == f"# TYPE {name} {kind}"
    assert [line.split()[2] for line in lines if line.startswith("# TYPE")] == [name for name, _ in FAMILIES]
    assert samples(text) == {
        **OUTCOMES_AT_ZERO,
        "infrarust_connections_open": 0,
        'infrarust_config_reloads_total{result="ok"}': 0,
        'infrarust_config_reloads_total{result="rejected"}': 0,
    }
    assert samples(text, ("infrarust_handshake_seconds",)) == HANDSHAKE_AT_ZERO


def test_build_info_and_process_metrics() -> None:
    families = parse(Metrics().render())
    (info,) = families["infrarust_build_info"].samples
    assert info.value == 1
    assert info.labels == {"version": metrics_module.VERSION, "python": platform.python_version()}
    assert importlib.metadata.version("infrarust") == metrics_module.VERSION
    process = {
        sample.name: sample.value
        for name, f in families.items()
        if name.startswith("process_")
        for sample in f.samples
    }
    assert process["process_resident_memory_bytes"] > 1_000_000
    assert process["process_open_fds"] == len(os.listdir("/proc/self/fd"))  # both count their own listdir
    assert process["process_max_fds"] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert process["process_cpu_seconds_total"] > 0
    assert "process_open_fds" not in parse(Metrics(process=False).render())


def test_histograms_count_into_their_buckets() -> None:
    metrics = Metrics()
    metrics.handshake_time(0.003)
    metrics.handshake_time(0.003)
    metrics.handshake_time(20.0)  # past the last bound: only +Inf
    metrics.backend_connect_time("lobby", 0.001)  # on a bound: counted in it (le is inclusive)
    metrics.session_ended("lobby", "zero_copy", ForwardResult(1, 2, ForwardEndReason.CLIENT_CLOSED), 42.0)
    metrics.session_ended("lobby", "zero_copy", ForwardResult(1, 2, ForwardEndReason.SHUTDOWN))  # no time
    text = metrics.render()
    handshake = samples(text, ("infrarust_handshake_seconds",))
    assert handshake['infrarust_handshake_seconds_bucket{le="0.0025"}'] == 0
    assert handshake['infrarust_handshake_seconds_bucket{le="0.005"}'] == 2
    assert handshake['infrarust_handshake_seconds_bucket{le="10.0"}'] == 2
    assert handshake['infrarust_handshake_seconds_bucket{le="+Inf"}'] == 3
    assert handshake["infrarust_handshake_seconds_count"] == 3
    assert handshake["infrarust_handshake_seconds_sum"] == pytest.approx(20.006)
    connect = samples(text, ("infrarust_backend_connect_seconds",))
    assert connect['infrarust_backend_connect_seconds_bucket{le="0.0005",server="lobby"}'] == 0
    assert connect['infrarust_backend_connect_seconds_bucket{le="0.001",server="lobby"}'] == 1
    assert connect['infrarust_backend_connect_seconds_count{server="lobby"}'] == 1
    sessions = samples(text, ("infrarust_session_duration_seconds",))
    assert (
        sessions['infrarust_session_duration_seconds_bucket{le="30.0",mode="zero_copy",server="lobby"}'] == 0
    )
    assert (
        sessions['infrarust_session_duration_seconds_bucket{le="60.0",mode="zero_copy",server="lobby"}'] == 1
    )
    assert sessions['infrarust_session_duration_seconds_count{mode="zero_copy",server="lobby"}'] == 1
    assert sessions['infrarust_session_duration_seconds_sum{mode="zero_copy",server="lobby"}'] == 42.0


def test_every_configured_server_has_its_series_at_zero_from_the_start() -> None:
    configured = [
        server("lobby", ["l.test"], [Address("127.0.0.1", 1)], ProxyMode.ZERO_COPY),
        server("game", ["g.test"], [Address("127.0.0.1", 2)], ProxyMode.PASSTHROUGH),
    ]
    metrics = Metrics(servers=lambda: configured)
    values = samples(metrics.render())
    for name, mode in (("lobby", "zero_copy"), ("game", "passthrough")):
        assert values[f'infrarust_sessions_active{{mode="{mode}",server="{name}"}}'] == 0
        for reason in ("client_closed", "backend_closed", "shutdown", "error"):
            assert (
                values[f'infrarust_sessions_ended_total{{mode="{mode}",reason="{reason}",server="{name}"}}']
                == 0
            )
        for direction in ("b2c", "c2b"):
            assert values[f'infrarust_relayed_bytes_total{{direction="{direction}",server="{name}"}}'] == 0
        for source in ("cache", "backend", "motd_unreachable", "motd_default"):
            assert values[f'infrarust_status_answers_total{{server="{name}",source="{source}"}}'] == 0
        assert values[f'infrarust_backend_connect_failures_total{{server="{name}"}}'] == 0
    histograms = samples(
        metrics.render(), ("infrarust_backend_connect_seconds", "infrarust_session_duration_seconds")
    )
    assert histograms['infrarust_backend_connect_seconds_count{server="game"}'] == 0
    assert histograms['infrarust_session_duration_seconds_count{mode="zero_copy",server="lobby"}'] == 0
    configured.append(server("new", ["n.test"], [Address("127.0.0.1", 3)]))  # a reload added a server
    assert samples(metrics.render())['infrarust_backend_connect_failures_total{server="new"}'] == 0


def test_label_values_are_snake_case_everywhere() -> None:
    metrics = Metrics(servers=lambda: [server("lobby", ["l.test"], [Address("127.0.0.1", 1)])])
    for reason in ForwardEndReason:
        metrics.session_ended("lobby", "passthrough", ForwardResult(0, 0, reason))
    snake = re.compile(r"^[a-z0-9_]+$")
    for name, parsed in parse(metrics.render()).items():
        for sample in parsed.samples:
            for label, value in sample.labels.items():
                if label in ("server", "le", "version", "python") or value == "":
                    continue
                assert snake.match(value), (name, label, value)
    assert {value for (_, _, value) in metrics.sessions_ended} == {
        "client_closed",
        "backend_closed",
        "shutdown",
        "error",
    }


def test_every_update_shows_exactly_once_in_the_text() -> None:
    metrics = Metrics(open_connections=lambda: 4)
    metrics.connection("relayed")
    metrics.connection("relayed")
    metrics.connection("unknown_domain")
    metrics.session_ended("lobby", "zero_copy", ForwardResult(10, 2000, ForwardEndReason.CLIENT_CLOSED))
    metrics.session_ended("lobby", "zero_copy", ForwardResult(5, 7, ForwardEndReason.ERROR, "reset"))
    metrics.status_answer("lobby", "cache")
    metrics.status_answer("", "motd_default")
    metrics.backend_connect_failure("lobby")
    metrics.config_reload("rejected")
    assert samples(metrics.render()) == {
        **OUTCOMES_AT_ZERO,
        'infrarust_connections_total{outcome="relayed"}': 2,
        'infrarust_connections_total{outcome="unknown_domain"}': 1,
        "infrarust_connections_open": 4,
        'infrarust_sessions_active{mode="zero_copy",server="lobby"}': 0,
        'infrarust_sessions_ended_total{mode="zero_copy",reason="client_closed",server="lobby"}': 1,
        'infrarust_sessions_ended_total{mode="zero_copy",reason="error",server="lobby"}': 1,
        'infrarust_relayed_bytes_total{direction="b2c",server="lobby"}': 2007,
        'infrarust_relayed_bytes_total{direction="c2b",server="lobby"}': 15,
        'infrarust_status_answers_total{server="",source="motd_default"}': 1,
        'infrarust_status_answers_total{server="lobby",source="cache"}': 1,
        'infrarust_backend_connect_failures_total{server="lobby"}': 1,
        'infrarust_config_reloads_total{result="ok"}': 0,
        'infrarust_config_reloads_total{result="rejected"}': 1,
    }


def test_live_sessions_count_as_active_and_add_their_bytes_so_far() -> None:
    lobby = server("lobby", ["l.test"], [Address("127.0.0.1", 1)], ProxyMode.PASSTHROUGH)
    live = [FakeSession(lobby, Traffic(100, 1000)), FakeSession(lobby, Traffic(1, 2))]
    metrics = Metrics(live_sessions=lambda: live)
    metrics.session_ended("lobby", "passthrough", ForwardResult(10, 20, ForwardEndReason.BACKEND_CLOSED))
    values = samples(metrics.render())
    assert family(values, "infrarust_sessions_active") == {
        'infrarust_sessions_active{mode="passthrough",server="lobby"}': 2
    }
    assert family(values, "infrarust_relayed_bytes_total") == {
        'infrarust_relayed_bytes_total{direction="b2c",server="lobby"}': 1022,
        'infrarust_relayed_bytes_total{direction="c2b",server="lobby"}': 111,
    }
    live.clear()  # both ended: their bytes leave the live sum (the proxy moves them into the counter)
    assert family(samples(metrics.render()), "infrarust_sessions_active") == {
        'infrarust_sessions_active{mode="passthrough",server="lobby"}': 0
    }


def test_label_values_are_escaped() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    metrics = Metrics()
    odd = 'odd\\name "with"\nnewline'
    metrics.backend_connect_failure(odd)
    text = metrics.render()
    assert 'infrarust_backend_connect_failures_total{server="odd\\\\name \\"with\\"\\nnewline"} 1.0' in text
    (sample,) = parse(text)["infrarust_backend_connect_failures"].samples
    assert sample.labels == {"server": odd}


def test_every_process_uses_the_configured_address() -> None:
    bind = Address("127.0.0.1", 9100)
    assert worker_bind(bind, None) == bind
    assert worker_bind(bind, 3) == bind  # a worker serves its private socket; the supervisor this address


# --- the HTTP endpoint --------------------------------------------------------------------------------


async def test_get_head_and_a_query_string(nursery: trio.Nursery) -> None:
    metrics = Metrics(process=False)  # no CPU time moving between two scrapes
    metrics.connection("status")
    address = await start_endpoint(nursery, metrics)
    reply = await exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert reply.body == metrics.render().encode()
    assert int(reply.headers["content-length"]) == len(reply.body)
    head = await exchange(address, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == reply.headers["content-length"]
    query = await exchange(address, b"GET /metrics?name[]=x HTTP/1.1\n\n")  # bare LF line ends too
    assert query.status == 200 and query.body == reply.body


async def test_healthz_and_readyz(nursery: trio.Nursery) -> None:
    accepting = True
    address = await start_endpoint(nursery, Metrics(ready=lambda: accepting))
    for method in (b"GET", b"HEAD"):
        health = await exchange(address, method + b" /healthz HTTP/1.1\r\n\r\n")
        assert health.status == 200 and health.body == (b"ok\n" if method == b"GET" else b"")
        ready = await exchange(address, method + b" /readyz?verbose HTTP/1.1\r\n\r\n")
        assert ready.status == 200 and ready.body == (b"ok\n" if method == b"GET" else b"")
    accepting = False  # draining: the proxy no longer accepts connections
    ready = await exchange(address, b"GET /readyz HTTP/1.1\r\n\r\n")
    assert ready.status == 503 and ready.body == b"not ready\n"
    assert ready.headers["connection"] == "close"
    assert (await exchange(address, b"GET /healthz HTTP/1.1\r\n\r\n")).status == 200  # still alive
    assert (await exchange(address, b"POST /readyz HTTP/1.1\r\n\r\n")).status == 405
    accepting = True
    assert (await exchange(address, b"GET /readyz HTTP/1.1\r\n\r\n")).status == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", 404),
        (b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"DELETE /metrics HTTP/1.1\r\n\r\n", 405),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS client hello
        (handshake("metrics.test"), 400),  # a Minecraft client at the wrong port
        (b"GET /metrics\r\n\r\n", 400),  # no version
        (b"GET /metrics HTTP/2.0\r\n\r\n", 400),
        (b"get /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /m\xc3\xa9trics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: x", 400),  # the client closes (sends EOF) before the blank line
    ],
)
async def test_wrong_paths_methods_and_garbage(
    nursery: trio.Nursery, request_bytes: bytes, status: int
) -> None:
    address = await start_endpoint(nursery)
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(request_bytes)
        await stream.send_eof()
        reply = parse_reply(await read_until_eof(stream))
    assert reply.status == status
    assert reply.headers["connection"] == "close"
    assert int(reply.headers["content-length"]) == len(reply.body)
    if status == 405:
        assert reply.headers["allow"] == "GET, HEAD"
    assert (await scrape(address))["infrarust_connections_open"] == 0  # and it still serves


async def test_an_oversized_head_gets_431_and_the_connection_closes(nursery: trio.Nursery) -> None:
    address = await start_endpoint(nursery)
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * (2 * HEAD_LIMIT))
        reply = parse_reply(await read_until_eof(stream))  # answered without the blank line ever coming
    assert reply.status == 431
    complete_but_too_big = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * HEAD_LIMIT + b"\r\n\r\n"
    assert (await exchange(address, complete_but_too_big)).status == 431
    assert "infrarust_connections_open" in await scrape(address)


async def test_a_slow_client_is_cut_at_the_head_timeout(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "HEAD_TIMEOUT", 0.2)
    address = await start_endpoint(nursery)
    slow = await trio.open_tcp_stream(*address)
    silent = await trio.open_tcp_stream(*address)
    async with slow, silent:
        await slow.send_all(b"GET /metr")  # and nothing more, without closing
        assert parse_reply(await read_until_eof(slow, timeout=10)).status == 408
        assert parse_reply(await read_until_eof(silent, timeout=10)).status == 408
    assert "infrarust_connections_open" in await scrape(address)


async def test_connections_past_the_cap_are_closed_at_once(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "MAX_CLIENTS", 2)
    address = await start_endpoint(nursery)
    held = [await trio.open_tcp_stream(*address) for _ in range(2)]
    await held[0].send_all(b"G")
    await held[1].send_all(b"G")
    extra = await trio.open_tcp_stream(*address)
    async with extra:
        with contextlib.suppress(trio.BrokenResourceError):  # closed unanswered, maybe before this send
            await extra.send_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        assert await read_until_eof(extra) == b""
    for stream in held:
        await stream.aclose()
    with trio.fail_after(5):  # the held ones leave, so scrapes get through again
        while True:
            try:
                await scrape(address)
                break
            except (AssertionError, trio.BrokenResourceError, OSError):
                await trio.sleep(0.01)


async def test_a_port_in_use_is_a_metrics_bind_error(nursery: trio.Nursery) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsBindError) as info:
            await nursery.start(serve_metrics, Metrics(), Address("127.0.0.1", port))
    assert info.value.address == Address("127.0.0.1", port)
    with pytest.raises(MetricsBindError):
        await nursery.start(serve_metrics, Metrics(), Address("127.0.0.1", 70000))


def test_the_command_line_names_metrics_bind_when_it_cannot_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "infrarust.toml"
        path.write_text(f'[metrics]\nbind = "127.0.0.1:{port}"\n')
        result = subprocess.run(
            [sys.executable, "-m", "infrarust", "-c", str(path), "--bind", "127.0.0.1:0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"infrarust.toml: metrics.bind: cannot listen on 127.0.0.1:{port}: " in result.stderr
    assert "Traceback" not in result.stderr


# --- a proxy, scraped ---------------------------------------------------------------------------------


async def test_a_proxy_counts_what_it_did_exactly(
    nursery: trio.Nursery, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust")
    hub = await start_fake_status_server(nursery)
    down = Address("127.0.0.1", free_port())
    config = proxy_config(
        server("game", ["game.test"], [backend.address]),
        server("hub", ["hub.test"], [hub.address], ProxyMode.ZERO_COPY),
        server("down", ["down.test"], [down]),
        metrics=ON,
        status_cache=StatusCache(ttl=600.0),
        connect_timeout=2.0,
    )
    proxy = await start_proxy(nursery, config)
    assert proxy.metrics_address is not None and proxy.metrics_address[1] != 0
    assert f"metrics on 127.0.0.1:{proxy.metrics_address[1]}" in caplog.text

    # A relayed session, scraped while it lives: its bytes so far are there before it ends.
    player = await connect(proxy)
    first = handshake("game.test") + login_start("Alice")
    await player.send_all(first + b"hello")
    assert await read_exactly(player, len(first) + 5) == first + b"hello"
    sent = len(first) + 5
    relayed = {  # every configured server has its series from the start, at 0 until it relays
        f'infrarust_relayed_bytes_total{{direction="{d}",server="{name}"}}': sent if name == "game" else 0
        for d in ("b2c", "c2b")
        for name in ("down", "game", "hub")
    }
    with trio.fail_after(5):  # b2c is counted just after the proxy's send returns
        while (
            family(values := await scrape(proxy.metrics_address), "infrarust_relayed_bytes_total") != relayed
        ):
            await trio.sleep(0.01)
    assert values["infrarust_connections_open"] == 1
    assert nonzero(family(values, "infrarust_sessions_active")) == {
        'infrarust_sessions_active{mode="passthrough",server="game"}': 1
    }
    assert nonzero(family(values, "infrarust_sessions_ended_total")) == {}
    await player.aclose()
    await wait_until(lambda: not proxy.sessions and proxy.connections == 0)

    # The server list: a miss, a hit, a legacy ping (a hit too: the same protocol is asked of the backend),
    # a backend that is down, and an unknown domain.
    for _ in range(2):
        await ask_status(proxy.port, "hub.test")
    legacy = await connect(proxy)
    async with legacy:
        await legacy.send_all(encode_legacy_ping(LegacyPingKind.V1_6, 78, "hub.test", 25565))
        assert (await read_until_eof(legacy))[:1] == b"\xff"
    await ask_status(proxy.port, "down.test")
    await ask_status(proxy.port, "nowhere.test")
    assert hub.connections == 1

    # Refusals: a login to a down backend, an unknown domain's login, garbage, a client that closes at once.
    for host in ("down.test", "nowhere.test"):
        client = await connect(proxy)
        async with client:
            await client.send_all(handshake(host) + login_start("Bob"))
            assert await read_until_eof(client) != b""  # a Login Disconnect says why
    garbage = await connect(proxy)
    async with garbage:
        await garbage.send_all(encode_packet(0x05, b"hello"))
        assert await read_until_eof(garbage) == b""
    quiet = await connect(proxy)
    await quiet.aclose()
    await wait_until(lambda: proxy.connections == 0 and proxy.metrics.connections["closed_early"] == 1)

    values = await scrape(proxy.metrics_address)
    expected = {
        **OUTCOMES_AT_ZERO,
        'infrarust_connections_total{outcome="relayed"}': 1,
        'infrarust_connections_total{outcome="status"}': 3,
        'infrarust_connections_total{outcome="legacy_ping"}': 1,
        'infrarust_connections_total{outcome="unknown_domain"}': 2,
        'infrarust_connections_total{outcome="backend_unreachable"}': 1,
        'infrarust_connections_total{outcome="bad_handshake"}': 1,
        'infrarust_connections_total{outcome="closed_early"}': 1,
        "infrarust_connections_open": 0,
        'infrarust_sessions_active{mode="passthrough",server="game"}': 0,
        'infrarust_sessions_ended_total{mode="passthrough",reason="client_closed",server="game"}': 1,
        **relayed,
        'infrarust_status_answers_total{server="",source="motd_default"}': 1,
        'infrarust_status_answers_total{server="down",source="motd_unreachable"}': 1,
        'infrarust_status_answers_total{server="hub",source="backend"}': 1,
        'infrarust_status_answers_total{server="hub",source="cache"}': 2,
        'infrarust_backend_connect_failures_total{server="down"}': 2,
        'infrarust_config_reloads_total{result="ok"}': 0,
        'infrarust_config_reloads_total{result="rejected"}': 0,
    }
    # The other configured servers' series are there at 0 too (a test of their own covers them).
    assert {key: value for key, value in values.items() if value or key in expected} == expected


async def test_refused_connections_are_counted(nursery: trio.Nursery, backend: Backend) -> None:
    config = proxy_config(server("game", ["game.test"], [backend.address]), metrics=ON, max_connections=1)
    proxy = await start_proxy(nursery, config)
    holder = await connect(proxy)  # still handshaking: it holds the one place
    await wait_until(lambda: proxy.connections == 1)
    for _ in range(2):
        refused = await connect(proxy)
        async with refused:
            assert await read_until_eof(refused) == b""
    values = await scrape(proxy.metrics_address)
    assert values['infrarust_connections_total{outcome="refused_max_connections"}'] == 2
    assert values["infrarust_connections_open"] == 1
    assert sum(family(values, "infrarust_connections_total").values()) == 2  # the holder is not done yet
    await holder.aclose()


async def test_reloads_are_counted_and_keep_the_endpoint(
    nursery: trio.Nursery, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust")
    config = proxy_config(server("game", ["game.test"], [backend.address]), metrics=ON)
    proxy = await start_proxy(nursery, config)
    address = proxy.metrics_address
    await ask_status(proxy.port, "nowhere.test")
    elsewhere = attrs.evolve(config, metrics=MetricsConfig(Address("127.0.0.1", free_port())))
    await proxy.reload(elsewhere)
    assert "metrics changes take effect at the next start" in caplog.text
    assert proxy.config.metrics == ON and proxy.metrics_address == address
    with pytest.raises(infrarust.ConfigError):
        await proxy.reload()  # built in code: no file to load again
    values = await scrape(address)
    assert values['infrarust_config_reloads_total{result="ok"}'] == 1
    assert values['infrarust_config_reloads_total{result="rejected"}'] == 1
    # The counters outlive the generation that counted them.
    assert values['infrarust_status_answers_total{server="",source="motd_default"}'] == 1
    await ask_status(proxy.port, "nowhere.test")
    values = await scrape(address)
    assert values['infrarust_status_answers_total{server="",source="motd_default"}'] == 2


async def test_without_metrics_nothing_listens(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("game", ["game.test"], [backend.address])))
    assert proxy.metrics_address is None
    assert proxy.metrics.connections["relayed"] == 0  # the registry exists and counts anyway


async def test_broken_scrapes_never_disturb_a_relayed_session(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "HEAD_TIMEOUT", 0.3)
    backend = await start_recording_backend(nursery)
    config = proxy_config(server("game", ["game.test"], [backend.address], ProxyMode.ZERO_COPY), metrics=ON)
    proxy = await start_proxy(nursery, config)
    address = proxy.metrics_address
    assert address is not None
    player = await connect(proxy)
    first = handshake("game.test") + login_start("Steve")
    await player.send_all(first)
    assert await read_exactly(player, len(first)) == first

    async def abuse() -> None:
        idle = await trio.open_tcp_stream(*address)  # left hanging until the head timeout
        half = await trio.open_tcp_stream(*address)
        await half.send_all(b"GET /metrics HTTP/1.1\r\n")
        reset(half)  # a request cut off by a reset
        rude = await trio.open_tcp_stream(*address)
        await rude.send_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        reset(rude)  # gone before reading the answer
        for junk in (b"\x00" * 100, b"GET " + b"/" * (3 * HEAD_LIMIT), b"PUT /metrics HTTP/1.1\r\n\r\n"):
            stream = await trio.open_tcp_stream(*address)
            async with stream:
                with trio.move_on_after(5):
                    try:
                        await stream.send_all(junk)
                        await read_until_eof(stream)
                    except trio.BrokenResourceError:
                        pass
        await read_until_eof(idle, timeout=10)
        await idle.aclose()

    async with trio.open_nursery() as scrapers:
        for _ in range(5):
            scrapers.start_soon(abuse)
        for index in range(20):  # the session keeps relaying while the endpoint is being abused
            message = f"message {index:04d}".encode()
            await player.send_all(message)
            assert await read_exactly(player, len(message)) == message
            await trio.sleep(0.01)

    values = await scrape(address)
    assert values['infrarust_sessions_active{mode="zero_copy",server="game"}'] == 1
    await player.aclose()
    await wait_until(lambda: not proxy.sessions)
    assert proxy.metrics.sessions_ended == {("game", "zero_copy", "client_closed"): 1}
    assert len(proxy.sessions) == 0


async def test_the_endpoint_runs_in_the_proxys_nursery_and_stops_with_it(backend: Backend) -> None:
    config = proxy_config(server("game", ["game.test"], [backend.address]), metrics=ON)
    async with trio.open_nursery() as nursery:
        proxy = await start_proxy(nursery, config)
        address = proxy.metrics_address
        assert address is not None
        await scrape(address)
        nursery.cancel_scope.cancel()
    with pytest.raises(OSError):
        await trio.open_tcp_stream(*address)


def test_two_processes_numbers_add_up_as_the_supervisor_adds_them() -> None:
    first, second = Metrics(process=False), Metrics(process=False)
    first.handshake_time(0.003)
    second.handshake_time(0.003)
    second.handshake_time(20.0)
    first.connection("relayed")
    second.connection("relayed")
    second.backend_connect_time("lobby", 0.001)
    families = [list(text_string_to_metric_families(m.render())) for m in (first, second)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics_module._Fixed(metrics_module._merge(families)))
    text = generate_latest(registry).decode()
    handshake = samples(text, ("infrarust_handshake_seconds",))
    assert handshake['infrarust_handshake_seconds_bucket{le="0.005"}'] == 2
    assert handshake['infrarust_handshake_seconds_bucket{le="+Inf"}'] == 3
    assert handshake["infrarust_handshake_seconds_sum"] == pytest.approx(20.006)
    connect = samples(text, ("infrarust_backend_connect_seconds",))
    assert connect['infrarust_backend_connect_seconds_count{server="lobby"}'] == 1
    assert samples(text)['infrarust_connections_total{outcome="relayed"}'] == 2
    assert [sample.value for sample in parse(text)["infrarust_build_info"].samples] == [1]


@pytest.mark.skipif(sys.platform != "linux", reason="workers = N needs Linux")
async def test_workers_are_served_as_one_endpoint_that_adds_them_up(tmp_path: Path, backend: Backend) -> None:
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "w.toml").write_text(
        f'domains = ["w.test"]\naddresses = ["127.0.0.1:{backend.port}"]\n'
    )
    metrics_port = free_port()
    config = f"workers = 2\n[rate_limit]\nmax_connections = 0\n[metrics]\nbind = '127.0.0.1:{metrics_port}'\n"
    (tmp_path / "infrarust.toml").write_text(config)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "infrarust", "-c", str(tmp_path / "infrarust.toml"), "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    supervisor = Supervisor(process)
    endpoint = ("127.0.0.1", metrics_port)
    try:
        await supervisor.read_until(rb"listening on 127\.0\.0\.1:\d+ workers=2")
        port = int(re.findall(rb"listening on 127\.0\.0\.1:(\d+)", supervisor.log)[0])
        # Each worker names the one endpoint, not a port of its own.
        assert set(re.findall(rb"worker=(\d) metrics on 127\.0\.0\.1:(\d+)", supervisor.log)) == {
            (b"1", str(metrics_port).encode()),
            (b"2", str(metrics_port).encode()),
        }
        assert (await exchange(endpoint, b"GET /readyz HTTP/1.1\r\n\r\n")).status == 200
        assert (await exchange(endpoint, b"GET /healthz HTTP/1.1\r\n\r\n")).status == 200
        for index in range(10):
            await relay_once(port, f"p{index}")
        await supervisor.read_until(rb"session ended", 10)
        text = (await exchange(endpoint, b"GET /metrics HTTP/1.1\r\n\r\n")).body.decode()
        values = samples(text)
        assert values['infrarust_connections_total{outcome="relayed"}'] == 10  # counted once, by its worker
        assert (
            values['infrarust_sessions_ended_total{mode="passthrough",reason="client_closed",server="w"}']
            == 10
        )
        families = parse(text)
        assert [sample.value for sample in families["infrarust_build_info"].samples] == [1]
        pids = {sample.labels["pid"] for sample in families["process_resident_memory_bytes"].samples}
        assert pids == {str(pid) for pid in (process.pid, *worker_pids(process.pid))}

        # A worker that dies takes none of the counted sessions with it: the sums never go down.
        busy = re.findall(rb"worker=(\d) session ended", supervisor.log)[0]  # a worker with sessions counted
        victim = int(re.findall(rb"worker started worker=" + busy + rb" pid=(\d+)", supervisor.log)[-1])
        os.kill(victim, signal.SIGKILL)
        await supervisor.read_until(rb"worker exited worker=\d code=-9 restarting=yes")
        with trio.fail_after(10):
            while len(worker_pids(process.pid)) < 2:
                await trio.sleep(0.05)
        await relay_once(port, "after")
        await supervisor.read_until(rb"session ended", 11)
        with trio.fail_after(10):
            while (
                relayed := samples(
                    (await exchange(endpoint, b"GET /metrics HTTP/1.1\r\n\r\n")).body.decode()
                )['infrarust_connections_total{outcome="relayed"}']
            ) < 11:
                await trio.sleep(0.05)
        assert relayed == 11
        again = samples((await exchange(endpoint, b"GET /metrics HTTP/1.1\r\n\r\n")).body.decode())
        assert again['infrarust_connections_total{outcome="relayed"}'] == 11  # the dead one's share stays
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            for pid in worker_pids(process.pid):
                os.kill(pid, signal.SIGKILL)
            process.kill()
            await process.wait()
