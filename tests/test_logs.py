"""Logs: the event API and both formatters, a real proxy logging JSON, and a proxy out of file descriptors."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import trio
from helpers import Backend, handshake, login_start, read_until_eof
from test_proxy import disconnect_text

from infrarust import logs
from infrarust.config import ServerConfig
from infrarust.protocol import NextState

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = ServerConfig.__attrs_attrs__.disconnect_message.default
# A text line: ISO 8601 time with offset, level, logger, then the event.
TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) \S+ .+$"
)


@contextlib.contextmanager
def configured(
    log_format: logs.LogFormat, level: str = "debug", worker: int | None = None
) -> Iterator[io.StringIO]:
    """``logs.configure`` onto a string buffer, undone afterwards (pytest's own handlers stay)."""
    root = logging.getLogger()
    before = root.level
    buffer = io.StringIO()
    logs.configure(level, log_format, worker=worker, stream=buffer)
    try:
        yield buffer
    finally:
        for handler in [h for h in root.handlers if isinstance(h, logs._Handler)]:
            root.removeHandler(handler)
        root.setLevel(before)


# --- values and formatters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("lobby", "lobby"),
        ("Stéve", "Stéve"),  # printable non-ASCII stays readable
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("back\\slash", "back\\slash"),
        ("line\nbreak", '"line\\nbreak"'),
        ("tab\there\r", '"tab\\there\\r"'),
        ("bell\x07", '"bell\\x07"'),
        ("sep\u2028next\x85", '"sep\\u2028next\\x85"'),  # separators splitlines() would break on
        ("\U000e0001", '"\\U000e0001"'),
    ],
)
def test_quote(value: str, shown: str) -> None:
    assert logs.quote(value) == shown
    assert len(logs.quote(value).splitlines()) == 1


def test_quote_needs_no_codec_module() -> None:
    """The escapes are a translate table: no codec is looked up (that needs a file under EMFILE)."""
    code = (
        "import sys, encodings; from infrarust import logs; "
        "before = set(sys.modules); logs.quote('a\\nb\\x00c\\u2028'); "
        "print(sorted(set(sys.modules) - before))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_text_lines_are_one_line_per_event_whatever_the_fields_hold() -> None:
    log = logs.get_logger("infrarust.test")
    problems = "a.toml: bind: bad\nb.toml: name: bad\nc.toml: domains: bad\nd.toml: x: unknown key"
    with configured("text") as out:
        log.error("reload rejected", problems=problems, kept=True, servers=3, after=1.5, player=None)
        logging.getLogger("infrarust.old").warning("old style %s", "with\nnewline")
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            log.exception("connection failed", client="127.0.0.1:5")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert all(TEXT_LINE.match(line) for line in lines), lines
    assert lines[0].endswith(
        ' ERROR infrarust.test reload rejected problems="a.toml: bind: bad\\nb.toml: name: bad\\nc.toml: '
        'domains: bad\\nd.toml: x: unknown key" kept=True servers=3 after=1.5 player=-'
    )
    assert lines[1].endswith(" WARNING infrarust.old old style with\\nnewline")
    assert ' ERROR infrarust.test connection failed client=127.0.0.1:5 exc="Traceback' in lines[2]
    assert "ValueError: boom\\nsecond line" in lines[2]


def test_json_lines_carry_ts_level_event_and_the_fields() -> None:
    log = logs.get_logger("infrarust.test")
    with configured("json", worker=2) as out:
        log.info("session ended", server="lobby", c2b=10, ok=True, took=0.25, player=None, event="clash")
        logging.getLogger("infrarust.old").info("listening on %s", "127.0.0.1:1")
        log.debug("detail", text="multi\nline")
        try:
            raise KeyError("k")
        except KeyError:
            log.exception("failed")
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(objects) == 4
    for obj in objects:
        stamp = datetime.fromisoformat(obj["ts"])
        assert stamp.tzinfo is not None and stamp.utcoffset() is not None
        assert obj["worker"] == 2
    first = objects[0]
    assert list(first)[:5] == ["ts", "level", "logger", "worker", "event"]
    assert {k: v for k, v in first.items() if k != "ts"} == {
        "level": "info",
        "logger": "infrarust.test",
        "worker": 2,
        "event": "session ended",
        "server": "lobby",
        "c2b": 10,
        "ok": True,
        "took": 0.25,
        "player": None,
        "field_event": "clash",
    }
    assert objects[1]["event"] == "listening on 127.0.0.1:1"  # not converted yet: the message is the event
    assert objects[2]["level"] == "debug" and objects[2]["text"] == "multi\nline"
    assert objects[3]["level"] == "error" and "KeyError: 'k'" in objects[3]["exc"]


def test_a_level_that_is_off_formats_nothing() -> None:
    class Loud:
        def __str__(self) -> str:
            raise AssertionError("rendered although the level is off")

    log = logs.get_logger("infrarust.test")
    with configured("text", level="info") as out:
        log.debug("hidden", value=Loud())
        assert not log.enabled(logging.DEBUG) and log.enabled(logging.INFO)
    assert out.getvalue() == ""


def test_records_read_as_text_for_other_handlers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="infrarust")
    logs.get_logger("infrarust.test").info("backend connect failed", server="s", error="No route")
    assert caplog.records[-1].getMessage() == 'backend connect failed server=s error="No route"'
    assert 'backend connect failed server=s error="No route"' in caplog.text


