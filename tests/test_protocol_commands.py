"""Recognising ``/infrarust`` and ``/ir`` in what players type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.commands import ProxyCommand, parse_proxy_command


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("infrarust", ProxyCommand("infrarust", "help", "")),
        ("ir", ProxyCommand("ir", "help", "")),
        ("IR List", ProxyCommand("ir", "list", "")),
        ("ir find Notch", ProxyCommand("ir", "find", "Notch")),
        ("infrarust kick Notch  being   rude ", ProxyCommand("infrarust", "kick", "Notch  being   rude")),
        (
            "ir broadcast  Server restarts in 5 minutes",
            ProxyCommand("ir", "broadcast", "Server restarts in 5 minutes"),
        ),
        ("ir nope", ProxyCommand("ir", "nope", "")),
    ],
)
def test_proxy_commands(typed: str, expected: ProxyCommand) -> None:
    assert parse_proxy_command(typed) == expected


@pytest.mark.parametrize("typed", ["irc join", "infrarustx", "tell ir hi", "", "  ", "say /ir"])
def test_other_commands_go_to_the_backend(typed: str) -> None:
    assert parse_proxy_command(typed) is None


def test_arguments() -> None:
    kick = parse_proxy_command("ir kick Notch being rude")
    assert kick is not None and kick.known and kick.admin_only
    assert kick.words == ("Notch", "being", "rude")
    assert kick.after_words(1) == "being rude" and kick.after_words(3) == "" and kick.after_words(9) == ""
    find = parse_proxy_command("infrarust find")
    assert find is not None and find.known and not find.admin_only and find.words == ()
    unknown = parse_proxy_command("ir frobnicate")
    assert unknown is not None and not unknown.known


@given(st.text(max_size=80))
def test_never_raises(typed: str) -> None:
    parsed = parse_proxy_command(typed)
    if parsed is not None:
        assert parsed.label in ("infrarust", "ir") and parsed.subcommand == parsed.subcommand.lower()
