"""Sans-IO codecs for everything infrarust reads or writes on the wire.

Pure functions and classes over bytes: the Minecraft framing and the packets the proxy looks at, the
pre-1.7 legacy messages, and HAProxy PROXY headers; and for the intercepted modes a per-direction codec
(compression, encryption) with the connection state, the packet ids of every supported version
(generated from minecraft-data) and the layouts of the packets the proxy reads or writes. Nothing here
touches a socket; every decoding error is a :class:`ProtocolError`.
"""

from ._codec import MAX_FRAME_SIZE as MAX_FRAME_SIZE
from ._codec import MAX_UNCOMPRESSED_SIZE as MAX_UNCOMPRESSED_SIZE
from ._codec import NO_COMPRESSION as NO_COMPRESSION
from ._codec import PacketDecoder as PacketDecoder
from ._codec import PacketEncoder as PacketEncoder
from ._codec import WirePacket as WirePacket
from ._connection import InboundPacket as InboundPacket
from ._connection import MinecraftConnection as MinecraftConnection
from ._connection import Role as Role
from ._cursor import Cursor as Cursor
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
from ._packets import ClientChat as ClientChat
from ._packets import ClientCommand as ClientCommand
from ._packets import EncryptionRequest as EncryptionRequest
from ._packets import EncryptionResponse as EncryptionResponse
from ._packets import LoginPluginRequest as LoginPluginRequest
from ._packets import LoginPluginResponse as LoginPluginResponse
from ._packets import LoginSuccess as LoginSuccess
from ._packets import Outgoing as Outgoing
from ._packets import PlayerKey as PlayerKey
from ._packets import ProfileProperty as ProfileProperty
from ._packets import action_bar as action_bar
from ._packets import add_commands_to_tree as add_commands_to_tree
from ._packets import disconnect_packet as disconnect_packet
from ._packets import encode_encryption_request as encode_encryption_request
from ._packets import encode_encryption_response as encode_encryption_response
from ._packets import encode_keep_alive as encode_keep_alive
from ._packets import encode_login_plugin_request as encode_login_plugin_request
from ._packets import encode_login_plugin_response as encode_login_plugin_response
from ._packets import encode_login_start as encode_login_start
from ._packets import encode_login_success as encode_login_success
from ._packets import encode_set_compression as encode_set_compression
from ._packets import parse_client_chat as parse_client_chat
from ._packets import parse_encryption_request as parse_encryption_request
from ._packets import parse_encryption_response as parse_encryption_response
from ._packets import parse_login_plugin_request as parse_login_plugin_request
from ._packets import parse_login_plugin_response as parse_login_plugin_response
from ._packets import parse_login_start_key as parse_login_start_key
from ._packets import parse_login_success as parse_login_success
from ._packets import parse_set_compression as parse_set_compression
from ._packets import system_message as system_message
from ._packets import title_packets as title_packets
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
from ._text import Component as Component
from ._text import component_json as component_json
from ._text import component_nbt as component_nbt
from ._text import text_component as text_component
from ._varint import MAX_VARINT_BYTES as MAX_VARINT_BYTES
from ._varint import decode_varint as decode_varint
from ._varint import encode_varint as encode_varint
from ._versions import SUPPORTED_PROTOCOLS as SUPPORTED_PROTOCOLS
from ._versions import Direction as Direction
from ._versions import PacketIds as PacketIds
from ._versions import State as State
from ._versions import packet_ids as packet_ids
from ._versions import supported_versions_text as supported_versions_text
