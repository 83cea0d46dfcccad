"""The ban file's blocking work stays off the event loop, and saves killed half-way leave nothing behind.

Other processes here are real: a process holding the folder's advisory lock the way the ``ban`` command
does, a save killed with SIGKILL, and a proxy run with ``python -m infrarust``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from helpers import Backend, handshake, login_start, read_exactly

from infrarust.bans import (
    LOCK_TIMEOUT,
    BanList,
    open_ban_list_async,
    read_ban_file,
    remove_stale_temporaries,
)
from infrarust.config import Ban, ProxyConfig

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_750_000_000.0
EXPIRED = {
    "ip": "198.51.100.7",
    "reason": "long over",
    "created_at": "2020-01-01T00:00:00Z",
    "expires_at": "2020-01-02T00:00:00Z",
    "source": "file",
}
CURRENT = {"name": "Griefer", "reason": "griefing", "created_at": "2025-06-01T12:00:00Z", "expires_at": None}

# Holds the exclusive lock on a folder as the ban command does (flock on the folder), says so on stdout,
# then keeps it until a line arrives on stdin and for HOLD seconds after that.
LOCK_HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.readline()
    time.sleep(float(sys.argv[2]))
    print("released", flush=True)
    """
)


def write_bans(path: Path, *entries: Mapping[str, object]) -> None:
    path.write_text(json.dumps({"version": 1, "bans": [dict(entry) for entry in entries]}, indent=2))


@asynccontextmanager
async def lock_held(folder: Path, hold: float) -> AsyncIterator[trio.Process]:
    """A process holding ``folder``'s ban lock; write a line to its stdin to start the ``hold`` seconds."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", LOCK_HOLDER, str(folder), str(hold)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        said = bytearray()
        with trio.fail_after(20):
            while not said.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, said
                said += chunk
        assert said == b"locked\n"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def release_after_hold(process: trio.Process) -> None:
    assert process.stdin is not None
    await process.stdin.send_all(b"go\n")


def temporaries(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# --- sessions keep relaying while another process holds the lock ------------------------------------------


async def test_sessions_keep_relaying_while_another_process_holds_the_ban_lock(
    tmp_path: Path, backend: Backend
) -> None:
    """A proxy whose purge must save (an expired entry) meets a lock held for 3 s by another process.

    Waiting for that lock on the event loop stalled every session for LOCK_TIMEOUT (2 s); in a worker
    thread the sessions do not notice. A real client measures it through a real proxy process.
    """
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "echo.toml").write_text(
        f'domains = ["lock.test"]\naddresses = ["127.0.0.1:{backend.port}"]\n'
    )
    config = tmp_path / "infrarust.toml"
    config.write_text('[ban]\nfile = "bans.json"\npurge_interval = "1s"\n')
    bans = tmp_path / "bans.json"
    write_bans(bans, EXPIRED, CURRENT)
    window = 3.0

    # Held from before the proxy starts until a little after the measured window, so the proxy's upkeep
    # (every second: the expired entry needs a save) waits for it all along the window.
    async with lock_held(tmp_path, window + 0.5) as holder:
        proxy = await trio.lowlevel.open_process(
            [sys.executable, "-m", "infrarust", "-c", str(config), "--bind", "127.0.0.1:0"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        assert proxy.stderr is not None
        stderr = proxy.stderr
        log = bytearray()

        async def read_log(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            started = False
            while chunk := await stderr.receive_some():
                log.extend(chunk)
                match = re.search(rb"listening on 127\.0\.0\.1:(\d+)", log)
                if match and not started:
                    started = True
                    task_status.started(int(match.group(1)))

        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(20):
                    port: int = await nursery.start(read_log)
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                first = handshake("lock.test") + login_start("Steve")
                await stream.send_all(first)
                assert await read_exactly(stream, len(first)) == first
                chunk = os.urandom(1024)

                await release_after_hold(holder)  # the 3 s start now
                times = [trio.current_time()]
                echoed = 0
                deadline = times[0] + window
                while trio.current_time() < deadline:
                    await stream.send_all(chunk)
                    assert await read_exactly(stream, len(chunk), timeout=10) == chunk
                    echoed += len(chunk)
                    times.append(trio.current_time())
                    await trio.sleep(0.002)  # a game's pace, not a benchmark
                await stream.aclose()

                # The proxy's upkeep could not save all along (the lock is still held)...
                assert "198.51.100.7" in bans.read_text(), log.decode()
                # ...and purges once the lock is free: its upkeep ran, and waited for the lock meanwhile.
                with trio.move_on_after(15):
                    while "198.51.100.7" in bans.read_text():
                        await trio.sleep(0.05)
                assert "198.51.100.7" not in bans.read_text(), log.decode()
                assert [entry.name for entry in read_ban_file(bans)[0]] == ["Griefer"]
                proxy.send_signal(signal.SIGTERM)
                with trio.fail_after(10):
                    assert await proxy.wait() == 0
        finally:
            if proxy.returncode is None:
                proxy.kill()
                await proxy.wait()

    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    print(f"echoed {echoed} bytes in {len(gaps)} round trips during the lock; longest {max(gaps):.3f}s")
    # Stalled on the lock, the longest round trip was LOCK_TIMEOUT (2 s); here it must stay far below.
    assert max(gaps) < LOCK_TIMEOUT / 2, max(gaps)
    assert echoed >= 50 * len(chunk)
    assert "Traceback" not in log.decode()


async def test_async_changes_wait_for_the_lock_in_a_thread(tmp_path: Path) -> None:
    """``ban_ip_async`` waits for another writer's lock without stopping this loop, then saves."""
    path = tmp_path / "bans.json"
    bans = await BanList.load_async(path)
    ticks: list[float] = []

    async def tick(cancel: trio.CancelScope) -> None:
        with cancel:
            while True:
                ticks.append(trio.current_time())
                await trio.sleep(0.01)

    async with lock_held(tmp_path, 1.0) as holder, trio.open_nursery() as nursery:
        ticker = trio.CancelScope()
        nursery.start_soon(tick, ticker)
        await release_after_hold(holder)
        start = trio.current_time()
        entry = await bans.ban_ip_async("203.0.113.0/24", reason="bots", now=T0)
        waited = trio.current_time() - start
        ticker.cancel()
    assert 0.5 < waited < LOCK_TIMEOUT + 1  # it did wait for the other process
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert len(ticks) > 30
    assert max(gaps) < 0.5
    assert read_ban_file(path)[0] == [entry]
    assert bans.match("203.0.113.9") == entry


