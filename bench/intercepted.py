"""What the intercepted modes cost: ``python -m bench.intercepted`` (run by ``make bench`` after bench.fleet).

In one run, with one client (load generator) and one backend, both Python processes from bench/_icpeers.py,
it measures infrarust ``offline`` and ``client_only`` next to ``passthrough`` and ``zero_copy`` and a
direct connection (no relay, the baseline of the added round trip), interleaved over ``--rounds`` rounds
(3 by default; fresh proxy processes each round, the order rotated). Per contender and round, one session:

- login: Minecraft 1.12.2 (protocol 340, no configuration phase), Set Compression 256 (vanilla's
  default threshold; ``--threshold``), offline, or online for ``client_only``: the client answers the
  Encryption Request with RSA, ``join``s on a session server stand-in (bench/_icsession.py, which the
  proxy's ``[auth] session_server`` points at) and speaks AES-128-CFB8 from then on. Not measured.
- upload and download: 32 KiB packets (random bytes, so compression cannot shrink them) for
  ``--bulk-seconds``, each after a 34-byte packet, all of an id infrarust passes through unread; MB/s on
  the wire and the relay's CPU seconds per GB.
- ping: a 64-byte packet echoed by the backend, one at a time, for ``--rtt-seconds``: p50/p99 round trip,
  the round trip added to direct's, and the relay's CPU per round trip.

The forwarding modes relay the same bytes unread; the intercepted modes frame and re-frame every packet
(the frame is reused: both legs compress alike), and ``client_only`` also decrypts and encrypts the
client leg. Method as in the main benchmark (bench/__main__.py): relay CPU is utime + stime of the
proxy's process tree from /proc, read with the proxy gone idle before and after each step (the login and
the session's end fall outside); for bulk the client and the backend share CPU 0 and the proxy has the
last CPU; for the round trip all three share one CPU. The two ends never parse bulk streams packet by
packet (bench/_icpeers.py explains how, encryption included), so the relay is what limits a transfer:
the CPU share of the client and the backend is printed for every step.

Printed: medians of the rounds, and ratios (medians of per-round ratios) of each intercepted mode to
``passthrough`` and to ``zero_copy``. JSON: bench/results/intercepted.json (``--output``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from bench import _proc, _report
from bench._icpeers import DEFAULT_THRESHOLD
from bench._icsession import SessionStandIn
from bench._procs import REPO, Backend, Contender, Direct, Infrarust, NotBuiltError, _stop, pinned

CONTENDERS = ("direct", "zero_copy", "passthrough", "offline", "client_only")
RELAYS = CONTENDERS[1:]
CASES = ("upload", "download", "ping 64B")
# The main benchmark's labels for what both measure, plus the CPU per round trip.
METRICS = {
    **{
        key: _report.METRICS[key]
        for key in ("mbps", "cpu_s_per_gb", "p50_us", "p99_us", "added_p50_us", "added_p99_us")
    },
    "cpu_us_per_rtt": "relay CPU us per round trip",
}
ACCOUNT = ("BenchOnline", "bench-access-token")


@dataclass
class Settings:
    """What one run does (the command line's options)."""

    rounds: int = 3
    bulk_ms: int = 1200
    rtt_ms: int = 800
    warmup: int = 200  # unrecorded pings before each ping step
    threshold: int = DEFAULT_THRESHOLD
    pin: bool = True
    contenders: tuple[str, ...] = CONTENDERS
    output: str = "bench/results/intercepted.json"


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the report)."""
    print(message, file=sys.stderr, flush=True)


class PeerBackend(Backend):
    """The Python backend of bench/_icpeers.py, in the main benchmark's Backend shape (port, pid, stop
    and the JSON counters it prints when stopped), so its contenders and helpers take it unchanged."""

    def __init__(self, threshold: int) -> None:  # the C backend's start is replaced, not extended
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._icpeers", "backend", "--threshold", str(threshold)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            _stop(self.proc)
            raise RuntimeError(f"the benchmark backend did not start: {line!r}")
        self.port = int(line.split()[1])
        self.pid = self.proc.pid
        self.stats: dict[str, Any] = {}


class PeerClient:
    """The load generator of bench/_icpeers.py: one process for the run, one command at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._icpeers", "client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.pid = self.proc.pid

    def command(self, **command: Any) -> dict[str, Any]:
        """Send one command and return its answer; RuntimeError for an error answer or a dead client.

        The client bounds every socket operation (30 s), so an answer always comes."""
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the client exited ({self.proc.poll()}) on {command['op']}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def stop(self) -> None:
        """Close its input (it then exits), at worst SIGTERM and SIGKILL by its pid."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        _stop(self.proc)


@dataclass
class Run:
    """One run's processes and everything measured or gone wrong."""

    settings: Settings
    backend: PeerBackend
    client: PeerClient
    session: SessionStandIn
    trials: list[dict[str, Any]] = field(default_factory=list)
    not_built: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    logins: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def shares(result: dict[str, Any], backend_cpu: float) -> dict[str, float]:
    """CPU share (1.0 = one core busy) of the client and the backend during a step."""
    wall = max(float(result["wall_s"]), 1e-9)
    return {"loadgen_cpu_share": float(result["cpu_s"]) / wall, "backend_cpu_share": backend_cpu / wall}


