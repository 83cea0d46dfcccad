"""The generated packet-id table: up to date with minecraft-data, complete over the releases the issue
names, and right on ids known from the protocol's history."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infrarust.protocol import SUPPORTED_PROTOCOLS, Direction, State, packet_ids, supported_versions_text

REPO = Path(__file__).resolve().parent.parent
CB, SB = Direction.CLIENTBOUND, Direction.SERVERBOUND


def test_committed_table_matches_a_fresh_generation() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protocol_table.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_every_release_from_1_8_to_26_1() -> None:
    releases = {
        47, 107, 108, 109, 110, 210, 315, 316, 335, 338, 340, 393, 401, 404, 477, 480, 485, 490, 498,
        573, 575, 578, 735, 736, 751, 753, 754, 755, 756, 757, 758, 759, 760, 761, 762, 763, 764, 765,
        766, 767, 768, 769, 770, 771, 772, 773, 774, 775,
    }  # fmt: skip
    assert releases == SUPPORTED_PROTOCOLS
    text = supported_versions_text()
    assert text.startswith("1.8-1.8.9, 1.9,") and text.endswith("1.21.11, 26.1-26.1.2")
    assert packet_ids(46) is None and packet_ids(776) is None and packet_ids(0x40000001) is None


@pytest.mark.parametrize(
    ("protocol", "state", "direction", "name", "packet_id"),
    [
        (47, State.LOGIN, CB, "set_compression", 0x03),
        (47, State.PLAY, CB, "keep_alive", 0x00),
        (47, State.PLAY, CB, "chat", 0x02),
        (47, State.PLAY, CB, "title", 0x45),
        (47, State.PLAY, CB, "disconnect", 0x40),
        (47, State.PLAY, SB, "chat_message", 0x01),
        (340, State.PLAY, CB, "chat", 0x0F),
        (340, State.PLAY, SB, "chat_message", 0x02),
        (393, State.LOGIN, CB, "login_plugin_request", 0x04),
        (393, State.PLAY, CB, "declare_commands", 0x11),
        (754, State.PLAY, CB, "chat", 0x0E),
        (755, State.PLAY, CB, "action_bar", 0x41),
        (759, State.PLAY, CB, "system_chat", 0x5F),
        (759, State.PLAY, SB, "chat_command", 0x03),
        (764, State.LOGIN, SB, "login_acknowledged", 0x03),
        (764, State.CONFIGURATION, CB, "finish_configuration", 0x02),
        (764, State.PLAY, CB, "start_configuration", 0x65),
        (765, State.PLAY, CB, "system_chat", 0x69),
        (766, State.PLAY, SB, "chat_command_signed", 0x05),
        (767, State.CONFIGURATION, CB, "disconnect", 0x02),
        (775, State.PLAY, CB, "system_chat", 0x79),
        (775, State.PLAY, SB, "chat_command", 0x07),
    ],
)
def test_known_ids(protocol: int, state: State, direction: Direction, name: str, packet_id: int) -> None:
    ids = packet_ids(protocol)
    assert ids is not None
    assert ids.id_of(state, direction, name) == packet_id
    assert ids.name_of(state, direction, packet_id) == name


def test_packets_a_version_lacks_have_no_id() -> None:
    old, new = packet_ids(47), packet_ids(775)
    assert old is not None and new is not None
    assert old.id_of(State.PLAY, CB, "system_chat") is None
    assert old.id_of(State.LOGIN, CB, "login_plugin_request") is None
    assert new.id_of(State.PLAY, CB, "chat") is None and new.id_of(State.PLAY, CB, "title") is None
    assert old.brigadier_string_parser is None and new.brigadier_string_parser == 5
