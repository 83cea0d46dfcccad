"""bench/embedded.py, the program behind the bench's ``embedded`` and ``hooked`` figures, takes its hook and
subscriber away and registers them again on SIGUSR1, and says so once it did (driven here through the
bench's own ``Infrarust.watch``, from the repository root as ``make bench`` runs it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DRIVER = """
import sys
from pathlib import Path
from bench._procs import WATCHED_OFF, WATCHED_ON, Infrarust

class Backend:
    port = 9  # never connected: no client comes

process = Infrarust("hooked", Backend(), Path(sys.argv[1]), "zero_copy", embedded=True)
try:
    process.wait_ready()
    assert process.watched
    process.watch(True)  # already on: nothing to do
    process.watch(False)
    process.watch(True)
    process.watch(False)
finally:
    process.stop()
log = process.log_path.read_text()
assert log.count(WATCHED_OFF) == 2 and log.count(WATCHED_ON) == 1, log
assert log.index(WATCHED_OFF) < log.index(WATCHED_ON) < log.rindex(WATCHED_OFF), log
assert "Traceback" not in log, log
print("toggled")
"""


def test_the_embedded_program_toggles_its_hook_and_subscriber(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "toggled"
