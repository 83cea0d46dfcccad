"""A Yggdrasil session server stand-in for the intercepted-modes benchmark (bench/intercepted.py).

The two endpoints Mojang documents for server authentication, on 127.0.0.1 in a thread of the harness:

- ``POST /session/minecraft/join`` with JSON ``{"accessToken", "selectedProfile", "serverId"}``: the
  client says it joins the server whose hash is ``serverId``; 204 when the token belongs to that profile,
  403 otherwise;
- ``GET /session/minecraft/hasJoined?username=&serverId=[&ip=]``: 200 with the profile (``id`` without
  hyphens, ``name``, ``properties``) when that player joined that server id, else 204.

The same two endpoints as tests/_session_server.py (a Trio server for the tests); the benchmark keeps
its own, on the standard library's threaded HTTP server, so that bench/ does not import from tests/.
It only serves logins, which are outside every measured step.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SessionStandIn:
    """The server's state (one account, the joins, request counts) and its thread."""

    def __init__(self, name: str, token: str) -> None:
        self.name = name
        self.token = token
        self.profile = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.bench.local")
        self.joins: dict[str, str] = {}  # name (lower case) -> serverId
        self.counts = {"join": 0, "join_refused": 0, "has_joined": 0, "has_joined_no": 0}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="session-server", daemon=True)

    @property
    def url(self) -> str:
        """The base URL for ``[auth] session_server`` and for the client's ``join``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SessionStandIn:
        """Serve in a thread from now on."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def answer(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        """The status and JSON answer (None: no body) to one request."""
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        with self._lock:
            if method == "POST" and url.path == "/session/minecraft/join":
                try:
                    data = json.loads(body)
                except ValueError:
                    data = None
                if (
                    not isinstance(data, dict)
                    or data.get("accessToken") != self.token
                    or data.get("selectedProfile") != self.profile.hex
                    or not isinstance(data.get("serverId"), str)
                ):
                    self.counts["join_refused"] += 1
                    return 403, {"error": "ForbiddenOperationException", "errorMessage": "Invalid token"}
                self.joins[self.name.lower()] = data["serverId"]
                self.counts["join"] += 1
                return 204, None
            if method == "GET" and url.path == "/session/minecraft/hasJoined":
                name = query.get("username", "")
                if name.lower() != self.name.lower() or self.joins.get(name.lower()) != query.get("serverId"):
                    self.counts["has_joined_no"] += 1
                    return 204, None
                self.counts["has_joined"] += 1
                return 200, {"id": self.profile.hex, "name": self.name, "properties": []}
        return 404, {"error": "Not Found"}


def _handler(state: SessionStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """Answers each request from ``state``."""

        def do_GET(self) -> None:
            """``hasJoined``."""
            self._reply(b"")

        def do_POST(self) -> None:
            """``join``."""
            length = int(self.headers.get("Content-Length") or 0)
            self._reply(self.rfile.read(min(length, 65536)))

        def _reply(self, body: bytes) -> None:
            status, payload = state.answer(self.command, self.path, body)
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            if data:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the harness prints its own report."""

    return Handler