def test_event_records_work_with_any_standard_formatter() -> None:
    """An embedding program's own handler and format string read every usual attribute."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d %(relativeCreated)d %(levelname)s %(levelno)d %(name)s %(message)s "
            "%(process)s %(processName)s %(thread)s %(threadName)s %(filename)s:%(lineno)d %(funcName)s "
            "%(module)s %(pathname)s"
        )
    )
    logger = logging.getLogger("infrarust.embedded")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        before = time.time()
        logs.get_logger("infrarust.embedded").warning("hello", who="world")
        record = logs.EventRecord("x", logging.INFO, logs.Event("e", {}), None)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    line = buffer.getvalue()
    assert " WARNING 30 infrarust.embedded hello who=world " in line, line
    assert before - 1 < record.created <= time.time() and 0 <= record.msecs < 1000
    assert line.count("\n") == 1


def test_configure_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="log format must be one of text, json"):
        logs.configure("info", "xml")  # type: ignore[arg-type]


# --- a real proxy ------------------------------------------------------------------------------------


def write_config(folder: Path, backend: Backend, extra: str = "") -> Path:
    (folder / "servers").mkdir(exist_ok=True)
    (folder / "servers" / "game.toml").write_text(
        f'domains = ["game.test"]\naddresses = ["127.0.0.1:{backend.port}"]\nproxy_mode = "passthrough"\n'
    )
    path = folder / "infrarust.toml"
    path.write_text(f"[rate_limit]\nmax_connections = 0\n{extra}")
    return path


async def wait_for_text(path: Path, pattern: str, timeout: float = 20.0) -> re.Match[str]:
    with trio.fail_after(timeout):
        while (found := re.search(pattern, await trio.Path(path).read_text(errors="replace"))) is None:
            await trio.sleep(0.02)
    return found


@contextlib.contextmanager
def stopped_at_the_end(process: trio.Process) -> Iterator[None]:
    try:
        yield
    finally:
        if process.returncode is None:
            process.kill()


FOUR_PROBLEMS = "bind = 5\nmax_connections = 'x'\nbogus = 1\nconnect_timeout = 'zz'\n"
PROBLEM_KEYS = ("bind", "max_connections", "bogus", "connect_timeout")


async def session_refusal_and_rejected_reload(tmp_path: Path, backend: Backend, log_format: str) -> list[str]:
    """Run the proxy's command line through a relayed session, an unknown domain's login and a reload of a
    file with four problems; return its stderr lines."""
    config = write_config(tmp_path, backend)
    log_path = tmp_path / "stderr.log"
    command = [sys.executable, "-m", "infrarust", "-c", str(config), "--bind", "127.0.0.1:0"]
    with log_path.open("w") as stderr:
        process = await trio.lowlevel.open_process(
            [*command, "--log-format", log_format], cwd=ROOT, stderr=stderr
        )
    with stopped_at_the_end(process):
        port = int((await wait_for_text(log_path, r"listening on 127\.0\.0\.1:(\d+)")).group(1))
        player = await trio.open_tcp_stream("127.0.0.1", port)
        first = handshake("game.test") + login_start("Alice")
        async with player:
            await player.send_all(first)
            await backend.wait_for(0, len(first))
        await wait_for_text(log_path, "session ended")
        stranger = await trio.open_tcp_stream("127.0.0.1", port)
        async with stranger:
            await stranger.send_all(handshake("nowhere.test") + login_start("Bob"))
            await read_until_eof(stranger)
        await wait_for_text(log_path, "unknown domain")
        config.write_text(FOUR_PROBLEMS)
        process.send_signal(signal.SIGHUP)
        await wait_for_text(log_path, "reload rejected")
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0
    return (await trio.Path(log_path).read_text()).splitlines()


async def test_json_logs_parse_line_by_line_through_a_session_a_refusal_and_a_rejected_reload(
    tmp_path: Path, backend: Backend
) -> None:
    lines = await session_refusal_and_rejected_reload(tmp_path, backend, "json")
    objects = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "event"} <= obj.keys() for obj in objects)
    events = [obj["event"] for obj in objects]
    assert any(event.startswith("listening on") for event in events), events
    assert any(event.startswith("session ended") for event in events), events
    assert any(event.startswith("unknown domain") for event in events), events
    rejected = [obj for obj in objects if obj["event"].startswith("reload rejected")]
    assert len(rejected) == 1 and rejected[0]["level"] == "error"
    for problem in PROBLEM_KEYS:
        assert f"infrarust.toml: {problem}: " in json.dumps(rejected[0])


async def test_text_logs_are_one_line_per_event_and_a_rejected_reload_is_one_line(
    tmp_path: Path, backend: Backend
) -> None:
    lines = await session_refusal_and_rejected_reload(tmp_path, backend, "text")
    assert all(TEXT_LINE.match(line) for line in lines), lines
    rejected = [line for line in lines if " reload rejected" in line]
    assert len(rejected) == 1 and " ERROR " in rejected[0]
    for problem in PROBLEM_KEYS:
        assert f"infrarust.toml: {problem}: " in rejected[0]
    assert any(" listening on 127.0.0.1:" in line for line in lines)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE behaviour checked on Linux")
async def test_out_of_file_descriptors_gives_log_lines_and_login_disconnects_not_tracebacks(
    tmp_path: Path, backend: Backend
) -> None:
    """Under RLIMIT_NOFILE 64, held sessions use up the proxy's fds; the next clients are accepted with its
    last fd, its backend socket() fails with EMFILE, and each such client must get the Login Disconnect while
    the log gets a ``backend connect failed`` line, never a traceback."""
    config = write_config(tmp_path, backend)
    log_path = tmp_path / "stderr.log"

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    with log_path.open("w") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "infrarust", "-c", str(config), "--bind", "127.0.0.1:0"],
            cwd=ROOT,
            stderr=stderr,
            preexec_fn=limit_fds,
        )
    refused: list[object] = []
    relayed = 0
    with stopped_at_the_end(process):
        port = int((await wait_for_text(log_path, r"listening on 127\.0\.0\.1:(\d+)")).group(1))
        held: list[trio.SocketStream] = []

        async def player(index: int) -> None:
            nonlocal relayed
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            held.append(stream)
            first = handshake("game.test", NextState.LOGIN) + login_start(f"p{index}")
            await stream.send_all(first)
            with trio.move_on_after(10):
                reply = await stream.receive_some(65536)
                if reply == first[: len(reply)]:  # the backend echoes: this one is relayed, and held open
                    relayed += 1
                    return
                reply += await read_until_eof(stream)
                refused.append(disconnect_text(reply))

        async with trio.open_nursery() as nursery:
            for index in range(70):
                nursery.start_soon(player, index)
        log_text = await trio.Path(log_path).read_text()
        for stream in held:
            await stream.aclose()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            await process.wait()
    log_text = await trio.Path(log_path).read_text()
    assert relayed > 0 and refused, (relayed, len(refused), log_text[-3000:])
    assert all(text == {"text": UNREACHABLE} for text in refused), refused
    assert re.search(
        r"backend connect failed server=game address=127\.0\.0\.1:\d+ error=\"Too many open files\"", log_text
    )
    assert "Traceback" not in log_text, log_text[-3000:]
    assert relayed + len(refused) <= 70
