"""Where a connection's time goes: Python calls and syscalls per connection, infrarust against the floor.

``python -m bench.pathcount [--relays floor,zero_copy,hooked] [--count 1000]`` runs each relay twice under
cProfile and twice under ``strace -c -f``, once with ``--count`` connections of the connection-rate
workload (connect, handshake + login start, 32-byte echo, close; 50 at a time) and once with a tenth of
them, and prints the difference divided by the difference in connections: start-up and shutdown cancel
out. Syscalls are listed by name. The load generator and backend are bench/'s C programs (build them
with ``python -m bench.setup``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _proc
from bench._procs import (
    ADMISSION_RATE_LIMIT,
    BUILD,
    DOMAIN,
    PIPE_SIZE,
    REPO,
    Backend,
    admission_tables,
    run_loadgen,
    wait_port,
)

_LISTENING = re.compile(r"listening on \[?[0-9a-fA-F.:]+?\]?:(\d+)")
_PORT_LINE = re.compile(r"^port (\d+)", re.M)


def _config(workdir: Path, backend: Backend) -> Path:
    (workdir / "servers").mkdir(parents=True, exist_ok=True)
    cfg = workdir / "infrarust.toml"
    cfg.write_text(
        'bind = "127.0.0.1:0"\nservers_dir = "servers"\n'
        f"\n[rate_limit]\n{ADMISSION_RATE_LIMIT}"
        f"\n[zero_copy]\npipe_size = {PIPE_SIZE}\n" + admission_tables(workdir)
    )
    (workdir / "servers" / "bench.toml").write_text(
        f'domains = ["{DOMAIN}"]\naddresses = ["127.0.0.1:{backend.port}"]\nproxy_mode = "zero_copy"\n'
    )
    return cfg


def _command(relay: str, cfg: Path, backend: Backend) -> list[str]:
    if relay == "floor":
        return ["-m", "bench.floor", str(backend.port)]
    if relay == "hooked":
        return ["-m", "bench.embedded", str(cfg)]
    return ["-m", "infrarust", "run", "-c", str(cfg), "--log-level", "info"]


def _one(relay: str, tool: str, count: int, backend: Backend, workdir: Path) -> Any:
    cfg = _config(workdir, backend)
    out = workdir / f"{relay}-{tool}-{count}.out"
    log = workdir / f"{relay}-{tool}-{count}.log"
    py = [sys.executable, *(["-m", "cProfile", "-o", str(out)] if tool == "cprofile" else [])]
    prefix = ["strace", "-f", "-c", "-o", str(out)] if tool == "strace" else []
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [*prefix, *py, *_command(relay, cfg, backend)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )
        try:
            port = 0
            deadline = time.monotonic() + 30
            while not port and time.monotonic() < deadline and proc.poll() is None:
                text = log.read_text(errors="replace")
                found = _LISTENING.search(text) or _PORT_LINE.search(text)
                port = int(found.group(1)) if found else 0
                time.sleep(0.05)
            if not port or not wait_port(port, proc, 10):
                raise RuntimeError(f"{relay} did not start: {log.read_text()[-300:]}")
            args = ["connrate", f"port={port}", f"domain={DOMAIN}", "conc=50", "payload=32"]
            res = run_loadgen([*args, "ms=60000", f"count={count}", "grace_ms=3000"], timeout=120)
            if res["done"] != count:
                raise RuntimeError(f"{relay}: {res['done']} of {count} connections done")
            time.sleep(0.3)
        finally:
            # SIGINT: infrarust drains and returns, the floor raises KeyboardInterrupt; either way cProfile
            # writes its file and strace reports once the process is gone.
            # Under strace the relay is strace's child: signal it, not strace (which would detach and leave
            # it running).
            target = [c for c in _proc.process_tree(proc.pid) if c != proc.pid][:1] if prefix else []
            if target:
                os.kill(target[0], signal.SIGINT)
            else:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    if tool == "cprofile":
        stats = pstats.Stats(str(out))
        return stats.total_calls, {  # type: ignore[attr-defined]
            f"{Path(k[0]).name}:{k[2]}": v[1]
            for k, v in stats.stats.items()  # type: ignore[attr-defined]
        }
    calls: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit() and parts[-1] != "total":
            calls[parts[-1]] = int(parts[3])
    return sum(calls.values()), calls


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pathcount", description=__doc__.split("\n\n")[0])
    p.add_argument("--relays", default="floor,zero_copy,hooked")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--tools", default="cprofile,strace")
    p.add_argument("--top", type=int, default=0, help="also list the N functions called most per connection")
    p.add_argument("--files", action="store_true", help="also sum the Python calls per source file")
    p.add_argument("--keep", help="work in a directory under this one and leave the profiles there")
    a = p.parse_args(argv)
    if not (BUILD / "loadgen").exists():
        print("build the load generator first: python -m bench.setup", file=sys.stderr)
        return 1
    small = max(1, a.count // 10)
    backend = Backend(0)
    try:
        workdir = (
            contextlib.nullcontext(a.keep)
            if a.keep
            else tempfile.TemporaryDirectory(prefix="infrarust-pathcount-")
        )
        with workdir as tmp:
            for tool in a.tools.split(","):
                for relay in a.relays.split(","):
                    big_total, big = _one(relay, tool, a.count, backend, Path(tmp))
                    small_total, little = _one(relay, tool, small, backend, Path(tmp))
                    n = a.count - small
                    what = "Python calls" if tool == "cprofile" else "syscalls"
                    print(f"{relay:<10} {what} per connection: {(big_total - small_total) / n:.1f}")
                    per = collections.Counter(
                        {k: (v - little.get(k, 0)) / n for k, v in big.items() if v - little.get(k, 0) > 0}
                    )
                    if tool == "strace":
                        shown = ", ".join(f"{k} {v:.1f}" for k, v in per.most_common() if v >= 0.05)
                        print(f"           {shown}")
                    elif a.files:
                        files: collections.Counter[str] = collections.Counter()
                        for k, v in per.items():
                            files[k.split(":", 1)[0]] += v
                        print("           " + ", ".join(f"{k} {v:.0f}" for k, v in files.most_common(25)))
                    if tool == "cprofile" and a.top:
                        for k, v in per.most_common(a.top):
                            print(f"           {v:6.1f}  {k}")
                    sys.stdout.flush()
    finally:
        backend.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(sys.argv[1:]))
