"""``python -m bench.intercepted --quick`` still runs: one short round through every contender, with the
real proxy in ``offline`` and ``client_only`` (the online login against the benchmark's session server
stand-in, then AES-CFB8 on the client leg), so the benchmark ``make bench`` ends with cannot rot unseen.

Nothing here judges speed: only that every step of every contender measured something, that the backend
counted exactly what the client sent, and that ``client_only`` really logged in online and encrypted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONTENDERS = ("direct", "zero_copy", "passthrough", "offline", "client_only")
RELAYS = CONTENDERS[1:]


def test_quick_run_measures_every_mode(tmp_path: Path) -> None:
    output = tmp_path / "intercepted.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.intercepted", "--quick", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(output.read_text())
    assert result["failures"] == [] and result["not_built"] == {}

    trials = {(t["case"], t["contender"]): t["metrics"] for t in result["trials"]}
    for contender in CONTENDERS:
        for direction in ("upload", "download"):
            bulk = trials[(direction, contender)]
            assert bulk["bytes"] > 0 and bulk["mbps"] > 0
            if contender in RELAYS:
                assert bulk["cpu_s_per_gb"] >= 0
        ping = trials[("ping 64B", contender)]
        assert ping["n"] > 0 and 0 < ping["p50_us"] <= ping["p99_us"]

    # Every login went to the backend (one per contender); every transfer ended with END counted.
    backend = result["backend"]
    assert backend["errors"] == 0, backend["last_error"]
    assert backend["logins"] == backend["uploads"] == backend["downloads"] == len(CONTENDERS)

    # client_only: the client joined on the stand-in and the proxy asked hasJoined, once each; only its
    # session was encrypted. Compression is vanilla's default threshold on every leg.
    assert result["session_server"]["join"] == 1 and result["session_server"]["has_joined"] == 1
    logins = {name: entries[0] for name, entries in result["logins"].items()}
    assert {name: login["encrypted"] for name, login in logins.items()} == {
        name: name == "client_only" for name in CONTENDERS
    }
    assert {login["threshold"] for login in logins.values()} == {256}

    # The printed table carries the ratios the benchmark exists for.
    assert "vs passthrough (x)" in done.stdout and "vs zero_copy (x)" in done.stdout
    ratios = result["tables"]["vs_passthrough"]["upload: MB/s"]
    assert set(ratios) == {"zero_copy", "offline", "client_only"}
