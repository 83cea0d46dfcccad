"""``[metrics]``: counters, gauges and histograms of a running proxy, served in the Prometheus text format.

:class:`Metrics` keeps its numbers in plain dicts and lists. The proxy bumps them on its per-connection
path, so an update is a dict write (a histogram adds a bisect): no locks (trio runs one task at a time), no
formatting. Everything else happens when the endpoint is scraped: a ``prometheus_client`` collector turns
the dicts into metric families (adding what live sessions have relayed so far), next to
``prometheus_client``'s process collector (``process_*``), and ``prometheus_client`` writes the text.

:func:`serve_metrics` is a small HTTP/1.1 server for ``GET /metrics``, ``/healthz`` (200 while the process
serves) and ``/readyz`` (200 while the proxy accepts connections, else 503), with every wait bounded and
every connection closed after one answer, so a bad client costs a task for at most a few seconds and never
reaches the proxy.

Under ``workers = N`` there is one endpoint for the whole proxy: the supervisor serves the configured
address (:func:`serve_worker_metrics`) and, at each scrape, asks every worker over a private Unix socket and
adds their numbers up (``process_*`` stay per process, with a ``pid`` label).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import importlib.metadata
import os
import platform
import shutil
import socket
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Final, Literal, Protocol, get_args

import trio
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from infrarust import logs
from infrarust._listen import accept, open_listener
from infrarust.config import Address, ProxyMode, ServerConfig
from infrarust.transport import ForwardEndReason, ForwardResult, Traffic

log = logs.get_logger("infrarust.metrics")

PREFIX: Final = "infrarust_"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# A scrape request is a few hundred bytes; a head past this is not a scraper.
HEAD_LIMIT = 8192
# Time a client has to send its whole request head.
HEAD_TIMEOUT = 5.0
# Time to write the answer (and to read what the client sends after it: see LINGER_TIME).
WRITE_TIMEOUT = 5.0
# After answering, bytes the client still sends are read and dropped for a moment before closing, so the
# kernel does not reset the connection (unread data at close) before the client has read the answer.
LINGER_TIME = 1.0
LINGER_LIMIT = 65536
# Scrape connections handled at once; more are closed at once (a scraper makes one at a time).
MAX_CLIENTS = 32
READ_SIZE = 4096


def _version() -> str:
    try:
        return importlib.metadata.version("infrarust")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


# Read once at import, never on a scrape: the metadata lookup opens files.
VERSION: Final = _version()

Outcome = Literal[
    "relayed",
    "status",
    "legacy_ping",
    "refused_max_connections",
    "rate_limited",
    "ip_filtered",
    "unknown_domain",
    "bad_handshake",
    "handshake_timeout",
    "closed_early",
    "backend_unreachable",
    "full",
    "banned",
    "denied",
    "draining",
    "server_starting",  # ondemand: a held login outlasted start_timeout
    "server_crashed",  # ondemand: the managed server crashed while starting (or is in its back-off)
]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)  # every outcome starts at 0
StatusSource = Literal["cache", "backend", "motd_unreachable", "motd_default", "motd_state"]
STATUS_SOURCES: Final[tuple[StatusSource, ...]] = get_args(StatusSource)
ReloadResult = Literal["ok", "rejected"]
RELOAD_RESULTS: Final[tuple[ReloadResult, ...]] = get_args(ReloadResult)
C2B: Final = "c2b"
B2C: Final = "b2c"
# Label values are snake_case everywhere; the log line keeps the specification's ``ClientClosed`` spelling.
END_REASONS: Final[dict[ForwardEndReason, str]] = {
    ForwardEndReason.CLIENT_CLOSED: "client_closed",
    ForwardEndReason.BACKEND_CLOSED: "backend_closed",
    ForwardEndReason.SHUTDOWN: "shutdown",
    ForwardEndReason.ERROR: "error",
}

# Histogram buckets, in seconds. Connects and handshakes: sub-millisecond on a LAN up to the default
# timeouts (5 s connect, 10 s handshake). Sessions: a ping-and-leave to a day of play.
CONNECT_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
HANDSHAKE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SESSION_BUCKETS: Final = (
    1.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
)


class LiveSession(Protocol):
    """What the registry reads from a live session at render time (a :class:`infrarust.Player`)."""

    @property
    def server(self) -> ServerConfig: ...

    @property
    def mode(self) -> ProxyMode: ...

    @property
    def traffic(self) -> Traffic: ...


def _no_connections() -> int:
    return 0


def _no_cluster() -> tuple[bool, int] | None:
    return None


def _always() -> bool:
    return True


class Histogram:
    """Observations counted into fixed buckets (``le`` bounds, seconds), with their sum: one bisect each."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one observation (a bucket's bound is inclusive, as Prometheus defines ``le``)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ending with ``+Inf``."""
        running = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class Metrics:
    """The proxy's counters, gauges and histograms; :meth:`render` writes them in the Prometheus text format.

    The update methods are what the proxy calls on its per-connection path: a dict write each.
    ``open_connections`` and ``live_sessions`` are read only at render time: the ``connections_open`` and
    ``sessions_active`` gauges come from them, and so do the bytes live sessions have relayed so far (ended
    sessions' bytes are kept in :attr:`relayed_bytes`), so a long session shows before it ends.
    ``servers`` (the configured servers, read at render time) gives every server its series at 0 from the
    start and after a reload; ``ready`` answers ``/readyz`` (the proxy passes ``lambda: proxy.accepting``).
    """

    def __init__(
        self,
        *,
        open_connections: Callable[[], int] = _no_connections,
        live_sessions: Callable[[], Iterable[LiveSession]] = tuple,
        servers: Callable[[], Iterable[ServerConfig]] = tuple,
        ready: Callable[[], bool] = _always,
        process: bool = True,
    ) -> None:
        self.open_connections = open_connections
        self.live_sessions = live_sessions
        self.servers = servers
        self.ready = ready
        # Every outcome and reload result is there from the start, at 0, so a rate() sees its first event.
        self.connections: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.sessions_ended: dict[tuple[str, str, str], int] = {}  # (server, mode, reason)
        self.relayed_bytes: dict[tuple[str, str], int] = {}  # (server, direction), ended sessions only
        self.status_answers: dict[tuple[str, str], int] = {}  # (server, source)
        self.backend_connect_failures: dict[str, int] = {}  # server
        self.config_reloads: dict[str, int] = dict.fromkeys(RELOAD_RESULTS, 0)
        self.backend_connect_seconds: dict[str, Histogram] = {}  # server
        self.handshake_seconds = Histogram(HANDSHAKE_BUCKETS)
        self.session_seconds: dict[tuple[str, str], Histogram] = {}  # (server, mode)
        # fleetwire: each balanced address (server, address, up, sessions) and the fleet (degraded now, times
        # it degraded; None without [cluster]), read at scrape time; health check latencies as they come.
        self.backend_addresses: Callable[[], Iterable[tuple[str, str, bool, int]]] = tuple
        self.cluster_state: Callable[[], tuple[bool, int] | None] = _no_cluster
        self.health_check_seconds: dict[tuple[str, str], Histogram] = {}  # (server, address)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        if process:
            ProcessCollector(registry=self.registry)

    def connection(self, outcome: Outcome) -> None:
        """Count a client connection by what became of it (once per connection)."""
        self.connections[outcome] += 1

    def session_ended(
        self, server: str, mode: str, result: ForwardResult, seconds: float | None = None
    ) -> None:
        """Count an ended relayed session and keep the bytes it relayed; ``seconds`` is how long it lasted."""
        key = (server, mode, END_REASONS[result.reason])
        self.sessions_ended[key] = self.sessions_ended.get(key, 0) + 1
        relayed = self.relayed_bytes
        c2b, b2c = (server, C2B), (server, B2C)
        relayed[c2b] = relayed.get(c2b, 0) + result.client_to_backend
        relayed[b2c] = relayed.get(b2c, 0) + result.backend_to_client
        if seconds is not None:
            histogram = self.session_seconds.get((server, mode))
            if histogram is None:
                histogram = self.session_seconds[server, mode] = Histogram(SESSION_BUCKETS)
            histogram.observe(seconds)

    def status_answer(self, server: str, source: StatusSource) -> None:
        """Count a server-list answer by where it came from (``server`` is empty for unknown domains)."""
        key = (server, source)
        self.status_answers[key] = self.status_answers.get(key, 0) + 1

    def backend_connect_failure(self, server: str) -> None:
        """Count a time none of a server's addresses accepted a connection (login or status)."""
        failures = self.backend_connect_failures
        failures[server] = failures.get(server, 0) + 1

    def backend_connect_time(self, server: str, seconds: float) -> None:
        """Observe how long a successful backend connect took (from the first address tried)."""
        histogram = self.backend_connect_seconds.get(server)
        if histogram is None:
            histogram = self.backend_connect_seconds[server] = Histogram(CONNECT_BUCKETS)
        histogram.observe(seconds)

    def health_check_time(self, server: str, address: str, seconds: float) -> None:
        """fleetwire: observe an answered health check's connect + status time."""
        histogram = self.health_check_seconds.get((server, address))
        if histogram is None:
            histogram = self.health_check_seconds[server, address] = Histogram(CONNECT_BUCKETS)
        histogram.observe(seconds)

    def handshake_time(self, seconds: float) -> None:
        """Observe how long a client took from accept to a complete hello (handshake, and login start)."""
        self.handshake_seconds.observe(seconds)

    def config_reload(self, result: ReloadResult) -> None:
        """Count a reload: ``ok`` (taken) or ``rejected`` (the old configuration stays)."""
        self.config_reloads[result] += 1

    def render(self) -> str:
        """Every metric in the Prometheus text format 0.0.4, with HELP and TYPE lines, one sample a line."""
        return generate_latest(self.registry).decode("utf-8")