def measured(
    run: Run, c: Contender, cpu: int | None, work: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], float, float]:
    """Run a client command with the ends (and the relay) pinned as the module doc says; return its
    answer and the relay's and the backend's CPU seconds meanwhile, the relay left to go idle around it."""
    relay = _proc.process_tree(c.pid) if c.pid else []
    ncpu = os.cpu_count() or 1
    with contextlib.ExitStack() as stack:
        if run.settings.pin and ncpu > 1:
            if cpu is None:  # bulk: the ends on CPU 0, the relay on the last CPU
                stack.enter_context(pinned([run.client.pid, run.backend.pid], 0))
                stack.enter_context(pinned(relay, ncpu - 1))
            else:  # round trip: all on one CPU
                stack.enter_context(pinned([run.client.pid, run.backend.pid, *relay], cpu))
        _proc.settle(c.pid)
        relay0 = _proc.cpu_seconds(relay)
        back0 = _proc.cpu_seconds([run.backend.pid])
        result = work()
        _proc.settle(c.pid)
        relay1 = _proc.cpu_seconds(relay)
        back1 = _proc.cpu_seconds([run.backend.pid])
    return result, relay1 - relay0, back1 - back0


def bulk_step(run: Run, c: Contender, direction: str) -> dict[str, Any]:
    """One upload or download through ``c``: MB/s on the wire, relay CPU per GB, the ends' CPU share."""
    ms = run.settings.bulk_ms
    res, relay_cpu, back_cpu = measured(run, c, None, lambda: run.client.command(op=direction, ms=ms))
    metrics: dict[str, Any] = {
        "mbps": res["bytes"] / res["wall_s"] / 1e6,
        "bytes": res["bytes"],
        "wall_s": res["wall_s"],
        **shares(res, back_cpu),
    }
    if c.pid is not None:
        metrics["relay_cpu_s"] = relay_cpu
        metrics["cpu_s_per_gb"] = relay_cpu / (res["bytes"] / 1e9)
    return metrics


def ping_step(run: Run, c: Contender) -> dict[str, Any]:
    """Ping-pong through ``c``: round trip percentiles and relay CPU per round trip."""
    s = run.settings
    cpu = (os.cpu_count() or 1) - 1
    res, relay_cpu, back_cpu = measured(
        run, c, cpu, lambda: run.client.command(op="ping", ms=s.rtt_ms, warmup=s.warmup)
    )
    metrics: dict[str, Any] = {
        "p50_us": res["p50_us"],
        "p99_us": res["p99_us"],
        "p999_us": res["p999_us"],
        "n": res["n"],
        **shares(res, back_cpu),
    }
    if c.pid is not None:
        metrics["relay_cpu_s"] = relay_cpu
        metrics["cpu_us_per_rtt"] = relay_cpu * 1e6 / max(res["n"], 1)
    return metrics


def account(run: Run, c: Contender) -> dict[str, str] | None:
    """The online account the client logs in with through ``client_only``; None for the others."""
    if c.name != "client_only":
        return None
    return {
        "session_server": run.session.url,
        "name": run.session.name,
        "token": run.session.token,
        "profile": run.session.profile.hex,
    }


def contender_session(run: Run, rnd: int, c: Contender) -> None:
    """One session through ``c``: login, upload, download, ping; each step recorded or its failure noted."""
    try:
        login = run.client.command(op="login", port=c.port, account=account(run, c))
    except RuntimeError as exc:
        note_failure(run, rnd, "login", c, exc)
        return
    run.logins.setdefault(c.name, []).append(login)
    try:
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("upload", partial(bulk_step, run, c, "upload")),
            ("download", partial(bulk_step, run, c, "download")),
            ("ping 64B", partial(ping_step, run, c)),
        ]
        for case, step in steps:
            if not c.alive():
                note_failure(run, rnd, case, c, RuntimeError("the relay exited"))
                return
            try:
                metrics = step()
            except (RuntimeError, OSError, KeyError, ValueError) as exc:
                note_failure(run, rnd, case, c, exc)
                return  # the client dropped the session
            run.trials.append({"round": rnd, "case": case, "contender": c.name, "metrics": metrics})
            if case == "ping 64B":
                log(f"  {case} {c.name}: p50 {metrics['p50_us']:.0f} us, p99 {metrics['p99_us']:.0f} us")
            else:
                gb = _report.fmt(metrics.get("cpu_s_per_gb"))
                log(f"  {case} {c.name}: {metrics['mbps']:.0f} MB/s, {gb} s/GB")
    finally:
        with contextlib.suppress(RuntimeError):
            run.client.command(op="close")


