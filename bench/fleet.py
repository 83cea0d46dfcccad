"""What a fleet costs per connection: ``python -m bench.fleet`` (run by ``make bench`` after the main one).

The connection-rate workload of the main benchmark (connect, handshake + login start, 32-byte echo, close,
50 at a time) against infrarust ``zero_copy`` with a per-IP login budget (high enough never to refuse),
once counted locally (``[cluster]`` off) and once in Redis (``[cluster]`` on, a local ``redis-server``
without persistence, one round trip per login), interleaved over ``--rounds`` rounds. Printed: connections
per second and relay CPU per connection of each, and the ratios on/off (medians of per-round ratios).
The issue's budget: the fleet costs at most 1.3x per connection.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _proc, setup
from bench._procs import DOMAIN, Backend, Infrarust, free_port, run_loadgen

# Every bench connection comes from 127.0.0.1: a budget no run reaches, so every login is counted.
BUDGET = 'max_connections = 100000000\nwindow = "1s"\nstatus_max = 0\n'


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench.fleet needs redis-server (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(folder), "--loglevel", "warning"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, port


def trial(backend: Backend, workdir: Path, extra: str, ms: int, conc: int) -> dict[str, Any]:
    relay = Infrarust("fleet", backend, workdir, "zero_copy", rate_limit=BUDGET, extra=extra)
    try:
        relay.wait_ready()
        args = ["connrate", f"port={relay.port}", f"domain={DOMAIN}", f"conc={conc}", "payload=32"]
        args += [f"ms={ms}", "count=1000000", "grace_ms=3000"]
        assert relay.pid is not None
        _proc.settle(relay.pid)
        before = _proc.tree_cpu_seconds(relay.pid)
        result = run_loadgen(args, timeout=ms / 1e3 + 30)
        _proc.settle(relay.pid)
        cpu = _proc.tree_cpu_seconds(relay.pid) - before
        done = max(int(result["done"]), 1)
        errors = int(result["errors"]) + int(result["connect_errors"]) + int(result["unfinished"])
        return {"cps": float(result["rate_cps"]), "cpu_us_per_conn": cpu * 1e6 / done, "errors": errors}
    finally:
        problems = relay.problems()
        relay.stop()
        if problems:
            print(f"  ({problems})", file=sys.stderr)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per trial (default 2)")
    parser.add_argument("--conc", type=int, default=50, help="connections in flight (default 50)")
    options = parser.parse_args(argv)
    setup.build(quiet=True)
    folder = Path(tempfile.mkdtemp(prefix="infrarust-bench-fleet-"))
    redis, port = start_redis(folder)
    backend = Backend(0)
    cluster = f'\n[cluster]\nredis = "redis://127.0.0.1:{port}/0"\n'
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    try:
        for number in range(max(1, options.rounds)):
            order = ("off", "on") if number % 2 == 0 else ("on", "off")
            for case in order:
                workdir = folder / f"r{number}-{case}"
                result = trial(
                    backend,
                    workdir,
                    cluster if case == "on" else "",
                    int(options.seconds * 1000),
                    options.conc,
                )
                results[case].append(result)
                print(
                    f"round {number + 1} cluster {case:3}: {result['cps']:8.0f} conn/s"
                    f"  {result['cpu_us_per_conn']:7.1f} us CPU/conn  errors={result['errors']}",
                    flush=True,
                )
    finally:
        backend.stop()
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    rate = statistics.median(
        on["cps"] / off["cps"] for on, off in zip(results["on"], results["off"], strict=True)
    )
    cpu = statistics.median(
        on["cpu_us_per_conn"] / off["cpu_us_per_conn"]
        for on, off in zip(results["on"], results["off"], strict=True)
    )
    print(
        f"[cluster] on/off: connection rate x{rate:.2f}, CPU per connection x{cpu:.2f} (budget: at most x1.3)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
