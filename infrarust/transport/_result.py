"""What a relayed session ends with."""

from __future__ import annotations

import enum

from attrs import define, frozen


class ForwardEndReason(enum.Enum):
    """Why a relayed session ended: the first thing that ended it."""

    CLIENT_CLOSED = "ClientClosed"
    BACKEND_CLOSED = "BackendClosed"
    SHUTDOWN = "Shutdown"
    ERROR = "Error"


@frozen
class ForwardResult:
    """Bytes delivered in each direction and the reason the session ended."""

    client_to_backend: int
    backend_to_client: int
    reason: ForwardEndReason
    error: str | None = None  # what went wrong, for reason ERROR


@define
class Traffic:
    """Live byte counters of one session, updated as bytes are delivered to the destination.

    A forwarder owns the updates; anyone may read them (metrics, the session list, and the session's own
    ``finally`` when a cancellation cuts the forwarder off before it can return a result).
    """

    client_to_backend: int = 0
    backend_to_client: int = 0

    def result(self, reason: ForwardEndReason, error: str | None = None) -> ForwardResult:
        """Freeze the counters into a result."""
        return ForwardResult(self.client_to_backend, self.backend_to_client, reason, error)
