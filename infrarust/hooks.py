"""Hooks: an embedding program decides where a player goes, or that they go nowhere, and which of a
player's commands reach the backend.

``proxy.on_pre_connect(fn)`` registers ``async def fn(connection: PreConnect) -> None | Deny | Redirect``.
Hooks run in registration order for every login and server-list connection, after the preamble and the
router and before the backend is connected, until one returns a decision. A hook that raises or runs past
``hook_timeout`` is logged and counts as ``None``: a buggy hook never takes the proxy down or holds a player.
A hook that cannot wait (:func:`can_wait`: an ``async def`` with nothing to await) runs without that
deadline's cancel scope, which could never cut it.

``proxy.on_command(fn)`` registers ``fn(player, command) -> None | CancelCommand`` (a plain or an async
function) for the commands players of intercepted sessions send to the backend. They run the same way,
under the same ``hook_timeout`` and with the same policy: a hook that fails lets the command through.
"""

from __future__ import annotations

import dis
import inspect
import types
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import trio
from attrs import frozen

from infrarust import logs
from infrarust.config import ServerConfig
from infrarust.protocol import Handshake, NextState

if TYPE_CHECKING:
    from infrarust.player import Player

log = logs.get_logger(__name__)


@frozen
class Deny:
    """Refuse the connection: a login is told ``message`` (Login Disconnect); a status ping is closed."""

    message: str = "You are not allowed to join this server."


@frozen
class Redirect:
    """Send the connection to ``server``: a server name from the configuration, or a
    :class:`~infrarust.ServerConfig` built in code. The handshake is rewritten as that server's
    ``domain_rewrite`` says."""

    server: str | ServerConfig


Decision = Deny | Redirect | None
PreConnectHook = Callable[["PreConnect"], Awaitable[Decision]]


@frozen
class PreConnect:
    """A connection as seen before connecting: what a hook decides on.

    ``client`` is the client's (host, port) as given by a trusted PROXY header, else the peer's (None
    when the socket was already gone); ``server`` the server the router chose (None for an unknown domain).
    ``name`` and ``uuid`` come from the login start when the client is logging in and it could be read.
    """

    client: tuple[str, int] | None
    handshake: Handshake
    server: ServerConfig | None
    name: str | None = None
    uuid: uuid.UUID | None = None
    legacy: bool = False

    @property
    def host(self) -> str:
        """The host name the client typed, as its handshake carries it (Forge / TCPShield suffixes too)."""
        return self.handshake.host

    @property
    def protocol_version(self) -> int:
        """The client's protocol version (0 when a legacy client did not say)."""
        return self.handshake.protocol_version

    @property
    def is_status(self) -> bool:
        """True for a server-list ping, False for a login."""
        return self.handshake.next_state is NextState.STATUS


_Hook = TypeVar("_Hook", bound=Callable[..., object])


class HookHandle:
    """Returned by ``on_pre_connect`` and ``on_command``: :meth:`remove` unregisters the hook (idempotent)."""

    def __init__(self, hooks: _Registry[Any], fn: Any) -> None:
        self._hooks = hooks
        self._fn = fn

    def remove(self) -> None:
        """Stop running this hook for new connections (or commands)."""
        self._hooks.remove(self._fn)


class _Registry(Generic[_Hook]):
    """Hooks of one kind, in registration order (a tuple: a run iterates a snapshot).

    Each hook is kept with whether it needs ``hook_timeout``'s deadline (see :func:`can_wait`).
    """

    def __init__(self) -> None:
        self._hooks: tuple[tuple[_Hook, bool], ...] = ()

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def add(self, fn: _Hook) -> HookHandle:
        """Register ``fn`` after those already registered."""
        self._hooks = (*self._hooks, (fn, can_wait(fn)))
        return HookHandle(self, fn)

    def remove(self, fn: _Hook) -> None:
        """Unregister ``fn`` (nothing happens if it is not registered)."""
        self._hooks = tuple(entry for entry in self._hooks if entry[0] is not fn)


# What a coroutine's code holds where it can suspend (await, async for, async with), in 3.11 to 3.13;
# YIELD_VALUE is in every one of them, the rest are there in case a later Python spells a suspension
# without it.
_SUSPENDS = frozenset(
    {"YIELD_VALUE", "SEND", "GET_AWAITABLE", "GET_AITER", "GET_ANEXT", "BEFORE_ASYNC_WITH", "END_ASYNC_FOR"}
)


