"""Log events: an event name plus ``key=value`` fields, one text line or one JSON object per event.

How a module logs::

    from infrarust import logs

    log = logs.get_logger(__name__)
    log.info("backend connect failed", server=server.name, address=address, error=exc.strerror)
    log.debug("route chosen", host=host, server=server.name, match="wildcard")
    log.exception("connection failed", client=peer)  # ERROR, with the traceback as the ``exc`` field

The first argument is the event name: a few lower-case words naming what happened, the same for every
occurrence (``session ended``, ``reload rejected``). Fields are keyword arguments; values may be ``str``,
``int``, ``float``, ``bool``, ``None`` or anything with a useful ``str()`` (an ``Address``). A field value
may hold anything, newlines included: the text format quotes and escapes it, so an event is always exactly
one line; the JSON format keeps it as a JSON string.

Cost: a level that is off returns after one cached dict lookup (``Logger.isEnabledFor``); on the hot path,
build expensive fields only under ``if log.enabled(logging.DEBUG):``. Rendering happens in the handler, so
an event nobody formats costs only its ``LogRecord``.

Records go through the standard :mod:`logging` tree (``infrarust.*`` loggers), so an embedding program's
handlers and pytest's ``caplog`` see them: ``record.getMessage()`` is the text form of the event
(``backend connect failed server=lobby ...``). :func:`configure` is what the command line uses: one stderr
handler with :class:`TextFormatter` or :class:`JsonFormatter`. Plain ``logger.info("... %s", x)`` calls
from code not converted yet still work: their whole message is the event (escaped to one line).

Nothing here loads a codec, opens a file or imports a module lazily, so logging an error works when the
process is out of file descriptors (EMFILE), which is exactly when it is needed.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import IO, Final, Literal, TypeAlias

_ExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)
LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("text", "json")
# JSON keys the formatter writes itself; a field with one of these names is written as ``field_<name>``.
RESERVED: Final = frozenset({"ts", "level", "logger", "event", "exc"})

# What a quoted value needs escaped, as a translate table: no codec is involved (the ``unicode_escape``
# codec is imported on first use, which needs a free file descriptor: none is left under EMFILE).
_ESCAPES: Final[dict[int, str]] = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
# For a whole message (not converted to fields): keep quotes and backslashes, escape only line breaks and
# other control characters.
_CONTROL_ESCAPES: Final[dict[int, str]] = {
    code: text for code, text in _ESCAPES.items() if code not in (ord("\\"), ord('"'))
}


def quote(value: str) -> str:
    """A text field value: bare when it is one plain word, else double-quoted with escapes.

    Non-ASCII letters stay as they are; control characters and other non-printable characters (line and
    paragraph separators included) become escapes, so the result never spans two lines.
    """
    if value and value.isprintable() and " " not in value and '"' not in value and "=" not in value:
        return value
    return '"' + _escape(value, _ESCAPES) + '"'


def _escape(value: str, table: Mapping[int, str]) -> str:
    escaped = value.translate(table)
    if escaped.isprintable():
        return escaped
    # Rare: non-ASCII characters that are not printable (U+2028, U+0085, zero-width...).
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in escaped)


def _escape_char(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(message: str) -> str:
    """A free-form message with its line breaks and control characters escaped (quotes kept)."""
    return message if message.isprintable() else _escape(message, _CONTROL_ESCAPES)


def render_value(value: object) -> str:
    """A field value as the text format writes it (``None`` is ``-``)."""
    kind = type(value)
    if kind is str:
        return quote(value)  # type: ignore[arg-type]
    if value is None:
        return "-"
    if kind is int or kind is bool:
        return str(value)
    if kind is float:
        return f"{value:g}"
    return quote(str(value))


def render_fields(fields: Mapping[str, object]) -> str:
    """`` key=value`` for each field, each with its leading space."""
    # The common kinds inline (a session's end line is one of these per connection): a plain word or an
    # int is written as it is, anything else goes through render_value.
    parts = []
    for key, value in fields.items():
        if type(value) is int or (
            type(value) is str
            and value
            and value.isprintable()
            and " " not in value
            and '"' not in value
            and "=" not in value
        ):
            parts.append(f" {key}={value}")
        else:
            parts.append(f" {key}={render_value(value)}")
    return "".join(parts)


class Event:
    """A log record's message: the event name and its fields, rendered to text only when asked."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[str, object]) -> None:
        self.name = name
        self.fields = fields

    def __str__(self) -> str:
        return self.name + render_fields(self.fields) if self.fields else self.name

    def __repr__(self) -> str:
        return f"Event({self.name!r}, {self.fields!r})"


