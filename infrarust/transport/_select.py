"""Which forwarder a proxy mode gets."""

from __future__ import annotations

import os
import sys

from infrarust.config._models import ProxyMode

from ._copy import CopyForwarder
from ._pipes import PipePool
from ._session import Forwarder
from ._splice import SpliceForwarder

SPLICE_SUPPORTED = sys.platform == "linux" and hasattr(os, "splice")

# Forwarders hold no per-session state, so every session shares them, and all splice sessions of one pipe
# size share one pipe pool.
_copy_forwarder = CopyForwarder()
_splice_forwarders: dict[int, SpliceForwarder] = {}


class Forwarders:
    """The forwarders one proxy uses, and the pipe pools behind them: owned by that proxy, closed with it.

    Forwarders hold no per-session state, so every session of the proxy shares them; the splice sessions of
    one pipe size share one pipe pool. :meth:`close` closes the pooled pipes when the proxy stops, so an
    embedded proxy leaves no kernel pipe behind.
    """

    def __init__(self) -> None:
        self._copy = CopyForwarder()
        self._splice: dict[int, SpliceForwarder] = {}

    def get(self, mode: ProxyMode, pipe_size: int = 65536) -> Forwarder:
        """The forwarder for ``mode`` (see :func:`select_forwarder`)."""
        if mode is not ProxyMode.ZERO_COPY or not SPLICE_SUPPORTED:
            return self._copy
        forwarder = self._splice.get(pipe_size)
        if forwarder is None:
            forwarder = self._splice[pipe_size] = SpliceForwarder(pipe_size, PipePool(pipe_size))
        return forwarder

    def close(self) -> None:
        """Close every idle pooled pipe; pipes still lent to sessions close when those sessions end."""
        for forwarder in self._splice.values():
            forwarder.pool.clear()
            forwarder.pool.max_idle = 0  # a pipe released after this closes instead of being kept


def select_forwarder(mode: ProxyMode, *, pipe_size: int = 65536) -> Forwarder:
    """A :class:`SpliceForwarder` for ``zero_copy`` where splice(2) exists, a :class:`CopyForwarder` else.

    Returns the same instance for the same arguments.
    """
    if mode is not ProxyMode.ZERO_COPY or not SPLICE_SUPPORTED:
        return _copy_forwarder
    forwarder = _splice_forwarders.get(pipe_size)
    if forwarder is None:
        forwarder = SpliceForwarder(pipe_size, PipePool(pipe_size))
        _splice_forwarders[pipe_size] = forwarder
    return forwarder