def note_failure(run: Run, rnd: int, case: str, c: Contender, exc: BaseException) -> None:
    """Record a failed step; the run goes on without it."""
    message = f"round {rnd + 1} {case} {c.name}: {type(exc).__name__}: {str(exc)[:300]}"
    run.failures.append(message)
    log(f"  failed: {message}")


@contextlib.contextmanager
def round_contenders(run: Run, workroot: Path, rnd: int) -> Iterator[list[Contender]]:
    """This round's proxies, started in parallel (Python start-up is the slow part), and direct."""
    s = run.settings
    started: list[Contender] = []
    auth = f'\n[auth]\nsession_server = "{run.session.url}"\n'
    try:
        pending: list[Infrarust] = []
        for name in s.contenders:
            if name == "direct":
                started.append(Direct(run.backend))
            elif name not in run.not_built:
                proxy = Infrarust(name, run.backend, workroot / f"r{rnd}-{name}", name, extra=auth)
                started.append(proxy)
                pending.append(proxy)
        for proxy in pending:
            try:
                proxy.wait_ready()
            except NotBuiltError as exc:
                started.remove(proxy)
                run.not_built[proxy.name] = str(exc)
                log(f"  {proxy.name}: not started ({exc})")
        yield started
    finally:
        for c in started:
            c.stop()
            problems = c.problems()
            if problems:
                run.problems.setdefault(c.name, []).append(f"round {rnd + 1}: {problems}")


def run_rounds(run: Run) -> None:
    """The rounds: fresh proxies each, every contender once, the order rotated."""
    with tempfile.TemporaryDirectory(prefix="infrarust-bench-ic-") as tmp:
        for rnd in range(run.settings.rounds):
            log(f"round {rnd + 1}/{run.settings.rounds}")
            with round_contenders(run, Path(tmp), rnd) as contenders:
                k = rnd % max(len(contenders), 1)
                for c in contenders[k:] + contenders[:k]:
                    contender_session(run, rnd, c)


# Values[(case, metric)][contender][round] = value, as bench/_report.py indexes them.
Values = dict[tuple[str, str], dict[str, dict[int, float]]]


def collect(trials: list[dict[str, Any]]) -> Values:
    """Index the metrics, and the round trip each relay adds to direct's in the same round."""
    values: Values = defaultdict(lambda: defaultdict(dict))
    for t in trials:
        for metric, v in t["metrics"].items():
            if metric in METRICS and isinstance(v, int | float):
                values[(t["case"], metric)][t["contender"]][t["round"]] = float(v)
    for metric in ("p50_us", "p99_us"):
        by_c = values.get(("ping 64B", metric), {})
        direct = by_c.get("direct", {})
        for c, rounds in list(by_c.items()):
            if c == "direct":
                continue
            for r, v in rounds.items():
                if r in direct:
                    values[("ping 64B", "added_" + metric)][c][r] = v - direct[r]
    return values


def tables(values: Values, contenders: list[str]) -> tuple[str, dict[str, Any]]:
    """The printed tables (medians, then ratios to passthrough and to zero_copy) and the same for JSON."""
    width = 46
    keys = [(case, m) for case in CASES for m in METRICS if any(values.get((case, m), {}).values())]
    lines = [f"{'medians':<{width}}" + "".join(f"{c:>13}" for c in contenders)]
    data: dict[str, Any] = {"medians": {}, "vs_passthrough": {}, "vs_zero_copy": {}}
    for case, metric in keys:
        label = f"{case}: {METRICS[metric]}"
        meds = {c: _report.median_of(values[(case, metric)].get(c, {})) for c in contenders}
        data["medians"][label] = meds
        lines.append(f"{label:<{width}}" + "".join(f"{_report.fmt(meds[c]):>13}" for c in contenders))
    for ref in ("passthrough", "zero_copy"):
        others = [c for c in RELAYS if c != ref and c in contenders]
        if ref not in contenders or not others:
            continue
        lines.append("")
        lines.append(f"{'vs ' + ref + ' (x)':<{width}}" + "".join(f"{c:>13}" for c in others))
        for case, metric in keys:
            label = f"{case}: {METRICS[metric]}"
            ratios = {c: _report.ratio(values, (c, case, metric), (ref, case, metric)) for c in others}
            if all(v is None for v in ratios.values()):
                continue
            data["vs_" + ref][label] = ratios
            lines.append(f"{label:<{width}}" + "".join(f"{_report.fmt(ratios[c]):>13}" for c in others))
    return "\n".join(lines), data


