"""The infrarust benchmark: ``python -m bench`` from the repository root (``make bench``).

In one run it measures, interleaved and repeated (``--repeats``, 3 by default), a direct connection
to the backend (no relay), the floor (bench/floor.py: the smallest Trio relay doing infrarust's
per-connection work, the measured limit of its design), infrarust ``zero_copy``, infrarust
``passthrough`` and HAProxy (tcp mode, splice forced both ways, same pipe size), and for the
connection rate also infrarust ``zero_copy`` with ``workers = 2`` and bench/embedded.py (``zero_copy``
embedded through ``infrarust.serve``), measured in one process as ``embedded`` and, with a no-op
``on_pre_connect`` hook and one events subscriber registered, as ``hooked`` (alternating windows).
Every connection the load generator makes starts with a real Minecraft handshake and login start; the
backend consumes them, then sinks, sources or echoes.

Phases (``--phases``, all by default), in this order inside each round:

memory    open N idle sessions (3,000), RSS and kernel memory per session (see bench/_proc.py)
scaling   with 3,000 then 300 then 10 idle sessions held open, relay CPU per connection and per GB
          of the standard connection-rate and 8-stream download workloads: does cost grow with
          the number of sessions the relay carries?
bulk      throughput and relay CPU per GB, 1 and 8 streams, upload (client -> server) and download
rtt       64-byte ping-pong round trip through one session, p50 and p99
connrate  connect, handshake + login start, 32-byte echo, close, 50 at a time; relay CPU per conn;
          then the same for server-list pings (handshake + status request, response, ping, pong, close)

Method notes: relay CPU is utime + stime from /proc/<pid>/stat, summed over the relay's process
tree, read before and after each step with the relay left to go idle on both sides; memory is
explained in bench/_proc.py. The round trip runs with the load generator, the relay and the backend
pinned to one CPU (a cross-CPU wakeup on these VMs costs ~35 us and would swamp the relay's own
latency). Bulk trials pin the load generator and the backend to CPU 0 and the relay to the last
CPU: left to the scheduler, three processes on two CPUs land differently from trial to trial and a
single stream's throughput and CPU/GB then jump by 2x with the placement (direct: both ends on CPU
0). Connection-rate trials pin the same way, except for workers = 2, which needs both CPUs: pinned,
zero_copy's CPU per connection over the floor's ranged 1.17-1.21x over five rounds, against
1.14-1.38x unpinned. A relay faster than the ends (HAProxy) may then be held back by CPU 0, so its
connections per second are a floor while its CPU per connection stands. ``--no-pin`` turns pinning
off. Bulk sinks use SO_RCVLOWAT (see bench/backend.c). On loopback the kernel work of delivering a
segment is charged to the process that sends it, so a single stream's sender is often near one
core: the CPU share of the load generator and the backend is printed for every case.

Results: a table on stdout (medians of the rounds; ratios are medians of per-round ratios) and the
same as JSON in bench/results/latest.json (``--output``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench import _proc, _report, setup
from bench._procs import (
    DOMAIN,
    REPO,
    Backend,
    Contender,
    Direct,
    Embedded,
    Floor,
    HAProxy,
    Hold,
    Infrarust,
    NotBuiltError,
    haproxy_version,
    pinned,
    run_loadgen,
)

PHASES = ("memory", "scaling", "bulk", "rtt", "connrate")
ALL_CONTENDERS = ("direct", "floor", "zero_copy", "passthrough", "haproxy", "hooked", "zero_copy_w2")
# Contenders that only take part in the connection-rate phase (and in the CPU per status ping).
CONNRATE_ONLY = ("zero_copy_w2", "hooked")
NOFILE = 65536


@dataclass
class Settings:
    repeats: int = 3
    phases: tuple[str, ...] = PHASES
    contenders: tuple[str, ...] = ALL_CONTENDERS
    sessions: int = 3000
    levels: tuple[int, ...] = (10, 300, 3000)
    bulk_ms: int = 2000
    warmup_ms: int = 300
    rtt_ms: int = 1000
    conn_ms: int = 2000
    conn_conc: int = 50
    scale_ms: int = 800
    haproxy_threads: int = 1
    pin: bool = True  # bulk: ends on CPU 0, relay on the last CPU; rtt: all on one CPU
    lowat: int = 131072  # SO_RCVLOWAT of the final sink in bulk trials (see bench/backend.c)
    output: str = "bench/results/latest.json"


@dataclass
class Run:
    settings: Settings
    backend: Backend
    trials: list[dict[str, Any]] = field(default_factory=list)
    not_built: dict[str, str] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    processes: dict[str, list[int]] = field(default_factory=dict)  # relay processes, per round

    def record(self, rnd: int, phase: str, case: str, contender: str, metrics: dict[str, Any]) -> None:
        self.trials.append(
            {"round": rnd, "phase": phase, "case": case, "contender": contender, "metrics": metrics}
        )


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(
    run: Run, c: Contender, work: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], float, float]:
    """Run `work` (a load generator command) and return its result, the relay's CPU seconds and the
    backend's CPU seconds spent meanwhile. The relay is left to go idle before and after, so that
    neither the previous step's leftovers nor this step's tail (closing sessions) is misattributed."""
    _proc.settle(c.pid)
    relay0 = _proc.tree_cpu_seconds(c.pid) if c.pid else 0.0
    back0 = _proc.cpu_seconds([run.backend.pid])
    result = work()
    _proc.settle(c.pid)
    relay1 = _proc.tree_cpu_seconds(c.pid) if c.pid else 0.0
    back1 = _proc.cpu_seconds([run.backend.pid])
    return result, relay1 - relay0, back1 - back0


def measure_load(
    run: Run, c: Contender, args: list[str], timeout: float, *, pin: bool
) -> tuple[dict[str, Any], float, float]:
    """:func:`measure` one load generator command; ``pin``: the two ends share CPU 0 and the relay has the
    last CPU to itself (see the module doc)."""
    ncpu = os.cpu_count() or 1
    if not pin or ncpu < 2:
        return measure(run, c, lambda: run_loadgen(args, timeout))
    relay = _proc.process_tree(c.pid) if c.pid else []
    with pinned([run.backend.pid], 0), pinned(relay, ncpu - 1):
        return measure(run, c, lambda: run_loadgen(args, timeout, cpu=0))


def shares(result: dict[str, Any], backend_cpu: float) -> dict[str, float]:
    """CPU share (1.0 = one core busy) of the load generator and the backend during a step."""
    wall = max(float(result["wall_s"]), 1e-9)
    return {"loadgen_cpu_share": result["cpu_s"] / wall, "backend_cpu_share": backend_cpu / wall}


def bulk_step(run: Run, c: Contender, streams: int, direction: str, ms: int) -> dict[str, Any]:
    s = run.settings
    args = ["bulk", f"port={c.port}", f"domain={DOMAIN}", f"streams={streams}", f"dir={direction}"]
    args += [f"warmup_ms={s.warmup_ms}", f"ms={ms}", "timeout_ms=10000", f"lowat={s.lowat}"]
    timeout = (ms + s.warmup_ms) / 1e3 + 30
    res, relay_cpu, back_cpu = measure_load(run, c, args, timeout, pin=s.pin)
    metrics: dict[str, Any] = {
        "mbps": res["rate_Bps"] / 1e6,
        "bytes_total": res["bytes_total"],
        "errors": res["errors"] + res["unfinished"],
        **shares(res, back_cpu),
    }
    if c.pid is not None and res["bytes_total"] > 0:
        metrics["relay_cpu_s"] = relay_cpu
        metrics["cpu_s_per_gb"] = relay_cpu / (res["bytes_total"] / 1e9)
    return metrics


def connrate_step(run: Run, c: Contender, ms: int, status: bool = False) -> dict[str, Any]:
    """Connections per second and relay CPU per connection; ``status``: server-list pings (handshake +
    status request, response, ping, pong, close) instead of logins with a 32-byte echo."""
    s = run.settings
    args = ["connrate", f"port={c.port}", f"domain={DOMAIN}", f"conc={s.conn_conc}", "payload=32"]
    args += ["status=1"] if status else []
    args += [f"ms={ms}", "count=1000000", "grace_ms=3000"]
    if isinstance(c, Embedded):
        c.select()
    # Direct is left unpinned here (its rate would halve), and workers = 2 needs both CPUs.
    pin = s.pin and c.pid is not None and c.name != "zero_copy_w2"
    res, relay_cpu, back_cpu = measure_load(run, c, args, ms / 1e3 + 30, pin=pin)
    metrics: dict[str, Any] = {
        "cps": res["rate_cps"],
        "done": res["done"],
        "errors": res["errors"] + res["connect_errors"] + res["unfinished"],
        "conn_p50_us": res["conn_p50_us"],
        "conn_p99_us": res["conn_p99_us"],
        **shares(res, back_cpu),
    }
    if c.pid is not None and res["done"] > 0:
        metrics["relay_cpu_s"] = relay_cpu
        metrics["cpu_us_per_conn"] = relay_cpu * 1e6 / res["done"]
    return metrics


def rtt_step(run: Run, c: Contender) -> dict[str, Any]:
    """One session, 64-byte ping-pong. The load generator, the relay and the backend all run on one
    CPU meanwhile: on these VMs a wakeup across CPUs costs ~35 us, and where the scheduler happens
    to place three processes on two CPUs would otherwise decide the figure, not the relay."""
    ms = run.settings.rtt_ms
    args = ["ping", f"port={c.port}", f"domain={DOMAIN}", "size=64", "count=50000", f"ms={ms}", "warmup=200"]
    cpu = (os.cpu_count() or 1) - 1
    relay = _proc.process_tree(c.pid) if c.pid else []
    if run.settings.pin:
        with pinned([run.backend.pid, *relay], cpu):
            res, _, back_cpu = measure(run, c, lambda: run_loadgen(args, timeout=ms / 1e3 + 30, cpu=cpu))
    else:
        res, _, back_cpu = measure(run, c, lambda: run_loadgen(args, timeout=ms / 1e3 + 30))
    return {
        "p50_us": res["p50_us"],
        "p99_us": res["p99_us"],
        "p999_us": res["p999_us"],
        "n": res["n"],
        "errors": res["errors"],
        **shares(res, back_cpu),
    }


def hold_phase(run: Run, rnd: int, order: list[Contender]) -> None:
    """Memory per idle session, then (scaling) the cost of work with many sessions held open."""
    s = run.settings
    levels = sorted(s.levels, reverse=True)
    for c in order:
        if c.name in CONNRATE_ONLY or not c.alive():
            continue
        try:
            hold_one(run, rnd, c, levels)
        except STEP_ERRORS as e:
            msg = f"round {rnd + 1} idle sessions {c.name}: {type(e).__name__}: {str(e)[:300]}"
            run.failures.append(msg)
            log(f"  failed: {msg}")


def hold_one(run: Run, rnd: int, c: Contender, levels: list[int]) -> None:
    """Open the most sessions, take memory, then the scaling workloads from the most to the fewest."""
    s = run.settings
    hold = Hold(c.port)
    try:
        _proc.settle(c.pid)
        tree = _proc.process_tree(c.pid) if c.pid else []
        rss0, k0 = _proc.rss_bytes(tree), _proc.kernel_bytes()
        opened = hold.command(f"open {levels[0]}")
        _proc.settle(c.pid)
        time.sleep(0.2)
        tree = _proc.process_tree(c.pid) if c.pid else []
        rss1, k1 = _proc.rss_bytes(tree), _proc.kernel_bytes()
        n = int(opened["open"])
        dead = hold.command("check")["dead"]
        log(f"  {c.name}: {n} idle sessions open in {opened['ms']:.0f} ms ({opened['errors']} errors)")
        if "memory" in s.phases and n > 0:
            metrics: dict[str, Any] = {
                "sessions": n,
                "open_errors": opened["errors"],
                "dead": dead,
                "open_ms": opened["ms"],
                "kernel_all_B": (k1 - k0) / n,
            }
            if c.pid is not None:
                metrics["rss_B"] = (rss1 - rss0) / n
            run.record(rnd, "memory", "idle sessions", c.name, metrics)
        if "scaling" not in s.phases or c.pid is None:
            return
        for level in levels:
            if level < n:
                hold.command(f"close {level}")
            held = min(level, n)
            conn = connrate_step(run, c, s.scale_ms)
            bulk = bulk_step(run, c, 8, "down", s.scale_ms)
            metrics = {
                "held_sessions": held,
                "cpu_us_per_conn": conn.get("cpu_us_per_conn"),
                "cps": conn["cps"],
                "cpu_s_per_gb": bulk.get("cpu_s_per_gb"),
                "mbps": bulk["mbps"],
                "errors": conn["errors"] + bulk["errors"],
                "loadgen_cpu_share": max(conn["loadgen_cpu_share"], bulk["loadgen_cpu_share"]),
                "backend_cpu_share": max(conn["backend_cpu_share"], bulk["backend_cpu_share"]),
            }
            run.record(rnd, "scaling", f"scale {level}", c.name, metrics)
            log(
                f"  {c.name}: {held} held: {fmt_opt(metrics['cpu_us_per_conn'])} us/conn, "
                f"{fmt_opt(metrics['cpu_s_per_gb'])} s/GB"
            )
    finally:
        hold.close()
        _proc.settle(c.pid)


def fmt_opt(v: float | None) -> str:
    return _report.fmt(v)


def bulk_cases() -> list[tuple[str, int, str]]:
    return [
        (f"bulk {label} x{streams}", streams, direction)
        for direction, label in (("up", "upload"), ("down", "download"))
        for streams in (1, 8)
    ]


@contextlib.contextmanager
def round_contenders(run: Run, workroot: Path, rnd: int) -> Iterator[list[Contender]]:
    """Start this round's relays (fresh processes, so memory figures start from a clean heap)."""
    s = run.settings
    started: list[Contender] = []
    try:
        if "direct" in s.contenders:
            started.append(Direct(run.backend))
        if "floor" in s.contenders and "floor" not in run.not_built:
            try:
                started.append(Floor(run.backend))
            except NotBuiltError as e:
                run.not_built["floor"] = str(e)
        pending: list[Infrarust] = []
        for name, mode, workers in (
            ("zero_copy", "zero_copy", 1),
            ("passthrough", "passthrough", 1),
            ("hooked", "zero_copy", 1),
            ("zero_copy_w2", "zero_copy", 2),
        ):
            if name not in s.contenders or name in run.not_built:
                continue
            if name in CONNRATE_ONLY and "connrate" not in s.phases:
                continue
            p = Infrarust(
                name, run.backend, workroot / f"r{rnd}-{name}", mode, workers, embedded=name == "hooked"
            )
            started.append(p)
            pending.append(p)
        if "haproxy" in s.contenders and "haproxy" not in run.not_built:
            try:
                started.append(HAProxy(run.backend, workroot / f"r{rnd}-haproxy", s.haproxy_threads))
            except NotBuiltError as e:
                run.not_built["haproxy"] = str(e)
        # The infrarust processes start in parallel (Python start-up is the slow part).
        for p in pending:
            try:
                p.wait_ready()
            except NotBuiltError as e:
                started.remove(p)
                run.not_built[p.name] = str(e)
                log(f"  {p.name}: not built ({e})")
        for c in started:
            if c.pid is not None:
                run.processes.setdefault(c.name, []).append(len(_proc.process_tree(c.pid)))
        yield started
    finally:
        for c in started:
            c.stop()
            problems = c.problems()
            if problems:
                run.problems.setdefault(c.name, []).append(f"round {rnd + 1}: {problems}")


