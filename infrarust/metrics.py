"""``[metrics]``: counters and gauges of a running proxy, served as Prometheus text (format 0.0.4).

:class:`Metrics` is a registry of plain dicts. The proxy bumps them on its per-connection path, so an
update is one dict write: no locks (trio runs one task at a time), no formatting. Everything else happens
when the endpoint is scraped: :meth:`Metrics.render` walks the dicts, adds what live sessions have relayed
so far, and writes the text. :func:`serve_metrics` is a small HTTP/1.1 server for ``GET /metrics``, with
every wait bounded and every connection closed after one answer, so a bad client costs a task for at most
a few seconds and never reaches the proxy.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Final, Literal, Protocol, get_args

import trio

from infrarust._listen import accept, open_listener
from infrarust.config._models import Address, ProxyMode, ServerConfig
from infrarust.transport import ForwardResult, Traffic

logger = logging.getLogger("infrarust")

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
]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)  # every outcome starts at 0
StatusSource = Literal["cache", "backend", "motd_unreachable", "motd_default"]
ReloadResult = Literal["ok", "rejected"]
RELOAD_RESULTS: Final[tuple[ReloadResult, ...]] = get_args(ReloadResult)
C2B: Final = "c2b"
B2C: Final = "b2c"


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


class Metrics:
    """The proxy's counters and gauges; :meth:`render` writes them in the Prometheus text format.

    The update methods are what the proxy calls on its per-connection path: one dict write each.
    ``open_connections`` and ``live_sessions`` are read only at render time: the ``connections_open`` and
    ``sessions_active`` gauges come from them, and so do the bytes live sessions have relayed so far (ended
    sessions' bytes are kept in :attr:`relayed_bytes`), so a long session shows before it ends.
    """

    def __init__(
        self,
        *,
        open_connections: Callable[[], int] = _no_connections,
        live_sessions: Callable[[], Iterable[LiveSession]] = tuple,
    ) -> None:
        self.open_connections = open_connections
        self.live_sessions = live_sessions
        # Every outcome and reload result is there from the start, at 0, so a rate() sees its first event.
        self.connections: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.sessions_ended: dict[tuple[str, str, str], int] = {}  # (server, mode, reason)
        self.relayed_bytes: dict[tuple[str, str], int] = {}  # (server, direction), ended sessions only
        self.status_answers: dict[tuple[str, str], int] = {}  # (server, source)
        self.backend_connect_failures: dict[str, int] = {}  # server
        self.config_reloads: dict[str, int] = dict.fromkeys(RELOAD_RESULTS, 0)

    def connection(self, outcome: Outcome) -> None:
        """Count a client connection by what became of it (once per connection)."""
        self.connections[outcome] += 1

    def session_ended(self, server: str, mode: str, result: ForwardResult) -> None:
        """Count an ended relayed session and keep the bytes it relayed."""
        key = (server, mode, result.reason.value)
        self.sessions_ended[key] = self.sessions_ended.get(key, 0) + 1
        relayed = self.relayed_bytes
        c2b, b2c = (server, C2B), (server, B2C)
        relayed[c2b] = relayed.get(c2b, 0) + result.client_to_backend
        relayed[b2c] = relayed.get(b2c, 0) + result.backend_to_client

    def status_answer(self, server: str, source: StatusSource) -> None:
        """Count a server-list answer by where it came from (``server`` is empty for unknown domains)."""
        key = (server, source)
        self.status_answers[key] = self.status_answers.get(key, 0) + 1

    def backend_connect_failure(self, server: str) -> None:
        """Count a time none of a server's addresses accepted a connection (login or status)."""
        failures = self.backend_connect_failures
        failures[server] = failures.get(server, 0) + 1

    def config_reload(self, result: ReloadResult) -> None:
        """Count a reload: ``ok`` (taken) or ``rejected`` (the old configuration stays)."""
        self.config_reloads[result] += 1

    def render(self) -> str:
        """Every metric in the Prometheus text format 0.0.4, with HELP and TYPE lines, one sample a line."""
        active: dict[tuple[str, str], int] = dict.fromkeys(
            ((server, mode) for server, mode, _ in self.sessions_ended), 0
        )
        relayed = dict(self.relayed_bytes)
        for session in self.live_sessions():
            server = session.server.name
            key = (server, session.mode.value)
            active[key] = active.get(key, 0) + 1
            c2b, b2c = (server, C2B), (server, B2C)
            relayed[c2b] = relayed.get(c2b, 0) + session.traffic.client_to_backend
            relayed[b2c] = relayed.get(b2c, 0) + session.traffic.backend_to_client
        out: list[str] = []
        _family(
            out,
            "connections_total",
            "counter",
            "Client connections, by what became of each.",
            ("outcome",),
            [((outcome,), count) for outcome, count in self.connections.items()],
        )
        _family(
            out,
            "connections_open",
            "gauge",
            "Client connections open now, relaying or still handshaking.",
            (),
            [((), self.open_connections())],
        )
        _family(out, "sessions_active", "gauge", "Sessions relaying now.", ("server", "mode"), active.items())
        _family(
            out,
            "sessions_ended_total",
            "counter",
            "Relayed sessions ended, by why they ended.",
            ("server", "mode", "reason"),
            self.sessions_ended.items(),
        )
        _family(
            out,
            "relayed_bytes_total",
            "counter",
            "Bytes relayed: c2b delivered to the backend, b2c to the client; live sessions included.",
            ("server", "direction"),
            relayed.items(),
        )
        _family(
            out,
            "status_answers_total",
            "counter",
            "Server-list answers, by where they came from.",
            ("server", "source"),
            self.status_answers.items(),
        )
        _family(
            out,
            "backend_connect_failures_total",
            "counter",
            "Times no address of a server accepted a connection.",
            ("server",),
            [((server,), count) for server, count in self.backend_connect_failures.items()],
        )
        _family(
            out,
            "config_reloads_total",
            "counter",
            "Configuration reloads, taken (ok) or rejected.",
            ("result",),
            [((result,), count) for result, count in self.config_reloads.items()],
        )
        return "".join(out)


def _family(
    out: list[str],
    name: str,
    kind: str,
    help_text: str,
    labels: tuple[str, ...],
    samples: Iterable[tuple[tuple[str, ...], int]],
) -> None:
    full = PREFIX + name
    out.append(f"# HELP {full} {_escape_help(help_text)}\n# TYPE {full} {kind}\n")
    for values, value in sorted(samples):
        if labels:
            pairs = ",".join(
                f'{label}="{escape_label_value(str(item))}"'
                for label, item in zip(labels, values, strict=True)
            )
            out.append(f"{full}{{{pairs}}} {value}\n")
        else:
            out.append(f"{full} {value}\n")


def escape_label_value(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


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
}
_METHOD_CHARS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_METHOD_LIMIT = 16


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


def answer(head: bytes, metrics: Metrics) -> bytes:
    """The answer to a complete request head (sans I/O): the metrics, or 400 / 404 / 405."""
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
    if urllib.parse.urlsplit(target).path != "/metrics":
        return _error(404)
    if method not in ("GET", "HEAD"):
        return _error(405, "Allow: GET, HEAD\r\n")
    body = metrics.render().encode("utf-8")
    return http_response(200, body, content_type=CONTENT_TYPE, head_only=method == "HEAD")


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
    """Where worker ``worker`` of ``workers = N`` serves metrics: the configured port + worker - 1.

    Each worker process has its own counters, so each needs its own endpoint; worker 1 (and a single
    process, ``worker`` None) uses the configured port. Port 0 stays 0: each worker takes a free port.
    """
    if worker is None or worker <= 1 or bind.port == 0:
        return bind
    return Address(bind.host, bind.port + worker - 1)


async def serve_metrics(
    metrics: Metrics,
    bind: Address,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``bind`` until cancelled; ``nursery.start`` returns the bound (host, port).

    Port 0 takes a free port. Raises :class:`MetricsBindError` when it cannot listen. Once listening, no
    client can make it fail: each connection gets one answer (or none, when it sends nothing) and is closed.
    """
    listener = await _open_listener(bind)
    async with listener, trio.open_nursery() as nursery:
        name = listener.socket.getsockname()
        task_status.started((name[0], name[1]))
        server = _Server(metrics)
        while True:
            try:
                stream = await accept(listener, "metrics")
            except OSError as exc:  # the listener itself is broken: metrics stop, the proxy goes on
                logger.error("metrics endpoint stopped error=%s", exc.strerror or exc)
                return
            if server.clients >= MAX_CLIENTS:
                stream.socket.close()
                continue
            server.clients += 1
            nursery.start_soon(server.handle, stream)


async def _open_listener(bind: Address) -> trio.SocketListener:
    if not 0 <= bind.port <= 65535:  # a worker's port + N - 1 can pass the end
        raise MetricsBindError(bind, OSError(errno.EINVAL, "the port is past 65535"))
    try:
        return await open_listener(bind, backlog=MAX_CLIENTS)
    except OSError as exc:
        raise MetricsBindError(bind, exc) from None


class _Server:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
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
            logger.exception("metrics request failed")
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
        return answer(bytes(received[:end]), self.metrics)


async def _linger(stream: trio.SocketStream) -> None:
    """Read and drop what the client still sends, until it closes (bounded), before we close."""
    dropped = 0
    with trio.move_on_after(LINGER_TIME), contextlib.suppress(trio.BrokenResourceError):
        while dropped < LINGER_LIMIT and (data := await stream.receive_some(READ_SIZE)):
            dropped += len(data)
