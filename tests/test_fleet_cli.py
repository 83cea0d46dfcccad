"""The fleet's command line on a real redis-server: ``ban``/``unban``/``bans`` through Redis (a running
instance applies them), ``bans --export/--import``, and ``infrarust status`` from Redis or, without
``[cluster]``, through the local instance's metrics endpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio
from _cli_helpers import ROOT
from _redis_helpers import RedisServer
from helpers import free_port, start_fake_status_server, status_json
from test_fleet_proxy import login

import infrarust
from infrarust.config import load_config


async def cli(*args: str) -> tuple[int, str, str]:
    """``python -m infrarust ARGS`` to its end: exit code, stdout, stderr."""
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "infrarust", *args],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def write_config(folder: Path, backend_ports: list[int], extra: str) -> Path:
    (folder / "servers").mkdir(exist_ok=True)
    addresses = ", ".join(f'"127.0.0.1:{port}"' for port in backend_ports)
    (folder / "servers" / "lobby.toml").write_text(
        f'domains = ["lobby.test"]\naddresses = [{addresses}]\nload_balance = "round_robin"\n'
        '[health_check]\ninterval = "300ms"\ntimeout = "1s"\n'
    )
    config = folder / "infrarust.toml"
    config.write_text(
        'bind = "127.0.0.1:0"\nservers_dir = "servers"\n'
        f'[ban]\nfile = "{folder / "bans.json"}"\n'
        "[rate_limit]\nmax_connections = 0\nstatus_max = 0\n" + extra
    )
    return config


async def test_bans_through_redis_and_the_fleet_status(
    nursery: trio.Nursery, redis_server: RedisServer, tmp_path: Path
) -> None:
    backends = [await start_fake_status_server(nursery, status_json()) for _ in range(2)]
    cluster = (
        f'[cluster]\nredis = "redis://127.0.0.1:{redis_server.port}/0"\ninstance_id = "alpha"\n'
        'timeout = "250ms"\nheartbeat = "300ms"\n'
    )
    config_path = write_config(tmp_path, [b.port for b in backends], cluster)
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, load_config(config_path))
    held = await login(proxy.port, "Held")
    assert held.admitted

    code, out, err = await cli("ban", "ip", "127.0.0.1", "--reason", "from the cli", "-c", str(config_path))
    assert code == 0, err
    assert "banned ip 127.0.0.1" in out and "within a second" in err
    assert not (tmp_path / "bans.json").exists()  # the fleet's bans live in Redis, not in the file
    with trio.fail_after(1.0):
        while (attempt := await login(proxy.port)).admitted:
            await attempt.close()
    assert attempt.text is not None and "from the cli" in attempt.text

    export = tmp_path / "export.json"
    code, out, err = await cli("bans", "--export", str(export), "-c", str(config_path))
    assert code == 0, err
    exported = json.loads(export.read_text())["bans"]
    assert [entry["ip"] for entry in exported] == ["127.0.0.1"]

    code, out, err = await cli("unban", "ip", "127.0.0.1", "-c", str(config_path))
    assert code == 0 and "unbanned ip 127.0.0.1" in out, err
    with trio.fail_after(1.0):
        while not (attempt := await login(proxy.port)).admitted:
            await trio.sleep(0.02)
    await attempt.close()

    code, out, err = await cli("bans", "--import", str(export), "-c", str(config_path))
    assert code == 0 and "imported 1 ban(s)" in out, err
    code, out, err = await cli("bans", "-c", str(config_path))
    assert code == 0 and out.startswith("ip 127.0.0.1 ") and "1 ban(s) in the fleet" in err

    code, out, err = await cli("status", "-c", str(config_path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "1 instance(s)"
    assert lines[1].lstrip().startswith("alpha ") and "sessions: lobby=1" in lines[1]
    for backend in backends:
        assert any(f"lobby 127.0.0.1:{backend.port} up" in line for line in lines), out
    await held.close()


async def test_redis_away_is_a_clear_error(tmp_path: Path) -> None:
    cluster = f'[cluster]\nredis = "redis://127.0.0.1:{free_port()}/0"\n'
    config_path = write_config(tmp_path, [free_port()], cluster)
    code, _out, err = await cli("status", "-c", str(config_path))
    assert code == 1 and "cannot reach the fleet's Redis" in err and "Traceback" not in err


async def test_local_status_and_ban_file_transfer(nursery: trio.Nursery, tmp_path: Path) -> None:
    backends = [await start_fake_status_server(nursery, status_json()) for _ in range(2)]
    metrics_port = free_port()
    config_path = write_config(
        tmp_path, [b.port for b in backends], f'[metrics]\nbind = "127.0.0.1:{metrics_port}"\n'
    )
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, load_config(config_path))
    held = await login(proxy.port, "Held")
    code, out, err = await cli("status", "-c", str(config_path))
    assert code == 0, err
    assert f"local instance (http://127.0.0.1:{metrics_port}/metrics)" in out
    assert "sessions: lobby=1" in out
    assert sum("sessions=1" in line for line in out.splitlines()) == 1  # the address the session took
    await held.close()

    # Without [cluster] the file is the store: --export writes it out, --import merges a file into it.
    code, out, err = await cli("ban", "player", "Griefer", "-c", str(config_path))
    assert code == 0, err
    export = tmp_path / "out.json"
    code, out, err = await cli("bans", "--export", str(export), "-c", str(config_path))
    assert code == 0 and json.loads(export.read_text())["bans"][0]["name"] == "Griefer"
    other = tmp_path / "other"
    other.mkdir()
    other_config = write_config(other, [free_port()], "")
    code, out, err = await cli("bans", "--import", str(export), "-c", str(other_config))
    assert code == 0, err
    assert json.loads((other / "bans.json").read_text())["bans"][0]["name"] == "Griefer"
