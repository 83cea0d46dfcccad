"""Telling a service manager or a script that the proxy is ready: systemd's ``sd_notify`` and a ready file.

``sd_notify`` is systemd's datagram protocol, a few lines of socket code, so no dependency: when the
service manager sets ``NOTIFY_SOCKET`` (``Type=notify`` units), the proxy sends ``READY=1`` once it
listens and ``STOPPING=1`` when it starts shutting down. A ready file (``--ready-file PATH``) holds the
bound address once listening and is removed on exit, for scripts and orchestrators that watch files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path

import trio

logger = logging.getLogger("infrarust")

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def sd_notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``state`` (``"READY=1"``, newline-separated assignments) to ``$NOTIFY_SOCKET``.

    Returns False when there is no socket to tell (not under systemd) or the message could not be sent;
    a failure is logged, never raised: the proxy serves players whether or not its manager hears it. The
    socket is non-blocking, so a manager that does not read never stalls the event loop.
    """
    address = environ.get(NOTIFY_SOCKET, "")
    if not address:
        return False
    if address.startswith("@"):  # Linux abstract namespace, as systemd writes it
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        logger.warning("sd_notify: unsupported NOTIFY_SOCKET=%r (only unix sockets)", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), socket.MSG_DONTWAIT, address)
    except OSError as exc:
        logger.warning("sd_notify failed state=%s error=%s", state.split("\n", 1)[0], exc.strerror or exc)
        return False
    return True


class ReadyFileError(Exception):
    """The ready file could not be written (the message names the file and the reason)."""


class Readiness:
    """The ways this process announces readiness and shutdown: ``sd_notify`` and, if given, a ready file.

    Construct it before listening: a ready file left over from an earlier run that died is removed then, so
    nobody mistakes it for this run's. :meth:`close` removes this run's file.
    """

    def __init__(self, ready_file: Path | None, environ: Mapping[str, str] = os.environ) -> None:
        self.ready_file = ready_file
        self._environ = environ
        self._remove()

    async def ready(self, address: str) -> None:
        """Announce that the proxy listens on ``address``; raises :class:`ReadyFileError`."""
        if self.ready_file is not None:
            await trio.to_thread.run_sync(write_ready_file, self.ready_file, address)
        sd_notify(f"READY=1\nSTATUS=listening on {address}", self._environ)

    def stopping(self) -> None:
        """Announce that the proxy stops accepting and ends its sessions."""
        sd_notify("STOPPING=1\nSTATUS=shutting down", self._environ)

    def close(self) -> None:
        """Remove this run's ready file, if there is one (quietly: it may be gone already)."""
        self._remove()

    def _remove(self) -> None:
        if self.ready_file is not None:
            try:
                self.ready_file.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("cannot remove the ready file path=%s error=%s", self.ready_file, exc.strerror)


def write_ready_file(path: Path, address: str) -> None:
    """Write ``address`` and a newline to ``path`` atomically: a reader sees the whole file or none."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(address + "\n", encoding="ascii")
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise ReadyFileError(f"--ready-file: cannot write {path}: {exc.strerror or exc}") from None
