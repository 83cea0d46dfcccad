"""Sans-IO codecs for everything infrarust reads or writes on the wire.

Pure functions and classes over bytes: the Minecraft framing and the packets the proxy looks at, the
pre-1.7 legacy messages, and HAProxy PROXY headers. Nothing here touches a socket; every decoding error
is a :class:`ProtocolError`.
"""

from ._errors import ProtocolError as ProtocolError
from ._framing import Packet as Packet
from ._framing import PacketReader as PacketReader
from ._framing import encode_packet as encode_packet
from ._handshake import MAX_HANDSHAKE_SIZE as MAX_HANDSHAKE_SIZE
from ._handshake import Handshake as Handshake
from ._handshake import NextState as NextState
from ._handshake import parse_handshake as parse_handshake
from ._hello import HelloReader as HelloReader
from ._legacy import LegacyLogin as LegacyLogin
from ._legacy import LegacyPing as LegacyPing
from ._legacy import LegacyPingKind as LegacyPingKind
from ._legacy import LegacyStatus as LegacyStatus
from ._legacy import encode_legacy_disconnect as encode_legacy_disconnect
from ._legacy import encode_legacy_kick as encode_legacy_kick
from ._legacy import encode_legacy_ping as encode_legacy_ping
from ._legacy import parse_legacy_kick as parse_legacy_kick
from ._login import LoginStart as LoginStart
from ._login import encode_login_disconnect as encode_login_disconnect
from ._login import parse_login_start as parse_login_start
from ._preamble import NEED_DATA as NEED_DATA
from ._preamble import ClientClosed as ClientClosed
from ._preamble import HelloReceived as HelloReceived
from ._preamble import LoginStartReceived as LoginStartReceived
from ._preamble import Preamble as Preamble
from ._preamble import PreambleComplete as PreambleComplete
from ._preamble import PreambleEvent as PreambleEvent
from ._preamble import ProxyHeaderReceived as ProxyHeaderReceived
from ._proxy_header import ProxyHeader as ProxyHeader
from ._proxy_header import encode_proxy_v2 as encode_proxy_v2
from ._proxy_header import parse_proxy_header as parse_proxy_header
from ._status import build_status_json as build_status_json
from ._status import encode_ping as encode_ping
from ._status import encode_pong as encode_pong
from ._status import encode_status_request as encode_status_request
from ._status import encode_status_response as encode_status_response
from ._status import parse_ping as parse_ping
from ._status import parse_status_response as parse_status_response
from ._string import encode_string as encode_string
from ._string import read_string as read_string
from ._varint import MAX_VARINT_BYTES as MAX_VARINT_BYTES
from ._varint import decode_varint as decode_varint
from ._varint import encode_varint as encode_varint
