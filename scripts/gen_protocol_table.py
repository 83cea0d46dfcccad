"""Generate infrarust/protocol/_version_table.py from the facts in minecraft-data.

Run from the repository root after `make setup` (which installs minecraft-data with the e2e tests):

    .venv/bin/python scripts/gen_protocol_table.py

It reads the JSON files of the npm package directly (no node needed), keeps every release protocol from
1.8 (47) up to MAX_PROTOCOL, and writes, per protocol, the ids of the packets the intercepted modes
need. Versions sharing identical ids share one table, which keeps the output small. A release whose
protocol minecraft-data has no data for is written only when its two neighbours agree on every id (it is
then marked as inferred); otherwise it is left out and so refused. Never edit the output by hand.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tests" / "e2e" / "node_modules" / "minecraft-data"
DATA = PACKAGE / "minecraft-data" / "data"
OUTPUT = ROOT / "infrarust" / "protocol" / "_version_table.py"

MIN_PROTOCOL = 47  # 1.8
MAX_PROTOCOL = 775  # 26.1

_DIRECTIONS = {"clientbound": "toClient", "serverbound": "toServer"}
_STATES = {
    "handshake": "handshaking",
    "status": "status",
    "login": "login",
    "configuration": "configuration",
    "play": "play",
}

# Our column name -> minecraft-data packet names, first found wins. The names are minecraft-data's
# facts; the columns are the names infrarust's code uses.
COLUMNS: dict[str, tuple[str, ...]] = {
    "handshake.serverbound.handshake": ("set_protocol",),
    "status.clientbound.status_response": ("server_info",),
    "status.clientbound.pong": ("ping",),
    "status.serverbound.status_request": ("ping_start",),
    "status.serverbound.ping": ("ping",),
    "login.clientbound.disconnect": ("disconnect",),
    "login.clientbound.encryption_request": ("encryption_begin",),
    "login.clientbound.login_success": ("success",),
    "login.clientbound.set_compression": ("compress",),
    "login.clientbound.login_plugin_request": ("login_plugin_request",),
    "login.clientbound.cookie_request": ("cookie_request",),
    "login.serverbound.login_start": ("login_start",),
    "login.serverbound.encryption_response": ("encryption_begin",),
    "login.serverbound.login_plugin_response": ("login_plugin_response",),
    "login.serverbound.login_acknowledged": ("login_acknowledged",),
    "login.serverbound.cookie_response": ("cookie_response",),
    "configuration.clientbound.disconnect": ("disconnect",),
    "configuration.clientbound.finish_configuration": ("finish_configuration",),
    "configuration.clientbound.keep_alive": ("keep_alive",),
    "configuration.clientbound.plugin_message": ("custom_payload",),
    "configuration.serverbound.finish_configuration": ("finish_configuration",),
    "configuration.serverbound.keep_alive": ("keep_alive",),
    "configuration.serverbound.plugin_message": ("custom_payload",),
    "play.clientbound.join_game": ("login",),
    "play.clientbound.respawn": ("respawn",),
    "play.clientbound.disconnect": ("kick_disconnect",),
    "play.clientbound.chat": ("chat",),
    "play.clientbound.system_chat": ("system_chat",),
    "play.clientbound.player_chat": ("player_chat",),
    "play.clientbound.action_bar": ("action_bar",),
    "play.clientbound.title": ("title",),
    "play.clientbound.set_title_text": ("set_title_text",),
    "play.clientbound.set_subtitle_text": ("set_title_subtitle",),
    "play.clientbound.set_title_times": ("set_title_time",),
    "play.clientbound.clear_titles": ("clear_titles",),
    "play.clientbound.declare_commands": ("declare_commands",),
    "play.clientbound.keep_alive": ("keep_alive",),
    "play.clientbound.start_configuration": ("start_configuration",),
    "play.clientbound.plugin_message": ("custom_payload",),
    "play.serverbound.chat_message": ("chat_message", "chat"),
    "play.serverbound.chat_command": ("chat_command",),
    "play.serverbound.chat_command_signed": ("chat_command_signed",),
    "play.serverbound.message_acknowledgement": ("message_acknowledgement",),
    "play.serverbound.keep_alive": ("keep_alive",),
    "play.serverbound.configuration_acknowledged": ("configuration_acknowledged",),
    "play.serverbound.plugin_message": ("custom_payload",),
}
# Not a packet: the Declare Commands parser id of brigadier:string. Before 1.19 parsers were sent as
# identifiers (written as -2 here); from 1.19 as a registry number.
PARSER_COLUMN = "parser.brigadier_string"
IDENTIFIER_PARSER = -2
ABSENT = -1

_RELEASE = re.compile(r"\d+\.\d+(\.\d+)?")


def _q(text: str) -> str:
    """A Python string literal in the double quotes ruff format wants."""
    return json.dumps(text)


def _load(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def _packet_map(protocol: dict[str, object], state: str, direction: str) -> dict[str, int]:
    section = protocol.get(_STATES[state])
    if not isinstance(section, dict):
        return {}
    packet = section[_DIRECTIONS[direction]]["types"]["packet"]
    mappings: dict[str, str] = packet[1][0]["type"][1]["mappings"]
    return {name: int(key, 16) for key, name in mappings.items()}


def _parser_id(protocol: dict[str, object]) -> int:
    types = protocol["types"]
    assert isinstance(types, dict)
    node = json.dumps(types.get("command_node"))
    match = re.search(r'"parser", "type": \["mapper", \{"type": "varint", "mappings": (\{[^}]*\})', node)
    if match is None:
        return IDENTIFIER_PARSER if "brigadier:string" in node else ABSENT
    for key, name in json.loads(match.group(1)).items():
        if name == "brigadier:string":
            return int(key)
    raise SystemExit("minecraft-data: a varint parser mapping without brigadier:string")


def _row(protocol: dict[str, object]) -> tuple[int, ...]:
    row = []
    for column, names in COLUMNS.items():
        state, direction, _ = column.split(".")
        ids = _packet_map(protocol, state, direction)
        row.append(next((ids[name] for name in names if name in ids), ABSENT))
    row.append(_parser_id(protocol))
    return tuple(row)


def _protocol_files() -> dict[int, str]:
    """Protocol number -> the minecraft-data directory of its protocol.json (first listed wins)."""
    paths = _load(DATA / "dataPaths.json")
    assert isinstance(paths, dict)
    found: dict[int, str] = {}
    for entry in paths["pc"].values():
        if "protocol" not in entry or "version" not in entry:
            continue
        version = _load(DATA / entry["version"] / "version.json")
        assert isinstance(version, dict)
        number = version["version"]
        if MIN_PROTOCOL <= number <= MAX_PROTOCOL:
            found.setdefault(number, entry["protocol"])
    return found


def _releases() -> dict[int, list[str]]:
    """Protocol number -> its release names, oldest first."""
    entries = _load(DATA / "pc" / "common" / "protocolVersions.json")
    assert isinstance(entries, list)
    releases: dict[int, list[str]] = {}
    for entry in reversed(entries):
        name = entry["minecraftVersion"]
        number = entry["version"]
        if entry.get("usesNetty") and _RELEASE.fullmatch(name) and MIN_PROTOCOL <= number <= MAX_PROTOCOL:
            releases.setdefault(number, []).append(name)
    return releases


def build() -> str:
    """The text of the generated module."""
    package = _load(PACKAGE / "package.json")
    assert isinstance(package, dict)
    files = _protocol_files()
    rows = {number: _row(_load(DATA / path / "protocol.json")) for number, path in files.items()}  # type: ignore[arg-type]
    releases = _releases()
    tables: list[tuple[int, ...]] = []
    versions: list[str] = []
    skipped: list[str] = []
    for number in sorted(releases):
        names = releases[number]
        source = files.get(number, "")
        row = rows.get(number)
        if row is None:
            lower = max((n for n in rows if n < number), default=None)
            upper = min((n for n in rows if n > number), default=None)
            if lower is not None and upper is not None and rows[lower] == rows[upper]:
                row = rows[lower]
                source = f"inferred: {files[lower]} and {files[upper]} agree".replace("pc/", "")
            else:
                skipped.append(f"{number} ({', '.join(names)})")
                continue
        if row not in tables:
            tables.append(row)
        source = _q(source.removeprefix("pc/"))
        versions.append(f"    {number}: ({_q(names[0])}, {_q(names[-1])}, {tables.index(row)}, {source}),")
    lines = [
        "# ruff: noqa: E501",
        '"""Packet ids per protocol version: GENERATED by scripts/gen_protocol_table.py, do not edit.',
        "",
        f"Source: the npm package minecraft-data {package['version']} (its JSON files).",
        f"Each table lists one id per column, {ABSENT} where the version has no such packet.",
        "The last column is the Declare Commands parser id of brigadier:string",
        f"({IDENTIFIER_PARSER}: the version names parsers by identifier).",
        '"""',
        "",
        f"MINECRAFT_DATA_VERSION = {_q(package['version'])}",
        "",
        "COLUMNS: tuple[str, ...] = (",
        *(f"    {_q(name)}," for name in [*COLUMNS, PARSER_COLUMN]),
        ")",
        "",
        "# fmt: off",
        "TABLES: tuple[tuple[int, ...], ...] = (",
        *(f"    ({', '.join(str(value) for value in row)})," for row in tables),
        ")",
        "# fmt: on",
        "",
        "# protocol: (first release, last release, table index, minecraft-data protocol directory)",
        "VERSIONS: dict[int, tuple[str, str, int, str]] = {",
        *versions,
        "}",
        "",
        f"# Releases in range without data in minecraft-data {package['version']}, so refused:",
        f"UNSUPPORTED: tuple[str, ...] = ({''.join(f'{_q(name)}, ' for name in skipped)})",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Write the table, or with --check exit 1 when the committed one differs from a fresh build."""
    text = build()
    if "--check" in sys.argv[1:]:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run scripts/gen_protocol_table.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
