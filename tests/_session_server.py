"""A small Yggdrasil session server on loopback for the tests, faithful to the two endpoints Mojang
documents for server authentication:

- ``POST /session/minecraft/join`` with JSON ``{"accessToken", "selectedProfile", "serverId"}``:
  the client says it joins the server whose hash is ``serverId``; 204 when the token is known.
- ``GET /session/minecraft/hasJoined?username=&serverId=[&ip=]``: 200 with the profile JSON
  (``id`` without hyphens, ``name``, ``properties``) when that player joined that server id, else 204.

``slow`` makes every request wait forever (a session server that hangs). Runs on Trio, HTTP/1.1 with
``Connection: close``: exactly what httpx and minecraft-protocol's client need, nothing more.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from typing import Any

import trio
from attrs import define, field


@define
class SessionServer:
    """The server's state: accounts by access token, joins, and every request seen."""

    accounts: dict[str, tuple[uuid.UUID, str, list[dict[str, str]]]] = field(factory=dict)
    joins: dict[str, str] = field(factory=dict)  # name (lower case) -> serverId
    requests: list[tuple[str, str]] = field(factory=list)
    slow: bool = False
    port: int = 0

    @property
    def url(self) -> str:
        """The base URL to configure (``[auth] session_server`` or ``sessionServer``)."""
        return f"http://127.0.0.1:{self.port}"

    def add_account(self, token: str, name: str, properties: list[dict[str, str]] | None = None) -> uuid.UUID:
        """Register a player who can ``join`` with ``token``; returns their UUID."""
        player = uuid.uuid4()
        self.accounts[token] = (player, name, properties or [])
        return player

    async def serve(self, *, task_status: trio.TaskStatus[SessionServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 (port 0) and answer until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                request += chunk
            head, _, body = request.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
            }
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                body += chunk
            self.requests.append((method, target))
            if self.slow:
                await trio.sleep_forever()
            status, payload = self._answer(method, target, body)
            data = json.dumps(payload).encode() if payload is not None else b""
            reason = {200: "OK", 204: "No Content", 403: "Forbidden", 404: "Not Found"}[status]
            response = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n"
            if data:
                response += "Content-Type: application/json\r\n"
            await stream.send_all(response.encode() + b"\r\n" + data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    def _answer(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        if method == "POST" and url.path == "/session/minecraft/join":
            data = json.loads(body)
            account = self.accounts.get(data.get("accessToken", ""))
            if account is None or data.get("selectedProfile") != account[0].hex:
                return 403, {"error": "ForbiddenOperationException", "errorMessage": "Invalid token"}
            self.joins[account[1].lower()] = data["serverId"]
            return 204, None
        if method == "GET" and url.path == "/session/minecraft/hasJoined":
            name = query.get("username", "")
            if self.joins.get(name.lower()) != query.get("serverId"):
                return 204, None
            for player, account_name, properties in self.accounts.values():
                if account_name.lower() == name.lower():
                    return 200, {"id": player.hex, "name": account_name, "properties": properties}
            return 204, None
        return 404, {"error": "Not Found"}