class _Collector(Collector):
    """The registry's dicts as ``prometheus_client`` metric families, built at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self.metrics
        servers = {server.name: server.proxy_mode.value for server in m.servers()}
        active: dict[tuple[str, str], int] = dict.fromkeys(servers.items(), 0)
        active.update(dict.fromkeys(((server, mode) for server, mode, _ in m.sessions_ended), 0))
        relayed = dict.fromkeys(((name, way) for name in servers for way in (B2C, C2B)), 0)
        relayed.update(m.relayed_bytes)
        for session in m.live_sessions():
            server = session.server.name
            key = (server, session.mode.value)
            active[key] = active.get(key, 0) + 1
            c2b, b2c = (server, C2B), (server, B2C)
            relayed[c2b] = relayed.get(c2b, 0) + session.traffic.client_to_backend
            relayed[b2c] = relayed.get(b2c, 0) + session.traffic.backend_to_client
        ended = {(name, mode, reason): 0 for name, mode in servers.items() for reason in END_REASONS.values()}
        ended.update(m.sessions_ended)
        answers: dict[tuple[str, str], int] = {
            (name, source): 0 for name in servers for source in STATUS_SOURCES
        }
        answers.update(m.status_answers)
        failures = dict.fromkeys(servers, 0)
        failures.update(m.backend_connect_failures)

        yield _family(
            CounterMetricFamily,
            "connections",
            "Client connections, by what became of each.",
            ("outcome",),
            [((outcome,), count) for outcome, count in m.connections.items()],
        )
        yield _family(
            GaugeMetricFamily,
            "connections_open",
            "Client connections open now, relaying or still handshaking.",
            (),
            [((), m.open_connections())],
        )
        yield _family(
            GaugeMetricFamily, "sessions_active", "Sessions relaying now.", ("server", "mode"), active.items()
        )
        yield _family(
            CounterMetricFamily,
            "sessions_ended",
            "Relayed sessions ended, by why they ended.",
            ("server", "mode", "reason"),
            ended.items(),
        )
        yield _family(
            CounterMetricFamily,
            "relayed_bytes",
            "Bytes relayed: c2b delivered to the backend, b2c to the client; live sessions included.",
            ("server", "direction"),
            relayed.items(),
        )
        yield _family(
            CounterMetricFamily,
            "status_answers",
            "Server-list answers, by where they came from.",
            ("server", "source"),
            answers.items(),
        )
        yield _family(
            CounterMetricFamily,
            "backend_connect_failures",
            "Times no address of a server accepted a connection.",
            ("server",),
            [((server,), count) for server, count in failures.items()],
        )
        yield _family(
            CounterMetricFamily,
            "config_reloads",
            "Configuration reloads, taken (ok) or rejected.",
            ("result",),
            [((result,), count) for result, count in m.config_reloads.items()],
        )
        connect = {name: Histogram(CONNECT_BUCKETS) for name in servers}
        connect.update(m.backend_connect_seconds)
        yield _histograms(
            "backend_connect_seconds",
            "Time to connect to a backend, for connects that succeeded.",
            ("server",),
            [((server,), histogram) for server, histogram in connect.items()],
        )
        yield _histograms(
            "handshake_seconds",
            "Time from accept to a complete hello (handshake, and login start when logging in).",
            (),
            [((), m.handshake_seconds)],
        )
        sessions = {key: Histogram(SESSION_BUCKETS) for key in servers.items()}
        sessions.update(m.session_seconds)
        yield _histograms(
            "session_duration_seconds",
            "How long relayed sessions lasted.",
            ("server", "mode"),
            sessions.items(),
        )
        yield from _scaling_families(m)  # fleetwire
        info = GaugeMetricFamily(
            PREFIX + "build_info",
            "The running infrarust: its version and Python's.",
            labels=("version", "python"),
        )
        info.add_metric((VERSION, platform.python_version()), 1)
        yield info


def _scaling_families(m: Metrics) -> Iterator[Metric]:
    """fleetwire: balanced addresses' health and sessions, health check latency, the fleet's state."""
    addresses = list(m.backend_addresses())
    if addresses:
        yield _family(
            GaugeMetricFamily,
            "backend_up",
            "1 while a backend address is healthy (health checks, connect failures).",
            ("server", "address"),
            [((server, address), int(up)) for server, address, up, _ in addresses],
        )
        yield _family(
            GaugeMetricFamily,
            "backend_sessions",
            "This proxy's sessions on each backend address.",
            ("server", "address"),
            [((server, address), sessions) for server, address, _, sessions in addresses],
        )
    if m.health_check_seconds:
        yield _histograms(
            "health_check_seconds",
            "Connect + status time of answered health checks.",
            ("server", "address"),
            m.health_check_seconds.items(),
        )
    cluster = m.cluster_state()
    if cluster is not None:
        degraded, times = cluster
        yield _family(
            GaugeMetricFamily,
            "cluster_degraded",
            "1 while Redis is away and this instance answers from local state.",
            (),
            [((), int(degraded))],
        )
        yield _family(
            CounterMetricFamily,
            "cluster_degraded_events",
            "Times this instance lost Redis and fell back to local state.",
            (),
            [((), times)],
        )


def _family(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    help_text: str,
    labels: tuple[str, ...],
    samples: Iterable[tuple[tuple[str, ...], int]],
) -> Metric:
    family = kind(PREFIX + name, help_text, labels=labels)
    for values, value in sorted(samples):
        family.add_metric(values, value)
    return family


def _histograms(
    name: str,
    help_text: str,
    labels: tuple[str, ...],
    histograms: Iterable[tuple[tuple[str, ...], Histogram]],
) -> Metric:
    family = HistogramMetricFamily(PREFIX + name, help_text, labels=labels)
    for values, histogram in sorted(histograms, key=lambda item: item[0]):
        family.add_metric(values, histogram.buckets(), histogram.total)
    return family


def escape_label_value(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# --- the HTTP endpoint --------------------------------------------------------------------------------


class MetricsBindError(OSError):
    """The metrics endpoint could not listen on its address (``address`` says which)."""

    def __init__(self, address: Address, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error))
        self.address = address


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
_METHOD_CHARS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_METHOD_LIMIT = 16
PATHS: Final = ("/metrics", "/healthz", "/readyz")


def http_response(
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    head_only: bool = False,
    extra: str = "",
) -> bytes:
    """One complete HTTP/1.1 answer that closes the connection."""
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + (b"" if head_only else body)


def _error(status: int, extra: str = "") -> bytes:
    return http_response(status, f"{_REASONS[status].lower()}\n".encode("ascii"), extra=extra)


def parse_request(head: bytes) -> tuple[str, str] | bytes:
    """``(method, path)`` of a complete request head for one of :data:`PATHS` (sans I/O), or the error
    answer to send instead (400, 404, 405)."""
    line = head.split(b"\n", 1)[0].removesuffix(b"\r")
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        return _error(400)
    if (
        not method
        or not set(method.encode()) <= _METHOD_CHARS
        or version not in ("HTTP/1.0", "HTTP/1.1")
        or not target
        or not target.isprintable()
    ):
        return _error(400)
    path = urllib.parse.urlsplit(target).path
    if path not in PATHS:
        return _error(404)
    if method not in ("GET", "HEAD"):
        return _error(405, "Allow: GET, HEAD\r\n")
    return method, path


def _probe(ok: bool, head_only: bool) -> bytes:
    return http_response(200 if ok else 503, b"ok\n" if ok else b"not ready\n", head_only=head_only)


class _Answers(Protocol):
    """What an endpoint serves: the metrics text and the readiness answer."""

    async def metrics(self) -> bytes: ...

    async def ready(self) -> bool: ...


class _Local:
    """This process's own registry."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def metrics(self) -> bytes:
        return self._metrics.render().encode("utf-8")

    async def ready(self) -> bool:
        return bool(self._metrics.ready())


