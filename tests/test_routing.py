"""Routing keys, domain rewrite, and exact/wildcard server lookup."""

from __future__ import annotations

import pytest
from helpers import server
from hypothesis import given
from hypothesis import strategies as st

from infrarust.config._models import Address
from infrarust.routing import Router, rewrite_host, routing_key, split_host

A = (Address("127.0.0.1", 1),)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("play.example.com", "play.example.com"),
        ("Play.Example.COM", "play.example.com"),
        ("play.example.com.", "play.example.com"),
        ("play.example.com\0FML\0", "play.example.com"),
        ("play.example.com\0FML2\0", "play.example.com"),
        ("play.example.com\0FML3\0", "play.example.com"),
        ("play.example.com\0FORGE", "play.example.com"),
        ("play.example.com///1.2.3.4:5555///1700000000///c2lnbmF0dXJl", "play.example.com"),
        ("Play.Example.com.///1.2.3.4:5555///17///sig\0FML2\0", "play.example.com"),
        ("", ""),
    ],
)
def test_routing_key_cleans_suffixes_dots_and_case(host: str, key: str) -> None:
    assert routing_key(host) == key


def test_rewrite_keeps_forge_and_shield_suffixes() -> None:
    assert rewrite_host("play.example.com\0FML2\0", "backend.internal") == "backend.internal\0FML2\0"
    assert rewrite_host("a.b///1.2.3.4:1///2///s", "c.d") == "c.d///1.2.3.4:1///2///s"
    assert rewrite_host("a.b", "c.d") == "c.d"


@given(
    st.text(alphabet="abcdefghij.-", max_size=30),
    st.sampled_from(["", "\0FML\0", "\0FML2\0", "///x///1///s"]),
)
def test_split_host_round_trips(name: str, suffix: str) -> None:
    assert "".join(split_host(name + suffix)) == name + suffix
    assert split_host(name + suffix)[1] == suffix


def test_exact_before_wildcard_and_wildcards_in_file_order() -> None:
    wild_a = server("wild-a", ["*.example.com"], A)
    wild_b = server("wild-b", ["*.com"], A)
    exact = server("exact", ["lobby.example.com"], A)
    router = Router([wild_a, wild_b, exact])
    assert router.route("lobby.example.com") is exact
    assert router.route("LOBBY.example.com.\0FML2\0") is exact
    assert router.route("pvp.example.com") is wild_a  # both patterns match; the earlier file wins
    assert router.route("other.com") is wild_b
    assert router.route("example.org") is None
    assert router.route("") is None


def test_question_mark_matches_exactly_one_character() -> None:
    s = server("s", ["mc?.example.com"], A)
    router = Router([s])
    assert router.route("mc1.example.com") is s
    assert router.route("mc.example.com") is None
    assert router.route("mc12.example.com") is None


def test_regex_characters_in_domains_are_literal() -> None:
    s = server("s", ["a.b"], A)
    router = Router([s])
    assert router.route("a.b") is s
    assert router.route("axb") is None


def test_later_file_wins_an_exact_domain_claimed_twice() -> None:
    first = server("first", ["shared.example.com"], A)
    second = server("second", ["Shared.Example.com"], A)
    assert Router([first, second]).route("shared.example.com") is second