def run_rounds(run: Run) -> None:
    s = run.settings
    with tempfile.TemporaryDirectory(prefix="infrarust-bench-") as tmp:
        for rnd in range(s.repeats):
            log(f"round {rnd + 1}/{s.repeats}")
            with round_contenders(run, Path(tmp), rnd) as contenders:
                # Rotate the order every round so no contender always runs first or last.
                k = rnd % max(len(contenders), 1)
                order = contenders[k:] + contenders[:k]
                main = [c for c in order if c.name not in CONNRATE_ONLY]
                if "memory" in s.phases or "scaling" in s.phases:
                    hold_phase(run, rnd, main)
                if "bulk" in s.phases:
                    for case, streams, direction in bulk_cases():
                        for c in main:
                            m = attempt(
                                run,
                                (rnd, "bulk", case, c),
                                partial(bulk_step, run, c, streams, direction, s.bulk_ms),
                            )
                            if m:
                                log(
                                    f"  {case} {c.name}: {m['mbps']:.0f} MB/s, "
                                    f"{fmt_opt(m.get('cpu_s_per_gb'))} s/GB"
                                )
                if "rtt" in s.phases:
                    for c in main:
                        m = attempt(run, (rnd, "rtt", "rtt 64B", c), partial(rtt_step, run, c))
                        if m:
                            log(f"  rtt {c.name}: p50 {m['p50_us']:.1f} us, p99 {m['p99_us']:.1f} us")
                if "connrate" in s.phases:
                    for status in (False, True):
                        case = f"{'status' if status else 'connrate'} c{s.conn_conc}"
                        for c in order:
                            if status and c.name == "zero_copy_w2":
                                continue
                            if isinstance(c, Infrarust) and c.name == "hooked":
                                work = partial(paired_connrate_step, run, c, s.conn_ms, status, rnd)
                                pair = attempt(run, (rnd, "connrate", case, c), work, record=False)
                                for name, m in (pair or {}).items():
                                    run.record(rnd, "connrate", case, name, m)
                                    log(
                                        f"  {case} {name}: {m['cps']:.0f} conn/s, "
                                        f"{fmt_opt(m.get('cpu_us_per_conn'))} us/conn"
                                    )
                                continue
                            m = attempt(
                                run,
                                (rnd, "connrate", case, c),
                                partial(connrate_step, run, c, s.conn_ms, status),
                            )
                            if m:
                                log(
                                    f"  {case} {c.name}: {m['cps']:.0f} conn/s, "
                                    f"{fmt_opt(m.get('cpu_us_per_conn'))} us/conn"
                                )


