"""minecraft-protocol's own packet codec (tests/e2e/mc_codec.js) as a test fixture: one node process
answering decode/encode requests, so the layouts infrarust writes are checked by real third-party
software for every supported version."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

E2E_DIR = Path(__file__).resolve().parent / "e2e"


class NodeCodec:
    """Requests to a running ``mc_codec.js``; each answer is a dict (``error`` on failure)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request, one answer."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            pytest.fail("mc_codec.js exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def decode(self, version: str, state: str, direction: str, packet: bytes) -> dict[str, Any]:
        """minecraft-protocol's reading of ``packet`` (id + body); fails the test on a decode error."""
        answer = self.ask(
            {"op": "decode", "version": version, "state": state, "direction": direction, "hex": packet.hex()}
        )
        if "error" in answer:
            pytest.fail(
                f"{version} {state} {direction}: minecraft-protocol cannot read it: {answer['error']}"
            )
        return answer

    def encode(self, version: str, state: str, direction: str, name: str, params: dict[str, Any]) -> bytes:
        """minecraft-protocol's bytes (id + body) for a packet."""
        answer = self.ask(
            {
                "op": "encode",
                "version": version,
                "state": state,
                "direction": direction,
                "name": name,
                "params": params,
            }
        )
        if "error" in answer:
            pytest.fail(f"{version} {name}: minecraft-protocol cannot write it: {answer['error']}")
        return bytes.fromhex(answer["hex"])


def start_node_codec() -> Iterator[NodeCodec]:
    """Run ``mc_codec.js`` for the duration of the generator; fails (never skips) without node."""
    node = shutil.which("node")
    if node is None or not (E2E_DIR / "node_modules" / "minecraft-protocol-1.68").is_dir():
        pytest.fail("node and tests/e2e/node_modules are needed: run `make setup`")
    process = subprocess.Popen(
        [node, str(E2E_DIR / "mc_codec.js")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=E2E_DIR,
    )
    try:
        yield NodeCodec(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
