"""``infrarust.status`` without sockets: the status cache, the proxy's own MOTDs, and the legacy view.

The cache tests run on trio's ``autojump_clock``: no real socket is involved, so virtual time makes the
``ttl`` checks exact and instant.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from infrarust._answersource import ANSWER_SOURCES, AnswerSource, mark_source, take_source
from infrarust.config._models import Motd
from infrarust.status import (
    BUILTIN_UNKNOWN_TEXT,
    BUILTIN_UNREACHABLE_TEXT,
    DEFAULT_MOTD_STATES,
    PROXY_VERSION_NAME,
    UNREACHABLE_STATES,
    LegacyView,
    StatusCache,
    StatusUnavailable,
    apply_online_motd,
    component_to_legacy,
    legacy_view,
    pick_motd,
    proxy_status_json,
)

FAVICON = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class CountingFetch:
    """A ``fetch`` for the cache that takes ``delay`` seconds, counts its calls and returns ``value-N``."""

    def __init__(self, value: str = "status", delay: float = 1.0, error: str | None = None) -> None:
        self.value = value
        self.delay = delay
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        number = self.calls
        await trio.sleep(self.delay)
        if self.error is not None:
            raise StatusUnavailable(self.error)
        return f"{self.value}-{number}"


# --- StatusCache ----------------------------------------------------------------------------------------


async def test_concurrent_gets_share_one_fetch(autojump_clock: trio.testing.MockClock) -> None:
    cache = StatusCache(ttl=5.0, max_entries=10)
    fetch = CountingFetch()
    results: list[str] = []

    async def get() -> None:
        results.append(await cache.get(("lobby", 765), fetch))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(get)
    assert fetch.calls == 1
    assert results == ["status-1"] * 20
    assert len(cache) == 1


async def test_answer_is_fresh_for_ttl_then_fetched_again(autojump_clock: trio.testing.MockClock) -> None:
    cache = StatusCache(ttl=5.0, max_entries=10)
    fetch = CountingFetch(delay=0.0)
    assert await cache.get("k", fetch) == "status-1"
    await trio.sleep(4.9)
    assert await cache.get("k", fetch) == "status-1"
    assert fetch.calls == 1
    await trio.sleep(0.2)  # 5.1 s after it was stored
    assert await cache.get("k", fetch) == "status-2"
    assert fetch.calls == 2


async def test_keys_are_separate(autojump_clock: trio.testing.MockClock) -> None:
    cache = StatusCache(ttl=5.0, max_entries=10)
    fetch = CountingFetch()
    results: dict[tuple[str, int], str] = {}

    async def get(key: tuple[str, int]) -> None:
        results[key] = await cache.get(key, fetch)

    async with trio.open_nursery() as nursery:
        for key in [("lobby", 47), ("lobby", 765), ("survival", 765)]:
            nursery.start_soon(get, key)
    assert fetch.calls == 3
    assert sorted(results.values()) == ["status-1", "status-2", "status-3"]
    assert await cache.get(("lobby", 47), fetch) == results[("lobby", 47)]
    assert fetch.calls == 3


async def test_failure_reaches_every_waiter_and_is_not_cached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache = StatusCache(ttl=5.0, max_entries=10)
    fetch = CountingFetch(error="connection refused")
    errors: list[str] = []

    async def get() -> None:
        with pytest.raises(StatusUnavailable) as caught:
            await cache.get("k", fetch)
        errors.append(str(caught.value))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(get)
    assert fetch.calls == 1
    assert errors == ["connection refused"] * 5
    assert len(cache) == 0
    # The next ask goes to the backend again, and a success then is cached.
    fetch.error = None
    assert await cache.get("k", fetch) == "status-2"
    assert await cache.get("k", fetch) == "status-2"


async def test_waiters_are_released_when_the_fetching_task_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache = StatusCache(ttl=5.0, max_entries=10)
    fetch = CountingFetch(delay=10.0)
    outcome: list[str] = []

    async def leader(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await cache.get("k", fetch)

    async def waiter() -> None:
        with pytest.raises(StatusUnavailable):
            await cache.get("k", fetch)
        outcome.append("released")

    async with trio.open_nursery() as nursery:
        scope = await nursery.start(leader)
        nursery.start_soon(waiter)
        await trio.sleep(1.0)
        scope.cancel()
    assert outcome == ["released"]
    assert fetch.calls == 1
    assert await cache.get("k", CountingFetch(value="fresh", delay=0.0)) == "fresh-1"


async def test_max_entries_evicts_the_oldest(autojump_clock: trio.testing.MockClock) -> None:
    cache = StatusCache(ttl=60.0, max_entries=2)
    fetch = CountingFetch(delay=0.0)
    for key in ("a", "b", "c"):
        await cache.get(key, fetch)
        assert len(cache) <= 2
    assert len(cache) == 2
    assert fetch.calls == 3
    assert await cache.get("c", fetch) == "status-3"  # still cached
    assert await cache.get("b", fetch) == "status-2"  # still cached
    assert fetch.calls == 3
    assert await cache.get("a", fetch) == "status-4"  # was evicted; now "b" is the oldest and goes
    assert fetch.calls == 4
    assert await cache.get("b", fetch) == "status-5"
    assert len(cache) == 2


@pytest.mark.parametrize(("ttl", "max_entries"), [(0.0, 10), (5.0, 0)])
async def test_zero_ttl_or_size_turns_caching_off_but_still_shares_flights(
    autojump_clock: trio.testing.MockClock, ttl: float, max_entries: int
) -> None:
    cache = StatusCache(ttl=ttl, max_entries=max_entries)
    fetch = CountingFetch()
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(cache.get, "k", fetch)
    assert fetch.calls == 1
    assert len(cache) == 0
    await cache.get("k", fetch)
    assert fetch.calls == 2


async def test_clear_forgets_answers(autojump_clock: trio.testing.MockClock) -> None:
    cache = StatusCache(ttl=60.0, max_entries=10)
    fetch = CountingFetch(delay=0.0)
    await cache.get("k", fetch)
    cache.clear()
    assert len(cache) == 0
    assert await cache.get("k", fetch) == "status-2"


# --- MOTDs made by the proxy ---------------------------------------------------------------------------


def test_pick_motd_takes_the_first_present_state() -> None:
    offline, unreachable = Motd(text="offline"), Motd(text="unreachable")
    assert pick_motd({"offline": offline, "unreachable": unreachable}, UNREACHABLE_STATES) is unreachable
    assert pick_motd({"offline": offline}, UNREACHABLE_STATES) is offline
    assert pick_motd({"online": Motd(text="up")}, UNREACHABLE_STATES) is None
    assert pick_motd({"unreachable": unreachable, "offline": offline}, DEFAULT_MOTD_STATES) is offline
    assert pick_motd({}, DEFAULT_MOTD_STATES) is None


@pytest.mark.parametrize("protocol", [5, 47, 769])
def test_builtin_proxy_status_echoes_the_protocol(protocol: int) -> None:
    status = json.loads(proxy_status_json(None, BUILTIN_UNREACHABLE_TEXT, protocol))
    assert status == {
        "version": {"name": PROXY_VERSION_NAME, "protocol": protocol},
        "players": {"max": 0, "online": 0},
        "description": {"text": "Server is unreachable"},
    }
    assert BUILTIN_UNKNOWN_TEXT == "Unknown server: check the address"


def test_proxy_status_uses_every_motd_field() -> None:
    motd = Motd(text="§cMaintenance", favicon=FAVICON, version_name="Maint", max_players=100)
    status = json.loads(proxy_status_json(motd, BUILTIN_UNREACHABLE_TEXT, 340))
    assert status == {
        "version": {"name": "Maint", "protocol": 340},
        "players": {"max": 100, "online": 0},
        "description": {"text": "§cMaintenance"},
        "favicon": FAVICON,
    }


def test_proxy_status_keeps_an_empty_text_and_falls_back_only_when_absent() -> None:
    assert json.loads(proxy_status_json(Motd(text=""), "fallback", 47))["description"] == {"text": ""}
    assert json.loads(proxy_status_json(Motd(max_players=3), "fallback", 47))["description"] == {
        "text": "fallback"
    }


# --- [motd.online] over the backend's status ----------------------------------------------------------

BACKEND = (
    '{"version":{"name":"Paper 1.20.4","protocol":765},'
    '"players":{"max":50,"online":7,"sample":[{"name":"Alex","id":"00000000-0000-0000-0000-000000000001"}]},'
    '"description":{"text":"Backend MOTD"},"forgeData":{"fmlNetworkVersion":3,"mods":[]}}'
)


def test_without_a_table_the_backend_text_is_returned_exactly() -> None:
    odd = '{ "description" : "x",\n  "players": {"online": 1, "max": 2}, "version": {"protocol": 47} }  '
    assert apply_online_motd(odd, None) == odd
    assert apply_online_motd(BACKEND, None) == BACKEND


def test_overlay_replaces_the_given_fields_and_keeps_counts_and_the_rest() -> None:
    motd = Motd(text="Welcome to the network", favicon=FAVICON, version_name="Network 1.20", max_players=100)
    status = json.loads(apply_online_motd(BACKEND, motd))
    backend = json.loads(BACKEND)
    assert status["description"] == {"text": "Welcome to the network"}
    assert status["favicon"] == FAVICON
    assert status["version"] == {"name": "Network 1.20", "protocol": 765}
    assert status["players"] == {**backend["players"], "max": 100}  # online and sample stay the backend's
    assert status["forgeData"] == backend["forgeData"]


def test_overlay_with_only_a_text_touches_nothing_else() -> None:
    status = json.loads(apply_online_motd(BACKEND, Motd(text="Hi")))
    assert status == {**json.loads(BACKEND), "description": {"text": "Hi"}}


def test_overlay_fills_missing_version_and_players_tables() -> None:
    status = json.loads(apply_online_motd('{"description": "x"}', Motd(version_name="V", max_players=9)))
    assert status["version"] == {"name": "V"}
    assert status["players"] == {"online": 0, "max": 9}


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"a string"', ""])
def test_overlay_leaves_unreadable_json_as_it_came(text: str) -> None:
    assert apply_online_motd(text, Motd(text="overlay")) == text


# --- what pre-1.7 clients see --------------------------------------------------------------------------


def test_legacy_view_of_a_full_status() -> None:
    status = status_text(
        description={"text": "Hello", "color": "gold", "extra": [{"text": " world", "bold": True}]},
    )
    assert legacy_view(status) == LegacyView(
        motd="§6Hello§l world", online=7, max_players=50, version_name="Paper 1.20.4", protocol=765
    )


def test_legacy_view_puts_a_two_line_motd_on_one_line() -> None:
    assert legacy_view(status_text(description="§aLine one\n§bLine two")).motd == "§aLine one §bLine two"


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "{}",
        '{"players": "many", "version": 5}',
        '{"players": {"online": true, "max": "20"}, "version": {"protocol": "765"}}',
    ],
)
def test_legacy_view_tolerates_missing_or_odd_fields(text: str) -> None:
    assert legacy_view(text) == LegacyView(motd="", online=0, max_players=0, version_name="", protocol=None)


def test_legacy_view_of_a_proxy_motd_carries_the_echoed_protocol() -> None:
    view = legacy_view(proxy_status_json(Motd(text="Down", max_players=20), BUILTIN_UNREACHABLE_TEXT, 78))
    assert view == LegacyView(motd="Down", online=0, max_players=20, version_name="infrarust", protocol=78)


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        ("plain §cred", "plain §cred"),
        ({"text": "x"}, "x"),
        ({"text": "x", "color": "red", "bold": True, "italic": True}, "§c§l§ox"),
        (
            {"text": "", "obfuscated": True, "strikethrough": True, "underlined": True, "color": "dark_blue"},
            "§1§k§m§n",
        ),
        ({"text": "x", "bold": False, "color": "#ff0000"}, "x"),  # hex colours have no legacy code
        ({"translate": "menu.title"}, "menu.title"),
        (["a", {"text": "b", "color": "green"}, ["c"]], "a§abc"),
        ({"text": "A", "extra": ["B", {"text": "C", "color": "white"}]}, "AB§fC"),
        (42, ""),
        (None, ""),
    ],
)
def test_component_to_legacy(component: Any, expected: str) -> None:
    assert component_to_legacy(component) == expected


def status_text(description: Any) -> str:
    backend = json.loads(BACKEND)
    backend["description"] = description
    return json.dumps(backend)


async def test_lookup_says_whether_the_answer_was_stored(autojump_clock: trio.testing.MockClock) -> None:
    cache = StatusCache(ttl=5.0, max_entries=10)
    fetch = CountingFetch()
    results: list[tuple[str, bool]] = []

    async def ask() -> None:
        results.append(await cache.lookup("key", fetch))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        nursery.start_soon(ask)  # shares the first one's exchange: fresh from the backend, not stored
    assert results == [("status-1", False), ("status-1", False)]
    assert await cache.lookup("key", fetch) == ("status-1", True)
    await trio.sleep(6.0)
    assert await cache.lookup("key", fetch) == ("status-2", False)


# --- the answer-source mark -----------------------------------------------------------------------------

MARK = '"infrarust":{"source":"cache"}'


@pytest.mark.parametrize(
    ("text", "marked"),
    [
        ('{"a":1}', "{" + MARK + ',"a":1}'),
        ('  {\n "a" : 1 }\n', "  {" + MARK + ',\n "a" : 1 }\n'),
        ("{}", "{" + MARK + "}"),
        ("{ \n}", "{" + MARK + " \n}"),
    ],
)
def test_mark_keeps_every_other_byte(text: str, marked: str) -> None:
    assert mark_source(text, "cache") == marked
    assert json.loads(marked) == {"infrarust": {"source": "cache"}, **json.loads(text)}


def test_mark_replaces_a_mark_already_there() -> None:
    inner = mark_source('{"description":"behind another infrarust"}', "unreachable")
    outer = json.loads(mark_source(inner, "backend"))
    assert outer == {"infrarust": {"source": "backend"}, "description": "behind another infrarust"}
    assert mark_source(inner, "backend").count('"infrarust"') == 1


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "", "not json", '{"infrarust": broken'])
def test_mark_leaves_what_is_not_a_json_object(text: str) -> None:
    assert mark_source(text, "backend") == text


def test_proxy_motd_is_marked_once_despite_its_version_name() -> None:
    text = proxy_status_json(None, BUILTIN_UNKNOWN_TEXT, 765)  # its version name is "infrarust"
    status = json.loads(mark_source(text, "unknown_domain"))
    assert status["infrarust"] == {"source": "unknown_domain"}
    assert status["version"]["name"] == PROXY_VERSION_NAME


@pytest.mark.parametrize("source", ANSWER_SOURCES)
def test_take_source_reads_and_removes_the_mark(source: AnswerSource) -> None:
    status = json.loads(mark_source('{"description":"x"}', source))
    assert take_source(status) == source
    assert status == {"description": "x"}


@pytest.mark.parametrize("mark", [None, "backend", {"source": "elsewhere"}, {"origin": "cache"}])
def test_take_source_without_a_known_mark_is_none(mark: object) -> None:
    status: dict[str, object] = {"description": "x"}
    if mark is not None:
        status["infrarust"] = mark
    assert take_source(status) is None
    assert status == {"description": "x"}
