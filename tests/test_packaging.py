"""Packaging: the wheel and its ``infrarust`` command, one version, what ``import infrarust.ping`` loads."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path

import pytest

import infrarust

ROOT = Path(__file__).resolve().parent.parent
BUILD_LIMIT = 300  # seconds; the build fetches setuptools from the package index the first time

# What running the proxy pulls in; the ping command must load none of it.
PROXY_MODULES = (
    "infrarust.proxy",
    "infrarust.config",
    "infrarust.bans",
    "infrarust.metrics",
    "infrarust.serverlist",
    "infrarust.transport",
    "infrarust._runcmd",
    "cattrs",
    "tomlkit",
)


def test_import_ping_does_not_import_the_proxy() -> None:
    code = "import infrarust.ping, json, sys; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "infrarust.ping" in loaded
    assert sorted(name for name in loaded if name.startswith(PROXY_MODULES)) == []


def test_ping_command_does_not_import_the_proxy(tmp_path: Path) -> None:
    """The whole ``python -m infrarust ping`` path, parser included (checked from inside the process)."""
    out = str(tmp_path / "modules")
    probe = (
        "import runpy, sys, json, atexit\n"
        f"atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=open({out!r}, 'w')))\n"
        "sys.argv = ['infrarust', 'ping', '127.0.0.1:1', '--timeout', '1']\n"
        "runpy.run_module('infrarust', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "ping: 127.0.0.1:1: cannot connect" in done.stderr
    loaded = json.loads((tmp_path / "modules").read_text())
    assert sorted(name for name in loaded if name.startswith(PROXY_MODULES)) == []


def test_lazy_exports_match_the_type_checking_imports() -> None:
    """``__init__.py`` names each export twice (for type checkers, for the lazy import): they must agree."""
    tree = ast.parse((ROOT / "infrarust" / "__init__.py").read_text())
    block = next(
        node for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node)
    )
    typed = {
        alias.asname or alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    eager = [
        ast.unparse(node)
        for node in tree.body
        if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("infrarust"))
        or (isinstance(node, ast.Import) and any(a.name.startswith("infrarust") for a in node.names))
    ]
    assert eager == []  # an import at module level would load the proxy for `import infrarust.ping`
    exports = infrarust._EXPORTS
    assert typed == exports
    assert set(infrarust.__all__) == {*exports, "__version__"}


@pytest.mark.parametrize("name", sorted(infrarust._EXPORTS))
def test_every_export_is_the_object_of_its_module(name: str) -> None:
    module = importlib.import_module(infrarust._EXPORTS[name])
    assert getattr(infrarust, name) is getattr(module, name)
    assert name in dir(infrarust)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Proxxy'"):
        infrarust.Proxxy  # type: ignore[attr-defined]  # noqa: B018


def test_version_has_one_source() -> None:
    assert infrarust.__version__ == metadata.version("infrarust")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf'^version = "{re.escape(infrarust.__version__)}"$', pyproject, re.MULTILINE)
    assert not re.search(r"__version__\s*=\s*['\"]", (ROOT / "infrarust" / "__init__.py").read_text())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel, built from a copy of the sources (the build writes next to them), and the build's log."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "infrarust", source / "infrarust", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # setuptools' deprecations are Python warnings
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-v",
            "--disable-pip-version-check",
            "-w",
            str(out),
            ".",
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=BUILD_LIMIT,
        env=env,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    (built,) = out.glob("infrarust-*.whl")
    return built, log


def test_the_wheel_build_has_no_setuptools_deprecation(wheel: tuple[Path, str]) -> None:
    _, log = wheel
    assert "BuildBackendWarning" not in log
    assert not re.search(r"SetuptoolsDeprecationWarning|is deprecated", log), log


def test_wheel_metadata(wheel: tuple[Path, str]) -> None:
    built, _ = wheel
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        info = next(name for name in names if name.endswith(".dist-info/METADATA"))
        fields = HeaderParser().parsestr(archive.read(info).decode())
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
        license_text = archive.read(info.replace("METADATA", "licenses/LICENSE")).decode()
    assert fields["License-Expression"] == "MIT"
    assert "Copyright (c) 2026 infrarust contributors" in license_text
    classifiers = fields.get_all("Classifier") or []
    for expected in (
        "Framework :: Trio",
        "Typing :: Typed",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.13",
    ):
        assert expected in classifiers
    assert len(fields.get_all("Project-URL") or []) >= 2
    assert "infrarust = infrarust.__main__:main" in entry_points
    assert "infrarust/py.typed" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/"))]


def test_infrarust_command_from_the_installed_wheel(wheel: tuple[Path, str], tmp_path: Path) -> None:
    """A fresh environment with the wheel installed: the console script, its version, and a real command.

    Nothing is downloaded: the environment reaches this test run's dependencies through a path file (a
    plain path entry, so the checkout's own editable install there is not taken up), and its own
    site-packages, where the wheel went, comes first.
    """
    built, _ = wheel
    target = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    (Path(site) / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--no-deps",
        "--no-index",
        "-q",
    ]
    subprocess.run([*install, str(built)], check=True, capture_output=True, timeout=120)
    command = target / "bin" / "infrarust"
    version = metadata.version("infrarust")

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    for flag in ("--version", "-V"):
        done = run(command, flag)
        assert (done.returncode, done.stdout) == (0, f"infrarust {version}\n"), done.stderr
    done = run(python, "-c", "import infrarust; print(infrarust.__version__, infrarust.__file__)")
    shown, location = done.stdout.split()
    assert shown == version
    assert location.startswith(str(target))  # the installed copy, not this checkout
    assert "examples:" in run(command, "--help").stdout
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    done = run(command, "check", "-c", "conf/infrarust.toml")
    assert done.returncode == 0 and "conf/infrarust.toml: ok" in done.stdout, done.stderr
