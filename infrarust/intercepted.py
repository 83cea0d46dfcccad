"""Intercepted sessions (``offline``, ``client_only``): the proxy terminates the protocol on both legs.

The pipeline hands a connection here instead of connecting and relaying raw bytes; what comes back is the
same kind of outcome the other stages return, and a session reports itself through the proxy's
``session_started`` / ``session_ended`` like a forwarded one.

One session, in order:

1. the client leg's login: the Login Start the preamble already read; in ``client_only`` the Encryption
   Request, the client's answer, and ``hasJoined`` on the session server (the leg is encrypted from the
   answer on);
2. the backend leg: connect (a PROXY header first if the server sends one), handshake and Login Start as
   an offline client, answering forwarding requests (:class:`~infrarust.intercept.BackendLogin`) and
   relaying the rest of the backend's login to the client until its Login Success;
3. the relay: one task per direction, each parsing packets (:class:`~infrarust.intercept.PlayInterceptor`
   decides what is looked at) and re-framing them for the other leg; unknown packets pass through opaque.

Everything written to the client goes through one lock, so the relay and an embedding program's
:meth:`ActivePlayer.send_message` never interleave frames (or the cipher stream).
"""

from __future__ import annotations

import contextlib
import uuid as uuid_module
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from infrarust import logs
from infrarust.auth import (
    FAILED_TO_VERIFY,
    AuthenticationError,
    GameProfile,
    ServerKey,
    SessionServer,
    new_verify_token,
    nonce_signature_valid,
    offline_uuid,
    server_id_hash,
    tokens_match,
)
from infrarust.backend import backend_handshake, close, connect_backend
from infrarust.config import ForwardingMode, ProxyConfig, ProxyMode, ServerConfig
from infrarust.connection import Connection, Failed, Outcome, Refusal
from infrarust.events import PlayerChat, PlayerCommand
from infrarust.intercept import BackendLogin, ClientVerdict, PlayInterceptor, RefuseLogin, Reply
from infrarust.player import Player, PlayerNotActiveError, _Done
from infrarust.protocol import (
    EncryptionRequest,
    InboundPacket,
    LegacyLogin,
    LoginStart,
    MinecraftConnection,
    Outgoing,
    Packet,
    ProtocolError,
    Role,
    State,
    action_bar,
    disconnect_packet,
    encode_encryption_request,
    encode_proxy_v2,
    packet_ids,
    parse_encryption_response,
    parse_login_start,
    parse_login_start_key,
    supported_versions_text,
    system_message,
    text_component,
    title_packets,
)
from infrarust.transport import ForwardEndReason, ForwardResult

if TYPE_CHECKING:
    from infrarust.commands import ProxyCommand
    from infrarust.proxy import Proxy

log = logs.get_logger(__name__)

READ_SIZE = 65536
# Vanilla gives a login 30 seconds; the proxy's login (both legs, and the session server) gets as long.
LOGIN_TIMEOUT = 30.0
# What a player is told is bounded: a client that does not read gets nothing after this long.
GOODBYE_TIMEOUT = 2.0
BROADCAST_TIMEOUT = 5.0
SHARED_SECRET_SIZE = 16
DEFAULT_KICK_REASON = "You were disconnected by the proxy."
UNSUPPORTED_VERSION = "This server supports Minecraft {versions} in this mode; please use one of them."

_LOST = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

_server_key: ServerKey | None = None


async def _key() -> ServerKey:
    """The process's RSA key pair, made once (off the event loop: it takes a few milliseconds)."""
    global _server_key
    if _server_key is None:
        key = await trio.to_thread.run_sync(ServerKey)
        if _server_key is None:
            _server_key = key
    return _server_key


class _Disconnecting(_Done):
    """What :meth:`ActivePlayer.disconnect` returns: it acts at once; awaiting it waits for the end."""

    __slots__ = ("_player",)

    def __init__(self, player: Player) -> None:
        self._player = player

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        await self._player.wait_ended()


