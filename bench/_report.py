"""Turning the trials of one run into medians, ratios, targets and a printed table.

Ratios are medians of per-round ratios: the contenders of one round ran seconds apart, so a ratio
taken inside a round cancels most of the machine's drift, which on shared machines is larger than the
differences being measured (about +-25 % between runs).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench._procs import REPO

# embedded and hooked are one bench/embedded.py process, measured without and with its hook and subscriber.
CONTENDER_ORDER = (
    "direct",
    "floor",
    "zero_copy",
    "passthrough",
    "haproxy",
    "embedded",
    "hooked",
    "zero_copy_w2",
)
RELAYS = ("floor", "zero_copy", "passthrough", "haproxy", "embedded", "hooked", "zero_copy_w2")
INFRARUST = ("zero_copy", "passthrough")

# (metric key, label, unit)
METRICS = {
    "mbps": "MB/s",
    "cpu_s_per_gb": "relay CPU s/GB",
    "p50_us": "p50 us",
    "p99_us": "p99 us",
    "added_p50_us": "added p50 us (relay - direct)",
    "added_p99_us": "added p99 us (relay - direct)",
    "cps": "conn/s",
    "cpu_us_per_conn": "relay CPU us/conn",
    "rss_B": "RSS bytes/session",
    "kernel_relay_B": "kernel bytes/session (minus direct)",
    "total_B": "RSS + kernel bytes/session",
    "kernel_all_B": "kernel bytes/session (all processes)",
}

# Values[(case, metric)][contender][round] = value
Values = dict[tuple[str, str], dict[str, dict[int, float]]]


def collect(trials: list[dict[str, Any]]) -> Values:
    """Index trial metrics, and derive those that need another contender of the same round."""
    values: Values = defaultdict(lambda: defaultdict(dict))
    for t in trials:
        for metric, v in t["metrics"].items():
            if isinstance(v, int | float) and metric in METRICS:
                values[(t["case"], metric)][t["contender"]][t["round"]] = float(v)
    for (case, metric), by_c in list(values.items()):
        direct = by_c.get("direct", {})
        if metric in ("p50_us", "p99_us"):
            added = values[(case, "added_" + metric)]
            for c, rounds in by_c.items():
                if c != "direct":
                    for r, v in rounds.items():
                        if r in direct:
                            added[c][r] = v - direct[r]
        if metric == "kernel_all_B":
            for c, rounds in by_c.items():
                if c == "direct":
                    continue
                for r, v in rounds.items():
                    if r in direct:
                        values[(case, "kernel_relay_B")][c][r] = v - direct[r]
                        rss = values[(case, "rss_B")][c].get(r)
                        if rss is not None:
                            values[(case, "total_B")][c][r] = rss + v - direct[r]
    return values


def median_of(rounds: dict[int, float]) -> float | None:
    return statistics.median(rounds.values()) if rounds else None


def ratio(values: Values, a: tuple[str, str, str], b: tuple[str, str, str]) -> float | None:
    """Median over rounds of value(a) / value(b); a and b are (contender, case, metric)."""
    ra = values.get((a[1], a[2]), {}).get(a[0], {})
    rb = values.get((b[1], b[2]), {}).get(b[0], {})
    per_round = [ra[r] / rb[r] for r in ra if r in rb and rb[r] > 0]
    return statistics.median(per_round) if per_round else None


def difference(values: Values, a: tuple[str, str, str], b: tuple[str, str, str]) -> float | None:
    """Median over rounds of value(a) - value(b)."""
    ra = values.get((a[1], a[2]), {}).get(a[0], {})
    rb = values.get((b[1], b[2]), {}).get(b[0], {})
    per_round = [ra[r] - rb[r] for r in ra if r in rb]
    return statistics.median(per_round) if per_round else None


@dataclass(frozen=True)
class Target:
    """A pass/miss line: ratio of a to b compared with a threshold."""

    label: str
    a: tuple[str, str, str]
    b: tuple[str, str, str]
    op: str  # ">=", "<=", ">", "within" (max(x, 1/x) <= threshold), "diff<=" (a - b, not a ratio)
    threshold: float

    def judge(self, values: Values, not_built: dict[str, str]) -> dict[str, Any]:
        missing = [c for c in (self.a[0], self.b[0]) if c in not_built]
        r = difference(values, self.a, self.b) if self.op == "diff<=" else ratio(values, self.a, self.b)
        if missing:
            status = "not built"
        elif r is None:
            status = "n/a"
        elif self.op == ">=":
            status = "PASS" if r >= self.threshold else "MISS"
        elif self.op == ">":
            status = "PASS" if r > self.threshold else "MISS"
        elif self.op in ("<=", "diff<="):
            status = "PASS" if r <= self.threshold else "MISS"
        else:
            status = "PASS" if r > 0 and max(r, 1 / r) <= self.threshold else "MISS"
        return {
            "target": self.label,
            "status": status,
            "ratio": r,
            "op": self.op,
            "threshold": self.threshold,
        }


def targets(bulk_cases: list[str], levels: list[int]) -> list[Target]:
    """The issue's targets, as ratios taken inside one run."""
    out: list[Target] = []
    for case in bulk_cases:
        out.append(
            Target(
                f"zero_copy {case}: throughput >= 1.0x haproxy",
                ("zero_copy", case, "mbps"),
                ("haproxy", case, "mbps"),
                ">=",
                1.0,
            )
        )
        out.append(
            Target(
                f"zero_copy {case}: throughput >= 0.7x direct",
                ("zero_copy", case, "mbps"),
                ("direct", case, "mbps"),
                ">=",
                0.7,
            )
        )
    for case in bulk_cases:
        out.append(
            Target(
                f"zero_copy {case}: CPU/GB <= 1.0x haproxy",
                ("zero_copy", case, "cpu_s_per_gb"),
                ("haproxy", case, "cpu_s_per_gb"),
                "<=",
                1.0,
            )
        )
    for case in bulk_cases:
        out.append(
            Target(
                f"passthrough {case}: CPU/GB <= 3x haproxy",
                ("passthrough", case, "cpu_s_per_gb"),
                ("haproxy", case, "cpu_s_per_gb"),
                "<=",
                3.0,
            )
        )
    for c in INFRARUST:
        out.append(
            Target(
                f"{c}: added round trip p50 <= 1.5x haproxy's",
                (c, "rtt 64B", "added_p50_us"),
                ("haproxy", "rtt 64B", "added_p50_us"),
                "<=",
                1.5,
            )
        )
    for c in INFRARUST:
        out.append(
            Target(
                f"{c}: CPU per connection <= 2x haproxy",
                (c, "connrate c50", "cpu_us_per_conn"),
                ("haproxy", "connrate c50", "cpu_us_per_conn"),
                "<=",
                2.0,
            )
        )
    # Issue 10: the floor (bench/floor.py) is the measured limit of the design.
    for c in INFRARUST:
        out.append(
            Target(
                f"{c}: CPU per connection <= 1.3x floor",
                (c, "connrate c50", "cpu_us_per_conn"),
                ("floor", "connrate c50", "cpu_us_per_conn"),
                "<=",
                1.3,
            )
        )
    out.append(
        Target(
            "zero_copy: added round trip p50 <= 1.1x floor's",
            ("zero_copy", "rtt 64B", "added_p50_us"),
            ("floor", "rtt 64B", "added_p50_us"),
            "<=",
            1.1,
        )
    )
    for case in bulk_cases:
        out.append(
            Target(
                f"zero_copy {case}: CPU/GB <= 1.1x floor",
                ("zero_copy", case, "cpu_s_per_gb"),
                ("floor", case, "cpu_s_per_gb"),
                "<=",
                1.1,
            )
        )
        out.append(
            Target(
                f"zero_copy {case}: throughput >= 0.95x floor",
                ("zero_copy", case, "mbps"),
                ("floor", case, "mbps"),
                ">=",
                0.95,
            )
        )
    out.append(
        Target(
            "no-op on_pre_connect hook + 1 subscriber: <= 15 us CPU per connection"
            " (hooked - embedded, one process both ways, us)",
            ("hooked", "connrate c50", "cpu_us_per_conn"),
            ("embedded", "connrate c50", "cpu_us_per_conn"),
            "diff<=",
            15.0,
        )
    )
    out.append(
        Target(
            "zero_copy workers=2: connection rate >= 1.8x workers=1",
            ("zero_copy_w2", "connrate c50", "cps"),
            ("zero_copy", "connrate c50", "cps"),
            ">=",
            1.8,
        )
    )
    for c in INFRARUST:
        out.append(
            Target(
                f"{c}: memory per idle session <= 2x haproxy",
                (c, "idle sessions", "total_B"),
                ("haproxy", "idle sessions", "total_B"),
                "<=",
                2.0,
            )
        )
    if len(levels) >= 2:
        lo, hi = f"scale {min(levels)}", f"scale {max(levels)}"
        for c in INFRARUST:
            for metric, what in (("cpu_us_per_conn", "CPU/conn"), ("cpu_s_per_gb", "CPU/GB")):
                out.append(
                    Target(
                        f"{c}: {what} at {max(levels)} within 1.2x of at {min(levels)} sessions",
                        (c, hi, metric),
                        (c, lo, metric),
                        "within",
                        1.2,
                    )
                )
    return out


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def rows(values: Values, case_order: list[str]) -> list[tuple[str, str]]:
    """(case, metric) pairs in display order."""
    out = []
    for case in case_order:
        for metric in METRICS:
            if (case, metric) in values and any(values[(case, metric)].values()):
                out.append((case, metric))
    return out


