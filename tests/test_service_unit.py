"""``conf/infrarust.service``: the hardening the issue asks for, a command line infrarust accepts, and
systemd's own verdict on the file (``systemd-analyze verify``)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infrarust.__main__ import build_parser

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "conf" / "infrarust.service"


def service_settings() -> dict[str, list[str]]:
    """The ``[Service]`` section's settings, every value of a repeated key kept."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_has_the_hardening_and_readiness_settings() -> None:
    settings = service_settings()
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "NoNewPrivileges": "yes",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "StateDirectory": "infrarust",
    }
    assert {key: settings.get(key, [""])[-1] for key in expected} == expected
    # sd_notify talks over a unix socket: the address families must allow it.
    assert "AF_UNIX" in settings["RestrictAddressFamilies"][-1].split()


def test_unit_command_line_is_one_infrarust_accepts() -> None:
    (exec_start,) = service_settings()["ExecStart"]
    program, *args = shlex.split(exec_start)
    assert Path(program).name == "infrarust"
    options = build_parser("infrarust").parse_args(args)
    assert options.command == "run"
    assert options.config == "/etc/infrarust/infrarust.toml"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd parses every setting (a misspelt or unknown key is a warning it prints), with ExecStart
    pointed at this test's interpreter because verify checks that the program exists."""
    text = UNIT.read_text().replace("/usr/local/bin/infrarust", f"{sys.executable} -m infrarust")
    unit = tmp_path / "infrarust.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
