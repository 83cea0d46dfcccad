"""Reaching a backend: its addresses tried in order, and the handshake it is shown."""

from __future__ import annotations

import logging

import trio

from infrarust._logfmt import quote
from infrarust.config._models import Address, RewriteKind, ServerConfig
from infrarust.protocol import Handshake
from infrarust.routing import rewrite_host

logger = logging.getLogger("infrarust")


async def connect_backend(
    server: ServerConfig, default_timeout: float
) -> tuple[trio.SocketStream, Address] | None:
    """Try the server's addresses in order, each under its connect timeout; None when none answers.

    ``default_timeout`` is the proxy's ``connect_timeout``, used unless the server sets ``timeouts.connect``.
    """
    timeout = server.timeouts.connect if server.timeouts.connect is not None else default_timeout
    for address in server.addresses:
        with trio.move_on_after(timeout):
            try:
                return await trio.open_tcp_stream(address.host, address.port), address
            except OSError as exc:
                logger.info(
                    "backend connect failed server=%s address=%s error=%s",
                    server.name,
                    address,
                    quote(exc.strerror or str(exc)),
                )
                continue
        logger.info("backend connect timed out server=%s address=%s after=%gs", server.name, address, timeout)
    return None


def backend_handshake(handshake: Handshake, server: ServerConfig, address: Address) -> Handshake:
    """The handshake the backend sees: the client's, with only the host name rewritten if the server asks."""
    rewrite = server.domain_rewrite
    if rewrite.kind is RewriteKind.NONE:
        return handshake
    name = rewrite.host if rewrite.kind is RewriteKind.EXPLICIT and rewrite.host else address.host
    return handshake.with_host(rewrite_host(handshake.host, name))