@attrs.define(eq=False)
class ActivePlayer(Player):
    """A session of an intercepted mode: the proxy speaks the game protocol to the player.

    ``profile`` is who the player is: the session server's profile (UUID, name, skin properties) in
    ``client_only``, the name with its offline UUID in ``offline``; ``verified`` says which. Messages,
    action bars and titles wait until the player is in the play state; once the session has ended they
    do nothing.
    """

    profile: GameProfile = attrs.field(kw_only=True)
    verified: bool = attrs.field(kw_only=True, default=False)
    _session: _Session | None = attrs.field(kw_only=True, default=None, alias="_session")

    @property
    def active(self) -> bool:
        """Always True: the proxy reads and writes this session's packets."""
        return True

    @property
    def uuid(self) -> uuid_module.UUID:
        """The player's UUID (verified in ``client_only``, the offline UUID in ``offline``)."""
        return self.profile.uuid

    def disconnect(self, reason: str | None = None) -> _Disconnecting:
        """End the session with reason ``Shutdown``; the player sees ``reason`` (a text, § codes or a
        JSON component) in the Disconnect screen. Acts at once; ``await`` it to wait for the end."""
        if self._session is not None:
            self._session.goodbye = reason if reason is not None else DEFAULT_KICK_REASON
        self._cut()
        return _Disconnecting(self)

    async def send_message(self, message: str) -> None:
        """Show ``message`` (a text, § codes or a JSON component) in the player's chat, as the server."""
        await self._send([system_message(self.protocol_version, text_component(message))])

    async def send_action_bar(self, text: str) -> None:
        """Show ``text`` above the player's hotbar."""
        await self._send([action_bar(self.protocol_version, text_component(text))])

    async def send_title(
        self,
        title: str,
        subtitle: str | None = None,
        *,
        fade_in: int = 10,
        stay: int = 70,
        fade_out: int = 20,
    ) -> None:
        """Show a title (and subtitle) on the player's screen; the times are in ticks (1/20 s)."""
        packets = title_packets(
            self.protocol_version,
            text_component(title),
            text_component(subtitle) if subtitle is not None else None,
            fade_in,
            stay,
            fade_out,
        )
        await self._send(packets)

    async def _send(self, packets: list[Outgoing]) -> None:
        if self._session is None:
            raise PlayerNotActiveError("the session is not relaying yet")
        await self._session.send_play(packets)


async def serve_intercepted(
    proxy: Proxy, stream: trio.SocketStream, connection: Connection, config: ProxyConfig
) -> Outcome | None:
    """Log the player in, connect and log in to the backend, and relay with parsing until the end."""
    server = connection.server
    handshake = connection.handshake
    assert server is not None and handshake is not None
    protocol = handshake.protocol_version
    if isinstance(connection.event, LegacyLogin) or packet_ids(protocol) is None:
        message = UNSUPPORTED_VERSION.format(versions=supported_versions_text())
        return Refusal("denied", message, {"error": f"unsupported protocol version {protocol}"})
    login = _Login(proxy, stream, connection, config, server, protocol)
    return await login.run()


