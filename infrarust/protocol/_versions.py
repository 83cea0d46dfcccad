"""Connection states, directions, and the packet ids of every supported protocol version.

The ids come from the generated table (``_version_table.py``, written by ``scripts/gen_protocol_table.py``
from minecraft-data); this module only indexes it. Layout differences between versions are decided in
the packet modules by protocol number.
"""

from __future__ import annotations

import enum
import functools

from attrs import frozen

from ._version_table import COLUMNS, MINECRAFT_DATA_VERSION, TABLES, VERSIONS


class State(enum.Enum):
    """The protocol state a stream of packets is in; it decides what a packet id means."""

    HANDSHAKE = "handshake"
    STATUS = "status"
    LOGIN = "login"
    CONFIGURATION = "configuration"
    PLAY = "play"


class Direction(enum.Enum):
    """Which way a packet travels."""

    CLIENTBOUND = "clientbound"
    SERVERBOUND = "serverbound"


SUPPORTED_PROTOCOLS: frozenset[int] = frozenset(VERSIONS)
"""Every protocol number the intercepted modes speak: each release from 1.8 (47) to 26.1 (775)."""

TABLE_SOURCE = f"minecraft-data {MINECRAFT_DATA_VERSION}"
"""Where the packet ids came from, for logs and the README."""

_PARSER_COLUMN = "parser.brigadier_string"
_IDENTIFIER_PARSER = -2
_ABSENT = -1


@frozen
class PacketIds:
    """The packet ids of one protocol version, looked up by state, direction and infrarust's name.

    Names are those of the generated table's columns (``login_success``, ``system_chat``,
    ``chat_command``...); a packet the version does not have has no id.
    """

    protocol: int
    first_release: str
    last_release: str
    _by_name: dict[tuple[State, Direction, str], int]
    _by_id: dict[tuple[State, Direction, int], str]
    brigadier_string_parser: int | None
    """Declare Commands parser id of ``brigadier:string`` from 1.19; None where parsers are identifiers."""

    @property
    def release_names(self) -> str:
        """``1.20.3-1.20.4`` style: the releases that speak this protocol."""
        if self.first_release == self.last_release:
            return self.first_release
        return f"{self.first_release}-{self.last_release}"

    def id_of(self, state: State, direction: Direction, name: str) -> int | None:
        """The id of packet ``name``, or None when this version has no such packet."""
        return self._by_name.get((state, direction, name))

    def require(self, state: State, direction: Direction, name: str) -> int:
        """The id of packet ``name``; KeyError (a programming error) when the version lacks it."""
        return self._by_name[(state, direction, name)]

    def name_of(self, state: State, direction: Direction, packet_id: int) -> str | None:
        """infrarust's name for a packet id, or None for a packet the proxy passes through unread."""
        return self._by_id.get((state, direction, packet_id))


@functools.cache
def packet_ids(protocol: int) -> PacketIds | None:
    """The ids of ``protocol``, or None when it is not a supported release."""
    entry = VERSIONS.get(protocol)
    if entry is None:
        return None
    first, last, index, _source = entry
    row = TABLES[index]
    by_name: dict[tuple[State, Direction, str], int] = {}
    by_id: dict[tuple[State, Direction, int], str] = {}
    parser: int | None = None
    for column, value in zip(COLUMNS, row, strict=True):
        if column == _PARSER_COLUMN:
            parser = None if value in (_IDENTIFIER_PARSER, _ABSENT) else value
            continue
        if value == _ABSENT:
            continue
        state_name, direction_name, name = column.split(".")
        state, direction = State(state_name), Direction(direction_name)
        by_name[(state, direction, name)] = value
        by_id[(state, direction, value)] = name
    return PacketIds(protocol, first, last, by_name, by_id, parser)


def supported_versions_text() -> str:
    """A one-line list of the supported releases, for refusal messages and documentation."""
    return ", ".join(packet_ids(number).release_names for number in sorted(VERSIONS))  # type: ignore[union-attr]