def report(run: Run, elapsed: float) -> dict[str, Any]:
    """Print the tables and the ends' CPU share; return everything for the JSON file."""
    s = run.settings
    values = collect(run.trials)
    contenders = [c for c in s.contenders if c not in run.not_built]
    text, data = tables(values, contenders)
    lg = _report.load_generator_report(run.trials)
    print()
    print(
        f"infrarust intercepted modes: {s.rounds} round(s), {elapsed:.0f} s, {platform.node()}, "
        f"{os.cpu_count()} CPUs, protocol 340, compression threshold {s.threshold}, "
        f"rev {_report.git_revision()}"
    )
    print("medians of the rounds; ratios are medians of per-round ratios (only ratios within a run count)")
    print()
    print(text)
    print()
    print("CPU share of the client / backend (1.0 = one core busy), highest per case:")
    for case, v in lg.items():
        relayed = v.get("loadgen_max_relayed")
        flag = "  <- may limit the relays" if relayed is not None and relayed > 0.9 else ""
        relayed_text = f"{_report.fmt(relayed)} / {_report.fmt(v.get('backend_max_relayed'))}"
        direct_text = (
            f"{_report.fmt(v.get('loadgen_max_direct'))} / {_report.fmt(v.get('backend_max_direct'))}"
        )
        print(f"  {case:<10} relayed {relayed_text}   direct {direct_text}{flag}")
    print(f"session server: {run.session.counts}; backend: {run.backend.stats}")
    for name, why in run.not_built.items():
        print(f"not started: {name}: {why}")
    _report.print_failures(run.failures, run.problems)
    return {
        "meta": _report.run_meta(elapsed, protocol=340),
        "settings": asdict(s),
        "not_built": run.not_built,
        "tables": data,
        "load_generator": lg,
        "session_server": run.session.counts,
        "backend": run.backend.stats,
        "logins": run.logins,
        "log_problems": run.problems,
        "failures": run.failures,
        "trials": run.trials,
    }


def parse_args(argv: list[str]) -> Settings:
    """The settings from the command line."""
    p = argparse.ArgumentParser(prog="python -m bench.intercepted", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one round of short steps (a smoke test)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--bulk-seconds", type=float, help="seconds of each upload and download (default 1.2)")
    p.add_argument("--rtt-seconds", type=float, help="seconds of ping-pong (default 0.8)")
    p.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD, help="Set Compression (-1 = off)")
    p.add_argument("--contenders", help=f"comma-separated subset of {','.join(CONTENDERS)}")
    p.add_argument("--no-pin", action="store_true", help="leave CPU placement to the scheduler")
    p.add_argument("--output", help="JSON results file, '' for none (default bench/results/intercepted.json)")
    a = p.parse_args(argv)
    s = Settings(threshold=a.threshold, pin=not a.no_pin)
    if a.threshold != -1 and a.threshold < 64:
        p.error("--threshold: -1 (off) or at least 64 (the small packets must stay uncompressed)")
    if a.quick:
        s.rounds, s.bulk_ms, s.rtt_ms, s.warmup = 1, 150, 100, 20
        s.output = "bench/build/intercepted-quick.json"  # a smoke test is not a result worth keeping
    if a.rounds is not None:
        s.rounds = max(1, min(a.rounds, 10))
    if a.bulk_seconds is not None:
        s.bulk_ms = int(max(0.05, min(a.bulk_seconds, 10)) * 1000)
    if a.rtt_seconds is not None:
        s.rtt_ms = int(max(0.05, min(a.rtt_seconds, 10)) * 1000)
    if a.contenders:
        wanted = [x.strip() for x in a.contenders.split(",") if x.strip()]
        bad = [x for x in wanted if x not in CONTENDERS]
        if bad:
            p.error(f"unknown contender(s) {bad}; choose from {CONTENDERS}")
        # direct is the baseline of the added round trip: always measured.
        s.contenders = tuple(c for c in CONTENDERS if c in wanted or c == "direct")
    if a.output is not None:
        s.output = a.output
    return s


def main(argv: list[str]) -> int:
    """Run, report, write the JSON; 1 when a step failed or a contender did not start."""
    s = parse_args(argv)
    started = time.monotonic()
    session = SessionStandIn(*ACCOUNT).start()
    backend = PeerBackend(s.threshold)
    client = PeerClient()
    run = Run(settings=s, backend=backend, client=client, session=session)
    try:
        run_rounds(run)
    finally:
        client.stop()
        backend.stop()
        session.stop()
    result = report(run, time.monotonic() - started)
    if s.output:
        out = Path(s.output) if os.path.isabs(s.output) else REPO / s.output
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out)
        print(f"results written to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 1 if run.failures or run.not_built else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