class _Login:
    """The two legs' logins, then the session."""

    def __init__(
        self,
        proxy: Proxy,
        stream: trio.SocketStream,
        connection: Connection,
        config: ProxyConfig,
        server: ServerConfig,
        protocol: int,
    ) -> None:
        self.proxy = proxy
        self.stream = stream
        self.connection = connection
        self.config = config
        self.server = server
        self.protocol = protocol
        self.client = MinecraftConnection(Role.SERVER, protocol)
        self.encrypted = False  # once encrypted or compressed, the pipeline cannot tell the client
        # Bytes written on each leg during the logins: the session's counts start from them.
        self.to_client = 0
        self.to_backend = 0

    async def run(self) -> Outcome | None:
        try:
            with trio.move_on_after(LOGIN_TIMEOUT) as deadline:
                identity = await self._client_login()
            if deadline.cancelled_caught:
                return await self._refuse("handshake_timeout", None, error="the client's login took too long")
        except _Refused as refused:
            return await self._refuse(refused.reason, refused.message, **refused.detail)
        except ProtocolError as exc:
            return Failed("bad_packet", f"bad login packet from the client: {exc}")
        except EOFError:
            return Failed("connection_lost", "the client closed during its login")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            return Failed("connection_lost", str(exc) or type(exc).__name__)
        return await self._backend(identity)

    # --- the client leg ----------------------------------------------------------------------------

    async def _client_login(self) -> tuple[GameProfile, bool]:
        self.client.receive_data(self.connection.rest)
        start = await _read(self.stream, self.client)
        if start.name != "login_start":
            raise ProtocolError(f"expected Login Start, got packet {start.packet_id:#x}")
        login = parse_login_start(Packet(start.packet_id, start.body), self.protocol)
        if login is None:
            raise ProtocolError("unreadable Login Start")
        self.connection.login = login
        if self.server.proxy_mode is ProxyMode.CLIENT_ONLY:
            return await self._authenticate(login, start.body), True
        return GameProfile(offline_uuid(login.name), login.name), False

    async def _authenticate(self, login: LoginStart, start_body: bytes) -> GameProfile:
        key = await _key()
        token = new_verify_token()
        request = EncryptionRequest("", key.public_der, token)
        await self._to_client([("encryption_request", encode_encryption_request(self.protocol, request))])
        answer = await _read(self.stream, self.client)
        if answer.name != "encryption_response":
            raise ProtocolError(f"expected Encryption Response, got packet {answer.packet_id:#x}")
        response = parse_encryption_response(self.protocol, answer.body)
        try:
            secret = key.decrypt(response.shared_secret)
            if len(secret) != SHARED_SECRET_SIZE:
                raise AuthenticationError("the shared secret is not 16 bytes")
            if response.verify_token is not None:
                matched = tokens_match(token, key.decrypt(response.verify_token))
            else:
                player_key = parse_login_start_key(self.protocol, start_body)
                matched = (
                    player_key is not None
                    and response.salt is not None
                    and response.signature is not None
                    and nonce_signature_valid(player_key.public_key, token, response.salt, response.signature)
                )
            if not matched:
                raise AuthenticationError("wrong verify token")
        except AuthenticationError as exc:
            raise _Refused("denied", FAILED_TO_VERIFY, error=str(exc)) from None
        self.client.enable_encryption(secret)
        self.encrypted = True
        server_hash = server_id_hash("", secret, key.public_der)
        auth = self.config.auth
        ip = self.connection.ip if auth.prevent_proxy_connections else None
        session = SessionServer(auth.session_server)
        try:
            return await session.has_joined(login.name, server_hash, ip)
        except AuthenticationError as exc:
            raise _Refused("denied", FAILED_TO_VERIFY, error=str(exc)) from None
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(GOODBYE_TIMEOUT):
                await session.aclose()

    async def _to_client(self, packets: Iterable[Outgoing]) -> None:
        data = b"".join(self.client.send(*packet) for packet in packets)
        await self.stream.send_all(data)
        self.to_client += len(data)

    async def _refuse(self, reason: Any, message: str | None, **detail: object) -> Refusal:
        """A refusal; told here when the client leg is already encrypted or compressed (the finish stage
        writes plain frames), else by the finish stage."""
        if message is None or not (self.encrypted or self.client.compression_threshold >= 0):
            return Refusal(reason, message, detail)
        with (
            trio.move_on_after(GOODBYE_TIMEOUT),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError, ProtocolError),
        ):
            state = self.client.outbound_state
            await self._to_client([disconnect_packet(self.protocol, state, text_component(message))])
        return Refusal(reason, message, detail, told=True)

    # --- the backend leg ---------------------------------------------------------------------------

    async def _backend(self, identity: tuple[GameProfile, bool]) -> Outcome | None:
        profile, verified = identity
        server, config = self.server, self.config
        mode = server.forwarding_mode or config.forwarding.mode
        secret = b""
        if mode in (ForwardingMode.VELOCITY, ForwardingMode.BUNGEEGUARD):
            try:
                secret = await trio.to_thread.run_sync(_read_secret, config.forwarding.secret_file)
            except OSError as exc:
                log.error(
                    "forwarding secret unreadable",
                    server=server.name,
                    file=config.forwarding.secret_file or "-",
                    error=exc.strerror or str(exc),
                )
                return await self._refuse("denied", server.disconnect_message, error="no forwarding secret")
        started = trio.current_time()
        connected = await connect_backend(server, config.connect_timeout, config.keepalive)
        if connected is None:
            return await self._refuse("backend_unreachable", server.disconnect_message)
        self.proxy.metrics.backend_connect_time(server.name, trio.current_time() - started)
        backend_stream, address = connected
        try:
            backend_login = BackendLogin(
                self.protocol,
                profile,
                self.connection.ip,
                mode=mode.value,
                secret=secret,
                bungeeguard_token=secret.decode("utf-8", "replace") if secret else None,
            )
            backend = MinecraftConnection(Role.CLIENT, self.protocol)
            try:
                with trio.move_on_after(LOGIN_TIMEOUT) as deadline:
                    refused = await self._backend_login(backend_stream, backend, backend_login, address)
                if deadline.cancelled_caught:
                    refused = _Refused(
                        "denied", server.disconnect_message, error="the backend's login took too long"
                    )
            except (
                ProtocolError,
                EOFError,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                OSError,
            ) as exc:
                error = f"the backend's login failed: {exc or type(exc).__name__}"
                refused = _Refused("denied", server.disconnect_message, error=error)
            if refused is not None:
                return await self._refuse(refused.reason, refused.message, **refused.detail)
            player = ActivePlayer(
                server,
                self.connection.client_text,
                self.connection.handshake,  # type: ignore[arg-type]
                LoginStart(profile.name, profile.uuid),
                trio.current_time(),
                backend_address=str(address),
                profile=profile,
                verified=verified,
            )
            player.traffic.client_to_backend = self.to_backend
            player.traffic.backend_to_client = self.to_client
            session = _Session(self, backend_stream, backend, player)
            await session.run()
        finally:
            close(backend_stream)
        return None

    async def _backend_login(
        self, stream: trio.SocketStream, backend: MinecraftConnection, login: BackendLogin, address: Any
    ) -> _Refused | None:
        """Log in to the backend, relaying its login to the client; None once Login Success went by."""
        shown = backend_handshake(self.connection.handshake, self.server, address)  # type: ignore[arg-type]
        first = _proxy_header(self.server, self.connection, self.stream)
        first += login.handshake(shown.host, shown.port) + backend.send(*login.login_start())
        await stream.send_all(first)
        self.to_backend += len(first)
        while True:
            packet = await _read(stream, backend)
            step = login.backend_packet(packet)
            if isinstance(step, Reply):
                reply = backend.send(*step.packet)
                await stream.send_all(reply)
                self.to_backend += len(reply)
            elif isinstance(step, RefuseLogin):
                return _Refused("denied", step.reason, error=step.reason)
            else:
                data = self.client.relay(packet)
                await self.stream.send_all(data)
                self.to_client += len(data)
                if packet.name == "disconnect":
                    return _Refused("denied", None, error="the backend refused the login")
                if packet.name == "login_success":
                    return None