def table(
    values: Values, case_order: list[str], contenders: list[str], not_built: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """The printed table (absolute medians, then ratios) and the same data for JSON."""
    cols = [c for c in CONTENDER_ORDER if c in contenders]
    relays = [c for c in cols if c != "direct"]
    lines: list[str] = []
    data: dict[str, Any] = {"medians": {}, "vs_floor": {}, "vs_haproxy": {}, "vs_direct": {}}
    width = 58

    def cell(c: str, v: float | None) -> str:
        return "not built" if c in not_built and v is None else fmt(v)

    lines.append(f"{'medians':<{width}}" + "".join(f"{c:>14}" for c in cols))
    row_keys = rows(values, case_order)
    for case, metric in row_keys:
        key = f"{case}: {METRICS[metric]}"
        meds = {c: median_of(values[(case, metric)].get(c, {})) for c in cols}
        data["medians"][key] = meds
        lines.append(f"{key:<{width}}" + "".join(f"{cell(c, meds[c]):>14}" for c in cols))
    for ref, title in (
        ("floor", "vs floor, the smallest Trio relay (x)"),
        ("haproxy", "vs haproxy (x)"),
        ("direct", "vs direct (x)"),
    ):
        lines.append("")
        others = [c for c in relays if c != ref]
        lines.append(f"{title:<{width}}" + "".join(f"{c:>14}" for c in others))
        for case, metric in row_keys:
            key = f"{case}: {METRICS[metric]}"
            rs = {c: ratio(values, (c, case, metric), (ref, case, metric)) for c in others}
            if all(v is None for v in rs.values()):
                continue
            data["vs_" + ref][key] = rs
            lines.append(f"{key:<{width}}" + "".join(f"{cell(c, rs[c]):>14}" for c in others))
    return "\n".join(lines), data


def load_generator_report(trials: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Highest CPU share of the load generator and of the backend per case (1.0 = one full core),
    for the relays and for direct apart: without a relay the two ends are all the work there is, so
    there they are expected to be busy."""
    out: dict[str, dict[str, float]] = {}
    for t in trials:
        m = t["metrics"]
        if "loadgen_cpu_share" not in m:
            continue
        cur = out.setdefault(t["case"], {})
        side = "direct" if t["contender"] == "direct" else "relayed"
        for who in ("loadgen", "backend"):
            key = f"{who}_max_{side}"
            cur[key] = max(cur.get(key, 0.0), m[f"{who}_cpu_share"])
    return out


def git_revision() -> str:
    """The short commit, with ``-dirty`` when tracked files differ from it (``unknown`` without git)."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("-dirty" if dirty else "")


def print_failures(failures: list[str], problems: dict[str, list[str]]) -> None:
    """The steps that failed and the log problems each relay showed, after a run's tables."""
    if failures:
        print(f"failed steps: {len(failures)}: " + "; ".join(failures[:5]))
    for name, lines in problems.items():
        print(f"log problems in {name}: {'; '.join(lines)}")


def run_meta(elapsed: float, **extra: Any) -> dict[str, Any]:
    """Where and when a run happened, for its JSON results (``extra`` after the common keys)."""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        **extra,
        "revision": git_revision(),
        "elapsed_s": round(elapsed, 1),
    }