class EventLogger:
    """A :class:`logging.Logger` that takes an event name and keyword fields (see the module docstring)."""

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    @property
    def name(self) -> str:
        """The underlying logger's name."""
        return self.logger.name

    def enabled(self, level: int) -> bool:
        """Whether an event at ``level`` would be handled (guard expensive fields with it)."""
        return self.logger.isEnabledFor(level)

    def debug(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at DEBUG: the whole story of a connection."""
        if self.logger.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, event, fields, None)

    def info(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at INFO: what an operator acts on."""
        if self.logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, event, fields, None)

    def warning(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at WARNING."""
        if self.logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, event, fields, None)

    def error(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at ERROR."""
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields, None)

    def exception(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at ERROR with the exception being handled (its traceback is the ``exc`` field)."""
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields, sys.exc_info())

    def log(self, level: int, event: str, /, **fields: object) -> None:
        """Log ``event`` at ``level``."""
        if self.logger.isEnabledFor(level):
            self._emit(level, event, fields, None)

    def _emit(self, level: int, event: str, fields: dict[str, object], exc_info: _ExcInfo | None) -> None:
        # Logger.handle with a record made here rather than Logger.log: no caller lookup (a walk up the
        # stack) and none of LogRecord's per-record bookkeeping, which no formatter here prints.
        self.logger.handle(EventRecord(self.logger.name, level, Event(event, fields), exc_info))


class EventRecord(logging.LogRecord):
    """A :class:`logging.LogRecord` for an :class:`Event`, made in about half the time of a full one.

    It has every attribute a standard formatter reads; the ones that cost a system call or a lookup each
    time (caller file and line, thread and process names) are fixed placeholders.
    """

    def __init__(self, name: str, level: int, msg: Event, exc_info: _ExcInfo | None) -> None:
        # LogRecord.__init__ is not called on purpose: this sets the same attributes, more cheaply.
        now = time.time_ns()
        self.name = name
        self.msg = msg
        self.args = ()
        self.levelno = level
        self.levelname = logging.getLevelName(level)
        self.pathname = self.filename = self.module = ""
        self.funcName = ""
        self.lineno = 0
        self.exc_info = exc_info
        self.exc_text = None
        self.stack_info = None
        self.created = now / 1e9
        self.msecs = (now % 1_000_000_000) // 1_000_000 + 0.0
        self.relativeCreated = (self.created - _STARTED) * 1000
        self.thread = self.threadName = None
        self.processName = None
        self.process = None
        self.taskName = None


_STARTED: Final = time.time()


def get_logger(name: str) -> EventLogger:
    """The event logger over ``logging.getLogger(name)``; use ``get_logger(__name__)`` in each module."""
    return EventLogger(logging.getLogger(name))


# --- formatters ---------------------------------------------------------------------------------------


class _Clock:
    """ISO 8601 local time with its UTC offset, millisecond precision; the second's part is cached."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def format(self, created: float) -> str:
        second = int(created)
        cached = self._cached
        if cached[0] != second:
            local = time.localtime(second)
            offset = local.tm_gmtoff // 60
            sign = "+" if offset >= 0 else "-"
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local)
            cached = (second, f"{stamp}.%03d{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}")
            self._cached = cached  # one assignment: safe when a worker thread logs at the same time
        return cached[1] % int((created - second) * 1000)


class TextFormatter(logging.Formatter):
    """``TS LEVEL LOGGER [CONTEXT] EVENT key=value ...``: one line per record, whatever the values hold.

    ``context`` fields (``worker=2`` under ``workers = N``) come before the event, on every line.
    """

    def __init__(self, context: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self._clock = _Clock()
        self._context = render_fields(context or {})

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line."""
        message = record.msg
        body = str(message) if type(message) is Event else one_line(record.getMessage())
        line = f"{self._clock.format(record.created)} {record.levelname} {record.name}{self._context} {body}"
        if record.exc_info:
            line += " exc=" + quote(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO 8601 with offset), ``level``, ``logger``, ``event``, fields.

    Field values that JSON has no type for are written as their ``str()``; a traceback is ``exc``.
    """

    def __init__(self, context: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self._clock = _Clock()
        self._context = dict(context or {})
        self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON object (no newline inside)."""
        message = record.msg
        out: dict[str, object] = {
            "ts": self._clock.format(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        out.update(self._context)
        if type(message) is Event:
            out["event"] = message.name
            for key, value in message.fields.items():
                out[f"field_{key}" if key in RESERVED else key] = value
        else:
            out["event"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(out)


class _Handler(logging.StreamHandler[IO[str]]):
    """The handler :func:`configure` installs (marked, so a second call replaces it)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write the line; like StreamHandler's, with the newline joined in one write.

        ``Handler.handle`` already holds the handler's lock here, so the stream is flushed directly rather
        than through ``StreamHandler.flush`` (which takes the lock again), and the formatter is called
        directly: the ``session ended`` line is on the per-connection path (54 -> 47 calls per line).
        Lines are not held back to batch their write(2): measured, that saved ~1 us per line on a file
        and cost more in per-loop-pass bookkeeping than it saved at 50 concurrent connections.
        """
        try:
            formatter = self.formatter
            line = formatter.format(record) if formatter is not None else self.format(record)
            stream = self.stream
            stream.write(line + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def configure(
    level: str | int,
    log_format: LogFormat = "text",
    *,
    worker: int | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Send every ``infrarust`` log event to stderr (or ``stream``) at ``level`` in ``log_format``.

    For the command line: the root logger gets one handler (a previous :func:`configure` handler is
    replaced, other handlers stay), and the per-record extras that no formatter here prints (thread, process
    and multiprocessing names) are turned off. ``worker`` adds ``worker=N`` to every event.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    context = {"worker": worker} if worker is not None else None
    formatter: logging.Formatter = JsonFormatter(context) if log_format == "json" else TextFormatter(context)
    handler = _Handler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [old for old in root.handlers if isinstance(old, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