class _Refused(Exception):
    def __init__(self, reason: Any, message: str | None, **detail: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail


class _Session:
    """The relay of a logged-in player, both directions, until one side ends it."""

    def __init__(
        self,
        login: _Login,
        backend_stream: trio.SocketStream,
        backend: MinecraftConnection,
        player: ActivePlayer,
    ) -> None:
        self.proxy = login.proxy
        self.connection = login.connection
        self.config = login.config
        self.client_stream = login.stream
        self.client = login.client
        self.backend_stream = backend_stream
        self.backend = backend
        self.player = player
        permissions = self.config.permissions
        self.admin = player.verified and _is_admin(player.profile, permissions.admins)
        self.interceptor = PlayInterceptor(
            login.protocol, handle_commands=self.admin or permissions.player_commands
        )
        self.lock = trio.Lock()  # one writer on the client leg
        self.in_play = trio.Event()
        self.finished = False
        self.goodbye: str | None = None  # what disconnect(reason) shows the player
        self.end: tuple[ForwardEndReason, str | None] | None = None
        self.nursery: trio.Nursery | None = None
        self.read_timeout = login.server.timeouts.read
        self.command_hooks = login.proxy.command_hooks
        self.held: tuple[InboundPacket, ClientVerdict] | None = None  # a command the hooks decide on
        player._session = self

    async def run(self) -> None:
        proxy, player = self.proxy, self.player
        traffic = player.traffic
        self._follow_play()  # before 1.20.2 the Login Success relayed already put the client in play
        proxy.session_started(player)
        result: ForwardResult | None = None
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                player._cut.attach(nursery.cancel_scope)
                nursery.start_soon(self._client_to_backend)
                nursery.start_soon(self._backend_to_client)
            if self.end is None:  # disconnect() or a drain cut the session
                await self._say_goodbye()
                reason, error = ForwardEndReason.SHUTDOWN, None
            else:
                reason, error = self.end
            result = ForwardResult(traffic.client_to_backend, traffic.backend_to_client, reason, error)
        finally:
            self.finished = True
            self.in_play.set()  # wakes senders waiting for the play state: they find the session over
            if result is None:  # cancelled from outside: the proxy stops at once
                result = ForwardResult(
                    traffic.client_to_backend, traffic.backend_to_client, ForwardEndReason.SHUTDOWN
                )
            proxy.session_ended(self.connection, player, result)

    def _stop(self, reason: ForwardEndReason, error: str | None = None) -> None:
        if self.end is None:
            self.end = (reason, error)
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    async def _receive(self, stream: trio.SocketStream) -> bytes:
        if self.read_timeout is None:
            return await stream.receive_some(READ_SIZE)
        with trio.fail_after(self.read_timeout):
            return await stream.receive_some(READ_SIZE)

    # --- client -> backend -------------------------------------------------------------------------

    async def _client_to_backend(self) -> None:
        client = self.client
        try:
            while True:
                try:
                    data = await self._receive(self.client_stream)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    data = b""
                if not data:
                    self._stop(ForwardEndReason.CLIENT_CLOSED)
                    return
                client.receive_data(data)
                out = bytearray()
                while (packet := client.next_packet()) is not None:
                    piece = self._from_client(packet)
                    if piece is None:  # a command for the hooks: what came before it goes first
                        if out and not await self._to_backend(out):
                            return
                        out = bytearray(await self._decide_held())
                    else:
                        out += piece
                if out and not await self._to_backend(out):
                    return
        except ProtocolError as exc:
            self._stop(ForwardEndReason.ERROR, f"bad packet from the client: {exc}")
        except trio.TooSlowError:
            self._stop(ForwardEndReason.ERROR, f"the client sent nothing for {self.read_timeout:g}s")

    async def _to_backend(self, data: bytearray) -> bool:
        try:
            await self.backend_stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._stop(ForwardEndReason.BACKEND_CLOSED)
            return False
        self.player.traffic.client_to_backend += len(data)
        return True

    def _from_client(self, packet: InboundPacket) -> bytes | None:
        """The bytes for the backend that stand for one client packet (publishing what it says); None
        for a command the command hooks must decide on first (held in ``self.held``)."""
        verdict = self.interceptor.client_packet(packet)
        proxy, player = self.proxy, self.player
        if verdict.chat is not None:
            proxy.publish(PlayerChat(player, verdict.chat))
        command = verdict.proxy_command
        if command is not None:
            proxy.publish(PlayerCommand(player, _command_text(command)))
            assert self.nursery is not None
            self.nursery.start_soon(self._answer, command)
        elif verdict.command is not None:
            proxy.publish(PlayerCommand(player, verdict.command))
            if self.command_hooks:
                self.held = (packet, verdict)
                return None
        if verdict.forward:
            return self.backend.relay(packet)
        if verdict.acknowledgement is not None:
            return self.backend.send(*verdict.acknowledgement)
        return b""

    async def _decide_held(self) -> bytes:
        """Run the command hooks on the held command: its bytes for the backend, or what stands for it
        when a hook cancels it (the acknowledgement signed chat needs, else nothing)."""
        assert self.held is not None and self.nursery is not None
        packet, verdict = self.held
        self.held = None
        assert verdict.command is not None
        cancel = await self.command_hooks.decide(self.player, verdict.command, self.config.hook_timeout)
        if cancel is None:
            return self.backend.relay(packet)
        if cancel.message is not None:
            # Not awaited here: the message waits for the play state, which may need this very loop.
            self.nursery.start_soon(self._tell, cancel.message)
        if verdict.acknowledgement is not None:
            return self.backend.send(*verdict.acknowledgement)
        return b""

    async def _tell(self, message: str) -> None:
        with contextlib.suppress(PlayerNotActiveError):
            await self.player.send_message(message)

    async def _answer(self, command: ProxyCommand) -> None:
        from infrarust._proxycommand import answer

        with contextlib.suppress(PlayerNotActiveError):
            await answer(self.proxy, self.player, command, admin=self.admin)

    # --- backend -> client -------------------------------------------------------------------------

    async def _backend_to_client(self) -> None:
        backend, traffic = self.backend, self.player.traffic
        try:
            while True:
                packets = []
                while (packet := backend.next_packet()) is not None:
                    packets.append(packet)
                if packets:
                    try:
                        async with self.lock:
                            data = b"".join(self._to_client(packet) for packet in packets)
                            await self.client_stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        self._stop(ForwardEndReason.CLIENT_CLOSED)
                        return
                    traffic.backend_to_client += len(data)
                    self._follow_play()
                try:
                    received = await self._receive(self.backend_stream)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    received = b""
                if not received:
                    self._stop(ForwardEndReason.BACKEND_CLOSED)
                    return
                backend.receive_data(received)
        except ProtocolError as exc:
            self._stop(ForwardEndReason.ERROR, f"bad packet from the backend: {exc}")
        except trio.TooSlowError:
            self._stop(ForwardEndReason.ERROR, f"the backend sent nothing for {self.read_timeout:g}s")

    def _to_client(self, packet: InboundPacket) -> bytes:
        replacement = self.interceptor.backend_packet(packet)
        if replacement is not None:
            return self.client.send_id(packet.packet_id, replacement)
        return self.client.relay(packet)

    def _follow_play(self) -> None:
        """Let waiting senders go once the client is in play; hold new ones while it reconfigures."""
        if self.client.outbound_state is State.PLAY:
            self.in_play.set()
        elif self.in_play.is_set():
            self.in_play = trio.Event()

    # --- what the proxy itself tells the player ----------------------------------------------------

    async def send_play(self, packets: list[Outgoing]) -> None:
        """Send play-state packets to the client, waiting for the play state; nothing once ended."""
        while not self.finished:
            await self.in_play.wait()
            async with self.lock:
                if self.finished:
                    return
                if self.client.outbound_state is not State.PLAY:
                    continue
                data = b"".join(self.client.send(*packet) for packet in packets)
                try:
                    await self.client_stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
                self.player.traffic.backend_to_client += len(data)
                return

    async def _say_goodbye(self) -> None:
        """Show the player why the proxy ended the session (bounded: the client may not read)."""
        state = self.client.outbound_state
        if state not in (State.PLAY, State.CONFIGURATION):
            return
        reason = self.goodbye if self.goodbye is not None else DEFAULT_KICK_REASON
        with (
            trio.move_on_after(GOODBYE_TIMEOUT),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError, ProtocolError),
        ):
            async with self.lock:
                packet = disconnect_packet(self.player.protocol_version, state, text_component(reason))
                data = self.client.send(*packet)
                await self.client_stream.send_all(data)
                self.player.traffic.backend_to_client += len(data)