async def answer(head: bytes, answers: _Answers) -> bytes:
    """The answer to a complete request head: the metrics, a probe's 200 / 503, or 400 / 404 / 405."""
    request = parse_request(head)
    if isinstance(request, bytes):
        return request
    method, path = request
    head_only = method == "HEAD"
    if path == "/healthz":  # answering at all is the health: the process runs its event loop
        return _probe(True, head_only)
    if path == "/readyz":
        return _probe(await answers.ready(), head_only)
    return http_response(200, await answers.metrics(), content_type=CONTENT_TYPE, head_only=head_only)


def _head_end(data: bytes | bytearray) -> int:
    """Where the request head ends (after its blank line), or -1 while it is incomplete."""
    for terminator in (b"\r\n\r\n", b"\n\n"):
        found = data.find(terminator)
        if found >= 0:
            return found + len(terminator)
    return -1


def _plausible(data: bytes | bytearray) -> bool:
    """False as soon as the bytes cannot start an HTTP request (a TLS hello, a Minecraft handshake...)."""
    space = data.find(b" ")
    method = data if space < 0 else data[:space]
    return len(method) <= _METHOD_LIMIT and set(method) <= _METHOD_CHARS and (space != 0)


def worker_bind(bind: Address, worker: int | None) -> Address:
    """Where a process serves metrics: the configured address, whether it is a worker or not.

    Under ``workers = N`` a worker started by the supervisor serves its own numbers on a private Unix socket
    instead (see :func:`serve_metrics`), and the configured address is the supervisor's single endpoint.
    """
    return bind


