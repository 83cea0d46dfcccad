"""Intercepted sessions (``offline``, ``client_only``): the proxy terminates the protocol on both legs.

The pipeline hands a connection here instead of connecting and relaying raw bytes; what comes back is the
same kind of outcome the other stages return, and a session reports itself through the proxy's
``session_started`` / ``session_ended`` like a forwarded one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from infrarust.config import ProxyConfig
from infrarust.connection import Connection, Outcome, Refusal

if TYPE_CHECKING:
    from infrarust.proxy import Proxy


async def serve_intercepted(
    proxy: Proxy, stream: trio.SocketStream, connection: Connection, config: ProxyConfig
) -> Outcome | None:
    """Log the player in, connect and log in to the backend, and relay with parsing until the end."""
    return Refusal("denied", "This server's proxy mode is not available yet.")
