"""Install and build what the benchmark needs: ``python -m bench.setup``.

Installs Debian's ``haproxy`` with apt-get when no ``haproxy`` is found (running ``apt-get update``
first only if the package is not known yet), and compiles the C load generator and backend into
bench/build/. Idempotent, and silent when everything is already there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BUILD = BENCH_DIR / "build"
PROGRAMS = ("loadgen", "backend")
HEADER = BENCH_DIR / "bench_common.h"
CFLAGS = ("-O2", "-Wall", "-Wextra")


def _have_haproxy() -> bool:
    return shutil.which("haproxy") is not None or os.access("/usr/sbin/haproxy", os.X_OK)


def install_haproxy() -> None:
    """apt-get install -y haproxy, with apt-get update first if apt does not know the package."""
    if _have_haproxy():
        return
    if os.geteuid() != 0:
        sys.exit("bench.setup: haproxy is missing; install it as root: apt-get install -y haproxy")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("bench.setup: installing haproxy (apt-get)", flush=True)

    def install() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "install", "-y", "-q", "haproxy"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )

    done = install()
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
        done = install()
    if done.returncode != 0 or not _have_haproxy():
        sys.exit(f"bench.setup: apt-get install haproxy failed:\n{done.stderr[-2000:]}")


def build(*, quiet: bool = False) -> None:
    """Compile each program whose binary is missing or older than its sources."""
    BUILD.mkdir(exist_ok=True)
    for name in PROGRAMS:
        src, exe = BENCH_DIR / f"{name}.c", BUILD / name
        newest = max(src.stat().st_mtime, HEADER.stat().st_mtime)
        if exe.exists() and exe.stat().st_mtime >= newest:
            continue
        cmd = ["gcc", *CFLAGS, "-o", str(exe), str(src)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            sys.exit(f"bench.setup: {' '.join(cmd)} failed:\n{done.stderr}")
        if done.stderr.strip():
            print(done.stderr, file=sys.stderr)
        if not quiet:
            print(f"bench.setup: built {exe.relative_to(BENCH_DIR.parent)}", flush=True)


def main() -> None:
    install_haproxy()
    build()


if __name__ == "__main__":
    main()