def can_wait(fn: Callable[..., object]) -> bool:
    """Whether a call of hook ``fn`` may wait, and so needs ``hook_timeout``'s deadline around it.

    False only for an ``async def`` (a function or a bound method) with no ``await``, ``async for`` or
    ``async with`` in its body: its coroutine runs to its end at once, so a deadline could never cut it,
    and the proxy saves the cancel scope (~7 µs per connection). Anything else (a plain function, which
    may return an awaitable; a callable object; a ``functools.partial``) gets the deadline.
    """
    function = getattr(fn, "__func__", fn)  # a bound method runs its function's code
    code = getattr(function, "__code__", None)
    if not isinstance(code, types.CodeType) or not code.co_flags & inspect.CO_COROUTINE:
        return True
    return any(instruction.opname in _SUSPENDS for instruction in dis.get_instructions(code))


class _Unbounded:
    """Stands in for the deadline scope around a hook that cannot wait."""

    cancelled_caught = False

    def __enter__(self) -> _Unbounded:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_UNBOUNDED: Final = _Unbounded()


class Hooks(_Registry[PreConnectHook]):
    """The registered pre-connect hooks, in order."""

    async def decide(self, connection: PreConnect, timeout: float) -> Decision:  # noqa: ASYNC109
        """Run the hooks in order until one decides; failures and timeouts count as ``None``."""
        for hook, waits in self._hooks:  # a snapshot: hooks added meanwhile run from the next connection on
            decision: Decision = None
            # A hook's first step cannot run outside the deadline and get one later: a hook that opens a
            # cancel scope before it first waits (trio.sleep does) would leave the scope stack crossed. A
            # hook that cannot wait at all needs no deadline.
            scope = trio.CancelScope(deadline=trio.current_time() + timeout) if waits else _UNBOUNDED
            with scope:
                try:
                    decision = await hook(connection)
                except Exception as exc:
                    log.error(
                        "pre-connect hook failed",
                        hook=_name(hook),
                        client=_client(connection),
                        error=repr(exc),
                    )
                    continue
            if scope.cancelled_caught:
                log.error(
                    "pre-connect hook timed out",
                    hook=_name(hook),
                    client=_client(connection),
                    after=f"{timeout:g}s",
                )
                continue
            if decision is None:
                continue
            if isinstance(decision, Deny | Redirect):
                return decision
            log.error(
                "pre-connect hook returned something else than None, Deny or Redirect",
                hook=_name(hook),
                returned=repr(decision),
            )
        return None


@frozen
class CancelCommand:
    """Keep a player's command from the backend. The player is shown ``message`` (a text, § codes or a
    JSON component) when there is one, and nothing otherwise; the proxy logs the cancellation."""

    message: str | None = None


CommandDecision = CancelCommand | None
CommandHook = Callable[["Player", str], Awaitable[CommandDecision] | CommandDecision]


class CommandHooks(_Registry[CommandHook]):
    """The registered command hooks, in order.

    A hook gets the :class:`~infrarust.ActivePlayer` and the command as the player typed it, without its
    slash (``"msg Alex hi"``), for every command an intercepted session would send to the backend; the
    proxy's own ``/infrarust`` and ``/ir`` never reach the backend and never reach these hooks. The
    player's packets wait while the hooks run, so nothing the player sends after a command overtakes it.
    """

    async def decide(self, player: Player, command: str, timeout: float) -> CancelCommand | None:  # noqa: ASYNC109
        """Run the hooks in order until one cancels; failures and timeouts let the command through.

        Log lines name the command by its first word only: the rest may be a password (``/login``).
        """
        for hook, waits in self._hooks:  # a snapshot: hooks added meanwhile run from the next command on
            decision: object = None
            scope = trio.move_on_after(timeout) if waits else _UNBOUNDED
            with scope:
                try:
                    decision = hook(player, command)
                    if inspect.isawaitable(decision):
                        decision = await decision
                except Exception as exc:
                    log.error(
                        "command hook failed",
                        hook=_name(hook),
                        player=player.name,
                        command=command_label(command),
                        error=repr(exc),
                    )
                    continue
            if scope.cancelled_caught:
                log.error(
                    "command hook timed out",
                    hook=_name(hook),
                    player=player.name,
                    command=command_label(command),
                    after=f"{timeout:g}s",
                )
                continue
            if decision is None:
                continue
            if isinstance(decision, CancelCommand):
                log.info(
                    "command cancelled by a hook",
                    hook=_name(hook),
                    player=player.name,
                    command=command_label(command),
                    told=decision.message is not None,
                )
                return decision
            log.error(
                "command hook returned something else than None or CancelCommand",
                hook=_name(hook),
                returned=repr(decision),
            )
        return None


def command_label(command: str) -> str:
    """A command's first word: what log lines show of it (arguments may be secrets)."""
    return command.split(" ", 1)[0]


def _name(hook: Callable[..., object]) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)


def _client(connection: PreConnect) -> str:
    if connection.client is None:
        return "-"
    host, port = connection.client
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