async def serve_metrics(
    metrics: Metrics,
    bind: Address,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``bind`` until cancelled; ``nursery.start``
    returns the bound (host, port).

    Port 0 takes a free port. Raises :class:`MetricsBindError` when it cannot listen. Once listening, no
    client can make it fail: each connection gets one answer (or none, when it sends nothing) and is closed.
    In a worker of ``workers = N`` (the supervisor's environment says so) it serves a private Unix socket
    that the supervisor reads, and returns the supervisor's public address.
    """
    directory, public = os.environ.get(WORKER_DIR_ENV), os.environ.get(WORKER_ADDRESS_ENV)
    if not (directory and public):
        listener = await _open_listener(bind)
        name = listener.socket.getsockname()
        await _serve(listener, _Local(metrics), (name[0], name[1]), task_status)
        return
    path = os.path.join(directory, f"{os.getpid()}{_SOCKET_SUFFIX}")
    try:
        listener = await _open_unix_listener(path)
    except OSError as exc:
        raise MetricsBindError(bind, exc) from None
    host, _, port = public.rpartition(":")
    try:
        await _serve(listener, _Local(metrics), (host.strip("[]"), int(port)), task_status)
    finally:
        with contextlib.suppress(OSError):  # gone with the worker: the supervisor stops asking it
            os.unlink(path)


async def _serve(
    listener: trio.SocketListener,
    answers: _Answers,
    reported: tuple[str, int],
    task_status: trio.TaskStatus[tuple[str, int]],
) -> None:
    async with listener, trio.open_nursery() as nursery:
        task_status.started(reported)
        server = _Server(answers)
        while True:
            try:
                stream = await accept(listener, "metrics")
            except OSError as exc:  # the listener itself is broken: metrics stop, the proxy goes on
                log.error("metrics endpoint stopped", error=exc.strerror or str(exc))
                return
            if server.clients >= MAX_CLIENTS:
                stream.socket.close()
                continue
            server.clients += 1
            nursery.start_soon(server.handle, stream)


async def _open_listener(bind: Address) -> trio.SocketListener:
    if not 0 <= bind.port <= 65535:
        raise MetricsBindError(bind, OSError(errno.EINVAL, "the port is past 65535"))
    try:
        return await open_listener(bind, backlog=MAX_CLIENTS)
    except OSError as exc:
        raise MetricsBindError(bind, exc) from None


async def _open_unix_listener(path: str) -> trio.SocketListener:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(MAX_CLIENTS)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


class _Server:
    def __init__(self, answers: _Answers) -> None:
        self.answers = answers
        self.clients = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            reply: bytes | None = None
            with trio.move_on_after(HEAD_TIMEOUT) as head_deadline:
                reply = await self._read_and_answer(stream)
            if head_deadline.cancelled_caught:
                reply = _error(408)
            if reply is not None:
                with trio.move_on_after(WRITE_TIMEOUT):
                    await stream.send_all(reply)
                    await stream.send_eof()
                    await _linger(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away: nothing to answer
        except Exception:  # a bug here must never take the proxy down
            log.exception("metrics request failed")
        finally:
            self.clients -= 1
            stream.socket.close()

    async def _read_and_answer(self, stream: trio.SocketStream) -> bytes | None:
        received = bytearray()
        while (end := _head_end(received)) < 0:
            if not _plausible(received):
                return _error(400)
            if len(received) >= HEAD_LIMIT:
                return _error(431)
            data = await stream.receive_some(READ_SIZE)
            if not data:
                return _error(400) if received else None
            received += data
        if end > HEAD_LIMIT:
            return _error(431)
        return await answer(bytes(received[:end]), self.answers)


async def _linger(stream: trio.SocketStream) -> None:
    """Read and drop what the client still sends, until it closes (bounded), before we close."""
    dropped = 0
    with trio.move_on_after(LINGER_TIME), contextlib.suppress(trio.BrokenResourceError):
        while dropped < LINGER_LIMIT and (data := await stream.receive_some(READ_SIZE)):
            dropped += len(data)


# --- one endpoint for workers = N ---------------------------------------------------------------------

# Set by the supervisor in its own environment, which the workers it starts inherit: the private folder
# where each worker serves its numbers (``<pid>.sock``), and the public address of the one endpoint.
WORKER_DIR_ENV: Final = "INFRARUST_WORKER_METRICS_DIR"
WORKER_ADDRESS_ENV: Final = "INFRARUST_WORKER_METRICS_ADDRESS"
_SOCKET_SUFFIX: Final = ".sock"
# Time the supervisor gives one worker to answer a scrape, and the most it reads from one.
WORKER_SCRAPE_TIMEOUT = 2.0
WORKER_SCRAPE_LIMIT = 16 * 1024 * 1024
_PER_PROCESS: Final = "process_"
_GONE: Final = (0, b"")  # what asking a worker that exited gives


async def serve_worker_metrics(
    bind: Address,
    *,
    environ: MutableMapping[str, str] = os.environ,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The supervisor's single endpoint under ``workers = N``: serve ``bind`` until cancelled, adding up
    what every worker counts.

    Start it before the workers: it makes a private folder and names it (and the bound address) in
    ``environ``, which the worker processes inherit; each worker's :func:`serve_metrics` then listens on a
    Unix socket there. A scrape asks each worker in turn; counters and histograms of a worker that exited
    stay in the sums (as last scraped), so a restart does not make them go down. ``/readyz`` is 200 when
    every worker answers and is ready.
    """
    listener = await _open_listener(bind)
    directory = await trio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="infrarust-metrics-"))
    try:
        name = listener.socket.getsockname()
        address = Address(name[0], name[1])
        environ[WORKER_DIR_ENV] = directory
        environ[WORKER_ADDRESS_ENV] = str(address)
        await _serve(listener, _Workers(directory), (name[0], name[1]), task_status)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class _Workers:
    """The workers' numbers, added up at each scrape."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.own = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.own)
        self.last: dict[str, list[Metric]] = {}  # socket -> its families at the last scrape
        self.retired: dict[str, Metric] = {}  # exited workers' counters and histograms, as last scraped
        self.lock = trio.Lock()  # one scrape at a time: each one moves exited workers into ``retired``

    def _sockets(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(os.path.join(self.directory, n) for n in names if n.endswith(_SOCKET_SUFFIX))

    async def _ask(self, path: str, target: str) -> tuple[int, bytes] | None:
        """One request to a worker's socket: (status, body), or None when it did not answer. A worker that
        exited (its socket file stays, refusing) has the file removed and gets status 0."""
        with trio.move_on_after(WORKER_SCRAPE_TIMEOUT):
            try:
                stream = await trio.open_unix_socket(path)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                    return _GONE
                return None
            async with stream:
                try:
                    await stream.send_all(f"GET {target} HTTP/1.0\r\n\r\n".encode("ascii"))
                    received = bytearray()
                    while len(received) < WORKER_SCRAPE_LIMIT and (data := await stream.receive_some(65536)):
                        received += data
                except (trio.BrokenResourceError, OSError):
                    return None
            head, _, body = bytes(received).partition(b"\r\n\r\n")
            status = head.split(b" ", 2)[1:2]
            return (int(status[0]), body) if status and status[0].isdigit() else None
        return None

    async def ready(self) -> bool:
        sockets = await trio.to_thread.run_sync(self._sockets)
        if not sockets:
            return False
        for path in sockets:
            reply = await self._ask(path, "/readyz")
            if reply is None or reply[0] != 200:
                return False
        return True

    async def metrics(self) -> bytes:
        async with self.lock:
            current: dict[str, list[Metric]] = {}
            for path in await trio.to_thread.run_sync(self._sockets):
                reply = await self._ask(path, "/metrics")
                if reply is not None and reply[0] == 200:
                    pid = os.path.basename(path).removesuffix(_SOCKET_SUFFIX)
                    text = reply[1].decode("utf-8", "replace")
                    current[path] = _with_pid(list(text_string_to_metric_families(text)), pid)
                elif path in self.last and reply != _GONE:  # alive but slow: its last numbers stand in
                    current[path] = self.last[path]
            for path, families in self.last.items():
                if path not in current:  # exited: what it had counted stays in the sums
                    self._retire(families)
            self.last = current
            own = _with_pid(list(self.own.collect()), str(os.getpid()))
            merged = _merge([*current.values(), list(self.retired.values()), own])
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(merged))
        return generate_latest(registry)

    def _retire(self, families: list[Metric]) -> None:
        for family in families:
            if family.type not in ("counter", "histogram") or family.name.startswith(_PER_PROCESS):
                continue
            kept = self.retired.get(family.name)
            if kept is None:
                kept = self.retired[family.name] = Metric(family.name, family.documentation, family.type)
            kept.samples = _merge_samples([kept.samples, family.samples], add=True)


def _with_pid(families: list[Metric], pid: str) -> list[Metric]:
    """``process_*`` families with a ``pid`` label: per-process numbers are not added up."""
    for family in families:
        if family.name.startswith(_PER_PROCESS):
            family.samples = [s._replace(labels={**s.labels, "pid": pid}) for s in family.samples]
    return families


def _merge_samples(groups: Iterable[list[Sample]], *, add: bool) -> list[Sample]:
    """Samples with the same name and labels as one: their sum, or (``add`` false) the largest."""
    totals: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = {}
    for samples in groups:
        for sample in samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            seen = totals.get(key)
            if seen is None:
                totals[key] = sample
            else:
                value = seen.value + sample.value if add else max(seen.value, sample.value)
                totals[key] = seen._replace(value=value)
    return list(totals.values())


def _merge(processes: Iterable[list[Metric]]) -> list[Metric]:
    """Families of several processes as one: samples with the same name and labels add up."""
    families: dict[str, Metric] = {}
    samples: dict[str, list[list[Sample]]] = {}
    for process in processes:
        for family in process:
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                samples[family.name] = []
            samples[family.name].append(family.samples)
    for name, family in families.items():
        # build_info is 1 in every process: the same 1 for the whole proxy, not N.
        family.samples = _merge_samples(samples[name], add=not name.endswith("_info"))
    return list(families.values())


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)