def _is_admin(profile: GameProfile, admins: Iterable[str]) -> bool:
    for admin in admins:
        try:
            if uuid_module.UUID(admin) == profile.uuid:
                return True
        except ValueError:
            if admin.lower() == profile.name.lower():
                return True
    return False


def _command_text(command: ProxyCommand) -> str:
    return " ".join(part for part in (command.label, command.subcommand, command.argument) if part)


def _read_secret(path: str | None) -> bytes:
    """The forwarding secret: the file's text without surrounding whitespace (as Velocity reads it)."""
    if path is None:
        raise OSError("[forwarding] secret_file is not set")
    with open(path, "rb") as file:
        secret = file.read().strip()
    if not secret:
        raise OSError(f"{path} is empty")
    return secret


def _proxy_header(server: ServerConfig, connection: Connection, stream: trio.SocketStream) -> bytes:
    """The PROXY v2 header a server with ``send_proxy_protocol`` gets first, naming the real client."""
    if not server.send_proxy_protocol or connection.client is None:
        return b""
    local = connection.local
    if local is None:
        try:
            name = stream.socket.getsockname()
        except OSError:
            return b""
        local = (name[0], name[1])
    return encode_proxy_v2(connection.client, local)


async def _read(stream: trio.SocketStream, connection: MinecraftConnection) -> InboundPacket:
    """The next packet of a leg during a login; EOFError when the peer closes."""
    while (packet := connection.next_packet()) is None:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise EOFError("closed")
        connection.receive_data(data)
    return packet