# Windows per state of bench/embedded.py's paired measurement, each half a connection-rate step. One-second
# windows of one process spread by ±20 us and now and then by 80 (a neighbour's burst): eight, and their
# median, keep one such window from moving a figure that is ~5-10 us.
PAIRED_WINDOWS = 8


def paired_connrate_step(
    run: Run, process: Infrarust, ms: int, status: bool, rnd: int
) -> dict[str, dict[str, Any]]:
    """bench/embedded.py's connection rate without its hook and subscriber (``embedded``) and with them
    (``hooked``), in :data:`PAIRED_WINDOWS` short windows each, alternating (off on on off ...; the
    other way round every other round): what drifts on a shared machine over a few seconds then weighs
    on both states alike, and their difference is what the hook and the subscriber cost (see
    :func:`merged`)."""
    views = [Embedded(process, False), Embedded(process, True)]
    if rnd % 2:
        views.reverse()
    windows: dict[str, list[dict[str, Any]]] = {view.name: [] for view in views}
    for i in range(PAIRED_WINDOWS):
        for view in views if i % 2 == 0 else views[::-1]:
            windows[view.name].append(connrate_step(run, view, ms // 2, status))
    return {name: merged(measured) for name, measured in windows.items()}


def merged(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One connection-rate measurement from several windows of it: counts and CPU add up, every rate and
    per-connection figure is the median of the windows (a disturbed window then weighs nothing)."""
    out = {
        key: statistics.median(w[key] for w in windows)
        for key in windows[0]
        if all(key in w for w in windows)
    }
    for key in ("done", "errors", "relay_cpu_s"):
        if key in out:
            out[key] = sum(w[key] for w in windows)
    return out


# What a failed step raises: the load generator failed or timed out, or printed something unexpected.
STEP_ERRORS = (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError, OSError)


def attempt(
    run: Run,
    where: tuple[int, str, str, Contender],
    work: Callable[[], dict[str, Any]],
    *,
    record: bool = True,
) -> dict[str, Any] | None:
    """Run one step and record its metrics (``record=False``: the caller records what it returns); a
    failure (a relay that crashed, a load generator that timed out) is recorded and the run goes on
    without it, so one broken contender costs one line."""
    rnd, phase, case, c = where
    if not c.alive():
        return None
    try:
        metrics = work()
    except STEP_ERRORS as e:
        msg = f"round {rnd + 1} {case} {c.name}: {type(e).__name__}: {str(e)[:300]}"
        run.failures.append(msg)
        log(f"  failed: {msg}")
        return None
    if record:
        run.record(rnd, phase, case, c.name, metrics)
    return metrics


def report(run: Run, started: float) -> dict[str, Any]:
    s = run.settings
    values = _report.collect(run.trials)
    case_order = (
        [c for c, _, _ in bulk_cases()]
        + ["rtt 64B", f"connrate c{s.conn_conc}", f"status c{s.conn_conc}", "idle sessions"]
        + [f"scale {n}" for n in sorted(s.levels)]
    )
    measured = [n for c in s.contenders for n in (("embedded", "hooked") if c == "hooked" else (c,))]
    contenders = [c for c in measured if c not in run.not_built] + list(run.not_built)
    text, tables = _report.table(values, case_order, contenders, run.not_built)
    judged = [
        t.judge(values, run.not_built)
        for t in _report.targets([c for c, _, _ in bulk_cases()], list(s.levels))
    ]
    lg = _report.load_generator_report(run.trials)
    elapsed = time.monotonic() - started

    print()
    print(
        f"infrarust benchmark: {s.repeats} round(s), {elapsed:.0f} s, {platform.node()}, "
        f"Linux {platform.release()}, {os.cpu_count()} CPUs, {haproxy_version()}, "
        f"rev {_report.git_revision()}"
    )
    print("medians of the rounds; ratios are medians of per-round ratios (only ratios within a run count)")
    print()
    print(text)
    print()
    print("targets (ratios in this run):")
    for j in judged:
        r = j["ratio"]
        unit = " us" if j["op"] == "diff<=" else "x"
        shown = f"{r:.3f}{unit}" if r is not None else "-"
        print(f"  {j['status']:<9} {j['target']}: {shown}")
    for name, why in run.not_built.items():
        print(f"  not built: {name}: {why}")
    print()
    print("CPU share of the load generator / backend (1.0 = one core busy), highest per case:")
    for case, v in lg.items():
        relayed = v.get("loadgen_max_relayed")
        flag = "  <- may limit the relays" if relayed is not None and relayed > 0.9 else ""
        print(
            f"  {case:<22} relayed {fmt_opt(relayed)} / {fmt_opt(v.get('backend_max_relayed'))}"
            f"   direct {fmt_opt(v.get('loadgen_max_direct'))} / {fmt_opt(v.get('backend_max_direct'))}{flag}"
        )
    errors = sum(
        int(t["metrics"].get(k, 0) or 0) for t in run.trials for k in ("errors", "open_errors", "dead")
    )
    print(f"errors seen by the load generator: {errors}; backend: {run.backend.stats}")
    _report.print_failures(run.failures, run.problems)

    return {
        "meta": _report.run_meta(elapsed, haproxy=haproxy_version()),
        "settings": asdict(s),
        "not_built": run.not_built,
        "tables": tables,
        "targets": judged,
        "load_generator": lg,
        "backend": run.backend.stats,
        "log_problems": run.problems,
        "failures": run.failures,
        "relay_processes": run.processes,
        "trials": run.trials,
    }


def parse_args(argv: list[str]) -> Settings:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("--quick", action="store_true", help="one short round with 1,000 sessions (smoke test)")
    p.add_argument("--repeats", type=int, help="rounds (default 3)")
    p.add_argument("--phases", help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--contenders", help=f"comma-separated subset of {','.join(ALL_CONTENDERS)}")
    p.add_argument("--sessions", type=int, help="idle sessions for the memory phase (default 3000)")
    p.add_argument("--bulk-seconds", type=float, help="measured seconds per bulk trial (default 2)")
    p.add_argument("--haproxy-threads", type=int, default=1, help="HAProxy nbthread (default 1)")
    p.add_argument("--no-pin", action="store_true", help="leave CPU placement to the scheduler")
    p.add_argument("--lowat", type=int, default=131072, help="SO_RCVLOWAT of bulk sinks, 0 = off")
    p.add_argument(
        "--output",
        help="JSON results file, '' for none (default bench/results/latest.json; --quick: bench/build/)",
    )
    a = p.parse_args(argv)
    s = Settings(haproxy_threads=a.haproxy_threads, lowat=max(0, a.lowat), pin=not a.no_pin)
    if a.quick:
        s.output = "bench/build/quick.json"  # a smoke test is not a result worth committing
        s.repeats, s.sessions, s.bulk_ms, s.warmup_ms = 1, 1000, 500, 150
        s.rtt_ms, s.conn_ms, s.scale_ms = 300, 500, 300
    if a.repeats is not None:
        s.repeats = max(1, min(a.repeats, 20))
    if a.sessions is not None:
        s.sessions = max(10, min(a.sessions, 15000))
    if a.bulk_seconds is not None:
        s.bulk_ms = int(max(0.2, min(a.bulk_seconds, 30)) * 1000)
    if a.output is not None:
        s.output = a.output
    s.levels = tuple(sorted({min(10, s.sessions), min(300, s.sessions), s.sessions}))
    if a.phases:
        wanted = tuple(x.strip() for x in a.phases.split(",") if x.strip())
        bad = [x for x in wanted if x not in PHASES]
        if bad:
            p.error(f"unknown phase(s) {bad}; choose from {PHASES}")
        s.phases = wanted
    if a.contenders:
        wanted = tuple(x.strip() for x in a.contenders.split(",") if x.strip())
        bad = [x for x in wanted if x not in ALL_CONTENDERS]
        if bad:
            p.error(f"unknown contender(s) {bad}; choose from {ALL_CONTENDERS}")
        # direct is the baseline of the ratios and of the kernel-memory figure: always measured.
        s.contenders = tuple(dict.fromkeys(("direct", *wanted)))
    return s


def raise_nofile(sessions: int) -> None:
    """3,000 relayed sessions need ~9,000+ descriptors across the processes (a splicing relay alone:
    2 sockets and 2 pipes, 6 descriptors, per session); children inherit the limit. Raising the
    hard limit needs CAP_SYS_RESOURCE, which a container may not grant: then the hard limit it is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(NOFILE, soft), max(NOFILE, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit < sessions * 6 + 1000:
        log(f"warning: RLIMIT_NOFILE is {limit}; {sessions} sessions through a relay may need more")


def main(argv: list[str]) -> int:
    s = parse_args(argv)
    setup.build(quiet=True)
    raise_nofile(s.sessions)
    started = time.monotonic()
    backend = Backend(s.lowat)
    run = Run(settings=s, backend=backend)
    try:
        run_rounds(run)
    finally:
        backend.stop()
    result = report(run, started)
    if s.output:
        out = (REPO / s.output) if not os.path.isabs(s.output) else Path(s.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out)
        print(f"results written to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