async def test_every_async_twin(tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    config = ProxyConfig(ban=Ban(file=str(path)))
    bans = await open_ban_list_async(config)
    steve = await bans.ban_player_async("Steve", reason="x", duration=60, now=T0)
    ip = await bans.ban_ip_async("10.0.0.0/8", reason="y")
    assert bans.match("10.1.2.3", "steve", now=T0) == steve
    assert bans.match("10.1.2.3", now=T0) == ip
    assert await bans.purge_async(now=T0 + 61) == [steve]
    assert await bans.unban_ip_async("10.0.0.0/8") == [ip]
    assert len(bans) == 0
    other = BanList.load(path)  # another writer
    alex = other.ban_player(name="Alex", reason="z")
    assert await bans.refresh_async() is True
    assert await open_ban_list_async(config, bans) is bans  # the same file: the same list, brought up to date
    assert bans.entries() == (alex,)
    assert await bans.unban_player_async("alex") == [alex]
    assert read_ban_file(path)[0] == []


# --- saves killed half-way -------------------------------------------------------------------------------

# Loads the list, then bans; the save stops at its fsync (the temporary file is written, not yet renamed)
# and says so, so the test can kill it there.
KILLED_SAVE = textwrap.dedent(
    """
    import os, sys, time
    from infrarust.bans import BanList
    bans = BanList.load(sys.argv[1])
    def stuck(fd):
        print("saving", flush=True)
        time.sleep(60)
    os.fsync = stuck
    bans.ban_ip("203.0.113.9", reason="never saved")
    """
)


def test_a_save_killed_by_sigkill_leaves_a_temporary_file_that_the_next_load_removes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bans.json"
    write_bans(path, CURRENT)
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVE, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as save:
        assert save.stdout is not None
        assert save.stdout.readline() == "saving\n"
        save.send_signal(signal.SIGKILL)
        assert save.wait(timeout=10) == -signal.SIGKILL
    leftovers = temporaries(tmp_path)
    assert len(leftovers) == 1
    assert re.fullmatch(r"\.bans\.json\.[a-z0-9_]{8}\.tmp", leftovers[0])
    assert "never saved" in (tmp_path / leftovers[0]).read_text()  # written, never renamed

    caplog.set_level("INFO", logger="infrarust.bans")
    bans = BanList.load(path)
    assert temporaries(tmp_path) == []
    assert [entry.name for entry in bans.entries()] == ["Griefer"]  # the file itself was never touched
    removed = [
        record.getMessage() for record in caplog.records if "stale ban file temporary" in record.getMessage()
    ]
    assert removed == [f"stale ban file temporary removed path={tmp_path / name}" for name in leftovers]


async def test_a_temporary_file_of_a_save_in_progress_is_kept(tmp_path: Path) -> None:
    """While another writer holds the lock, its temporary file may be a save in progress: left alone."""
    path = tmp_path / "bans.json"
    in_progress = tmp_path / ".bans.json.a1b2c3d4.tmp"
    in_progress.write_text("{")
    async with lock_held(tmp_path, 0) as holder:
        bans = await BanList.load_async(path)  # does not wait for the lock either
        assert in_progress.exists()
        await release_after_hold(holder)
    assert len(bans) == 0
    assert remove_stale_temporaries(path) == [in_progress]
    assert not in_progress.exists()


def test_only_the_ban_files_own_temporaries_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    keep = [
        ".bans.json.backup.tmp",  # not mkstemp's 8 random characters
        ".other.json.a1b2c3d4.tmp",  # another file's
        "bans.json.a1b2c3d4.tmp",  # not hidden
        ".bans.json.a1b2c3d4.swp",
    ]
    for name in [*keep, ".bans.json.zz_9x8y7.tmp"]:
        (tmp_path / name).write_text("x")
    assert remove_stale_temporaries(path) == [tmp_path / ".bans.json.zz_9x8y7.tmp"]
    assert sorted(os.listdir(tmp_path)) == sorted(keep)


def test_no_folder_no_temporaries(tmp_path: Path) -> None:
    assert remove_stale_temporaries(tmp_path / "missing" / "bans.json") == []
