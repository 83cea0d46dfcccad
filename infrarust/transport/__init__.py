"""Relaying bytes after the handshake: the copy and splice forwarders, and the result they report."""

from ._copy import CopyForwarder as CopyForwarder
from ._pipes import PipePool as PipePool
from ._raw import write_all as write_all
from ._result import ForwardEndReason as ForwardEndReason
from ._result import ForwardResult as ForwardResult
from ._result import Traffic as Traffic
from ._select import SPLICE_SUPPORTED as SPLICE_SUPPORTED
from ._select import Forwarders as Forwarders
from ._select import select_forwarder as select_forwarder
from ._session import Cut as Cut
from ._session import Forwarder as Forwarder
from ._sockopts import socket_options as socket_options
from ._sockopts import tune_socket as tune_socket
from ._sockopts import unacknowledged as unacknowledged
from ._splice import SpliceForwarder as SpliceForwarder
from ._stream import relay_stream as relay_stream
