"""The two ends of the intercepted-modes benchmark (bench/intercepted.py): a backend and a client.

``python -m bench._icpeers backend [--threshold N]`` prints ``port N`` and serves until SIGTERM, then
prints its counters as one JSON line. ``python -m bench._icpeers client`` reads one JSON command per line
on stdin and answers each with one JSON line (see :func:`client_main`).

Both speak Minecraft 1.12.2 (protocol 340), where a login goes straight to play (no configuration
phase), through infrarust's own sans-IO codec (``infrarust.protocol``: framing, compression, packet ids).

The backend is an offline-mode server: Handshake, Login Start, Set Compression (``--threshold``, 256 as
vanilla's ``network-compression-threshold``; -1 = off), Login Success, then play. The client logs in
offline, or online when given an account (``client_only``): it answers the Encryption Request with
RSA/PKCS#1 v1.5 from ``cryptography``, ``join``s on the session server stand-in with the server-id hash,
and speaks AES-128-CFB8 from then on. In play both ends use one packet id per direction that infrarust has
no name for in 1.12.2 (serverbound 0x0D, clientbound 0x20), so the proxy relays them unread: the
intercepted modes frame, re-frame (and, on the client leg of ``client_only``, decrypt or encrypt) every
packet but never look inside. The bodies are the benchmark's own (a tag byte, then data), not the
vanilla layouts those ids have: neither end is vanilla. In play:

- ping: the client sends a 64-byte body, the backend echoes it back.
- upload: the client sends a stream of units, each a 34-byte uncompressed "filler" packet and a 32 KiB
  packet of random bytes (compressed when the threshold says so: stored deflate blocks, as incompressible
  data gets), for the given time, then one filler and an END packet carrying the number of units; the
  backend answers with the bytes it counted. download: the same stream the other way.

Neither end reads a bulk stream packet by packet. The receiver counts bytes and looks for the END packet
only where it can be (units x unit size + filler + END), comparing the tail with what END must be: every
bulk frame is built by :func:`bulk_frames` from the same seeded bytes on both ends, so sizes are known.
That keeps the two ends cheap, so the relay is what limits the transfer, even with encryption: AES-CFB8
runs at about 30 MB/s here, as slow on the client as on the proxy. CFB8 is self-synchronising (a byte
decrypts from the previous 16 ciphertext bytes alone), which allows:

- download: the client decrypts only END, from the 16 ciphertext bytes before it, and then continues
  decrypting the stream from its last 16 bytes;
- upload: the client encrypts one cycle of units once and sends it again and again. Each repetition
  decrypts correctly at the proxy except its first 16 bytes, whose register is the cycle's own end
  rather than what preceded it the first time; the cycle starts inside a filler's random body, so those
  bytes are garbage in a packet nobody reads. The stream stays valid Minecraft framing throughout (the
  proxy parses it: a slip would end the session with a protocol error, and the backend's END count
  would be missing).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import signal
import socket
import statistics
import struct
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, NoReturn

from cryptography.hazmat.decrepit.ciphers.modes import CFB8
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms
from cryptography.hazmat.primitives.serialization import load_der_public_key

from infrarust.auth import offline_uuid, server_id_hash
from infrarust.protocol import (
    Direction,
    Handshake,
    HelloReader,
    InboundPacket,
    LoginSuccess,
    MinecraftConnection,
    NextState,
    Packet,
    PacketEncoder,
    ProtocolError,
    Role,
    State,
    encode_encryption_response,
    encode_login_start,
    encode_login_success,
    encode_set_compression,
    packet_ids,
    parse_encryption_request,
    parse_login_start,
)

PROTOCOL = 340  # 1.12.2: Login Success leads straight to play
SERVERBOUND_ID = 0x0D  # Player Position in 1.12.2
CLIENTBOUND_ID = 0x20  # Chunk Data in 1.12.2
DOMAIN = "bench.local"
OFFLINE_NAME = "BenchPlayer"
DEFAULT_THRESHOLD = 256  # vanilla's network-compression-threshold
BULK_PACKET = 32 * 1024  # id + body of a bulk packet
FILLER_FREE = 32  # random bytes at the end of a filler's body: where a repeated cycle starts
PING_SIZE = 64
REPEAT = 8  # units per send call (about 256 KiB)
RECV_SIZE = 1 << 20
IO_TIMEOUT = 30.0  # every socket operation of either end is bounded by this

# Tag bytes: the first byte of every play packet body between the two ends.
PING, UPLOAD, DOWNLOAD, RESULT, FILLER, BULK, END = b"P", b"U", b"D", b"R", b"F", b"B", b"E"


class BenchError(Exception):
    """Something the other end or the relay did that the benchmark did not expect."""


def check_ids() -> None:
    """The ids must stay unnamed for infrarust (or the proxy might read the bodies): fail loudly if not."""
    ids = packet_ids(PROTOCOL)
    assert ids is not None
    for direction, packet_id in (
        (Direction.SERVERBOUND, SERVERBOUND_ID),
        (Direction.CLIENTBOUND, CLIENTBOUND_ID),
    ):
        name = ids.name_of(State.PLAY, direction, packet_id)
        if name is not None:
            raise BenchError(f"infrarust now reads {direction.value} play packet {packet_id:#x} ({name})")


@dataclass(frozen=True)
class BulkFrames:
    """The framed packets of a bulk stream in one direction, identical on both ends."""

    filler: bytes
    bulk: bytes
    end_prefix: bytes  # the END frame without its 8-byte unit count

    @property
    def unit(self) -> int:
        """Bytes of one unit (a filler and a bulk packet)."""
        return len(self.filler) + len(self.bulk)

    @property
    def end_size(self) -> int:
        """Bytes of the END frame."""
        return len(self.end_prefix) + 8

    @property
    def free(self) -> int:
        """Where the filler's random bytes start: a repeated upload cycle begins there."""
        return len(self.filler) - FILLER_FREE

    def end(self, units: int) -> bytes:
        """The END frame for a stream of ``units`` units."""
        return self.end_prefix + struct.pack(">Q", units)

    def stream_size(self, units: int) -> int:
        """Bytes of a whole stream: the units, one filler, END."""
        return units * self.unit + len(self.filler) + self.end_size


@functools.cache
def bulk_frames(threshold: int, packet_id: int) -> BulkFrames:
    """The frames of a bulk stream with compression ``threshold``: seeded bytes, so both ends agree."""
    data = random.Random(f"bench {packet_id}").randbytes(BULK_PACKET + FILLER_FREE)
    encoder = PacketEncoder()
    encoder.set_compression(threshold)
    filler = encoder.encode(packet_id, FILLER + data[:FILLER_FREE])
    bulk = encoder.encode(packet_id, BULK + data[FILLER_FREE : FILLER_FREE + BULK_PACKET - 2])
    end = encoder.encode(packet_id, END + bytes(8))
    # The small packets must go uncompressed (a 0 data length after the one-byte frame length): the
    # upload cycle's garbage bytes land in the filler's body, which must not be inside a zlib stream.
    if threshold >= 0 and (filler[1] != 0 or end[1] != 0):
        raise BenchError(f"threshold {threshold} compresses the small packets: use -1 or >= 64")
    return BulkFrames(filler, bulk, end[:-8])


def cfb8(secret: bytes, iv: bytes) -> Cipher[CFB8]:
    """AES-128-CFB8 as the protocol uses it, with any 16-byte register (the protocol starts from the key)."""
    return Cipher(algorithms.AES(secret), CFB8(iv))


class EndFinder:
    """Counts a bulk stream's bytes and spots its END packet without reading the rest (module doc).

    ``secret``: the stream is encrypted; END is decrypted from the 16 ciphertext bytes before it.
    """

    def __init__(self, frames: BulkFrames, secret: bytes | None = None) -> None:
        self.frames = frames
        self.secret = secret
        self.total = 0
        self.tail = b""  # the last end_size + 16 bytes seen
        self.units: int | None = None  # set once END is found
        self._keep = frames.end_size + 16
        self._first = len(frames.filler) + frames.end_size

    def feed(self, data: bytes | memoryview) -> bool:
        """Add received bytes; True once END has arrived (then nothing more belongs to the stream)."""
        self.total += len(data)
        keep = self._keep
        self.tail = bytes(data[-keep:]) if len(data) >= keep else (self.tail + bytes(data))[-keep:]
        rest = self.total - self._first
        if rest < 0 or rest % self.frames.unit:
            return False
        end_size = self.frames.end_size
        last = self.tail[-end_size:]
        if self.secret is not None:
            last = cfb8(self.secret, self.tail[:16]).decryptor().update(last)
        if not last.startswith(self.frames.end_prefix):
            return False
        units = struct.unpack(">Q", last[-8:])[0]
        if self.frames.stream_size(units) != self.total:
            raise BenchError(f"END says {units} units, but {self.total} bytes arrived")
        self.units = units
        return True


class Wire:
    """The client's AES-CFB8 layer over the codec's plain bytes (off until :meth:`start`)."""

    def __init__(self) -> None:
        self.secret: bytes | None = None
        self._enc: CipherContext | None = None
        self._dec: CipherContext | None = None

    def start(self, secret: bytes) -> None:
        """Encrypt both ways from now on, the register starting from the key (as the protocol does)."""
        self.secret = secret
        self._enc = cfb8(secret, secret).encryptor()
        self._dec = cfb8(secret, secret).decryptor()

    def outgoing(self, data: bytes) -> bytes:
        """The bytes to send for ``data``."""
        return data if self._enc is None else self._enc.update(data)

    def incoming(self, data: bytes) -> bytes:
        """The plain bytes of received ``data``."""
        return data if self._dec is None else self._dec.update(data)

    def resync_out(self, last16: bytes) -> None:
        """Continue encrypting after ciphertext sent by other means, which ended with ``last16``."""
        if self.secret is not None:
            self._enc = cfb8(self.secret, last16).encryptor()

    def resync_in(self, last16: bytes) -> None:
        """Continue decrypting after ciphertext received and not decrypted, which ended with ``last16``."""
        if self.secret is not None:
            self._dec = cfb8(self.secret, last16).decryptor()


def _socket_ready(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(IO_TIMEOUT)


def _receive(sock: socket.socket) -> bytes:
    data = sock.recv(RECV_SIZE)
    if not data:
        raise EOFError("the peer closed the connection")
    return data


def _next(sock: socket.socket, conn: MinecraftConnection, wire: Wire | None = None) -> InboundPacket:
    while (packet := conn.next_packet()) is None:
        data = _receive(sock)
        conn.receive_data(wire.incoming(data) if wire is not None else data)
    return packet


# --- the backend ---------------------------------------------------------------------------------------


class BackendStats:
    """What the backend did, printed as JSON when it stops."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {"logins": 0, "errors": 0, "pings": 0, "uploads": 0, "downloads": 0}
        self.last_error = ""

    def add(self, key: str) -> None:
        """Count one ``key``."""
        with self.lock:
            self.counts[key] += 1

    def error(self, message: str) -> None:
        """Count an error and keep its message."""
        with self.lock:
            self.counts["errors"] += 1
            self.last_error = message[:300]


def backend_session(sock: socket.socket, threshold: int, stats: BackendStats) -> None:
    """One client (or proxy) connection: its login, then play until it closes."""
    try:
        _socket_ready(sock)
        hello = HelloReader()
        handshake = None
        while handshake is None:
            handshake = hello.feed(_receive(sock))
        if not isinstance(handshake, Handshake) or handshake.protocol_version != PROTOCOL:
            raise BenchError(f"expected a protocol {PROTOCOL} handshake, got {handshake!r}")
        if handshake.next_state is not NextState.LOGIN:
            raise BenchError("expected a login")
        conn = MinecraftConnection(Role.SERVER, PROTOCOL)
        conn.receive_data(hello.take_leftover())
        start = _next(sock, conn)
        login = parse_login_start(Packet(start.packet_id, start.body), PROTOCOL)
        if start.name != "login_start" or login is None:
            raise BenchError(f"expected Login Start, got packet {start.packet_id:#x}")
        out = b""
        if threshold >= 0:
            out += conn.send("set_compression", encode_set_compression(threshold))
        success = LoginSuccess(offline_uuid(login.name), login.name, ())
        out += conn.send("login_success", encode_login_success(PROTOCOL, success))
        sock.sendall(out)
        stats.add("logins")
        backend_play(sock, conn, threshold, stats)
    except EOFError:
        pass
    except (BenchError, ProtocolError, OSError, struct.error) as exc:
        stats.error(f"{type(exc).__name__}: {exc}")
    finally:
        sock.close()


def backend_play(sock: socket.socket, conn: MinecraftConnection, threshold: int, stats: BackendStats) -> None:
    """Answer pings, sink uploads, source downloads, until the peer closes (EOFError)."""
    while True:
        packet = _next(sock, conn)
        if packet.packet_id != SERVERBOUND_ID:
            continue  # nothing else is sent by the benchmark's client; a real one would send more
        body = packet.body
        tag = body[:1]
        if tag == PING:
            sock.sendall(conn.encoder.encode(CLIENTBOUND_ID, body))
            stats.add("pings")
        elif tag == UPLOAD:
            finder = EndFinder(bulk_frames(threshold, SERVERBOUND_ID))
            done = finder.feed(conn.decoder.take_leftover())
            buffer = bytearray(RECV_SIZE)
            view = memoryview(buffer)
            while not done:
                n = sock.recv_into(buffer)
                if not n:
                    raise EOFError("closed during an upload")
                done = finder.feed(view[:n])
            sock.sendall(
                conn.encoder.encode(CLIENTBOUND_ID, RESULT + struct.pack(">QQ", finder.total, finder.units))
            )
            stats.add("uploads")
        elif tag == DOWNLOAD:
            (ms,) = struct.unpack(">I", body[1:5])
            frames = bulk_frames(threshold, CLIENTBOUND_ID)
            chunk = (frames.filler + frames.bulk) * REPEAT
            deadline = time.monotonic() + ms / 1e3
            units = 0
            while True:
                sock.sendall(chunk)
                units += REPEAT
                if time.monotonic() >= deadline:
                    break
            sock.sendall(frames.filler + frames.end(units))
            stats.add("downloads")
        else:
            raise BenchError(f"unknown request {tag!r}")


def backend_main(threshold: int) -> None:
    """Serve on 127.0.0.1 (a free port, printed first) until SIGTERM; then print the counters."""
    check_ids()
    bulk_frames(threshold, SERVERBOUND_ID)  # refuses a threshold the stream cannot use, before serving
    stats = BackendStats()

    def stop(signum: int, frame: object) -> NoReturn:
        """SIGTERM: leave the accept loop, then print the counters."""
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    print(f"port {listener.getsockname()[1]}", flush=True)
    try:
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=backend_session, args=(sock, threshold, stats), daemon=True).start()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        listener.close()
        with stats.lock:
            print(json.dumps({**stats.counts, "last_error": stats.last_error}), flush=True)


# --- the client ----------------------------------------------------------------------------------------


@dataclass
class Account:
    """An online account on the session server stand-in (``client_only``)."""

    session_server: str
    name: str
    token: str
    profile: str  # the UUID without hyphens


class Client:
    """One logged-in session of the load generator."""

    def __init__(self, port: int, account: Account | None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        _socket_ready(self.sock)
        self.conn = MinecraftConnection(Role.CLIENT, PROTOCOL)
        self.wire = Wire()
        try:
            self._login(port, account)
        except BaseException:
            self.sock.close()
            raise

    def _login(self, port: int, account: Account | None) -> None:
        name = account.name if account is not None else OFFLINE_NAME
        hello = Handshake(PROTOCOL, DOMAIN, port, NextState.LOGIN).encode()
        start = self.conn.send("login_start", encode_login_start(PROTOCOL, name, offline_uuid(name)))
        self.sock.sendall(hello + start)
        while True:
            packet = self._packet()
            if packet.name == "login_success":
                return
            if packet.name == "disconnect":
                raise BenchError(f"login refused: {packet.body[:200]!r}")
            if packet.name == "encryption_request":
                if account is None:
                    raise BenchError("the server asked for an online login; no account was given")
                self._encrypt(packet, account)

    def _encrypt(self, packet: InboundPacket, account: Account) -> None:
        """The client's half of the online login, as the vanilla client does it."""
        request = parse_encryption_request(PROTOCOL, packet.body)
        key = load_der_public_key(request.public_key)
        if not isinstance(key, rsa.RSAPublicKey):
            raise BenchError("the server's key is not RSA")
        secret = os.urandom(16)
        join = {
            "accessToken": account.token,
            "selectedProfile": account.profile,
            "serverId": server_id_hash(request.server_id, secret, request.public_key),
        }
        post = urllib.request.Request(
            f"{account.session_server}/session/minecraft/join",
            data=json.dumps(join).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(post, timeout=IO_TIMEOUT) as answer:
            if answer.status != 204:
                raise BenchError(f"join answered {answer.status}")
        body = encode_encryption_response(
            PROTOCOL,
            key.encrypt(secret, padding.PKCS1v15()),
            key.encrypt(request.verify_token, padding.PKCS1v15()),
        )
        self.sock.sendall(self.conn.send("encryption_response", body))
        self.wire.start(secret)
        # The server says nothing more before our answer, but bytes read along would be ciphertext.
        self.conn.receive_data(self.wire.incoming(self.conn.decoder.take_leftover()))

    def _packet(self) -> InboundPacket:
        return _next(self.sock, self.conn, self.wire)

    def _send(self, body: bytes) -> None:
        self.sock.sendall(self.wire.outgoing(self.conn.encoder.encode(SERVERBOUND_ID, body)))

    def _result(self, tag: bytes) -> bytes:
        packet = self._packet()
        if packet.packet_id != CLIENTBOUND_ID or packet.body[:1] != tag:
            raise BenchError(f"expected {tag!r}, got packet {packet.packet_id:#x} {packet.body[:16]!r}")
        return packet.body

    def upload(self, ms: int) -> dict[str, Any]:
        """Send units for ``ms`` milliseconds, then END; the backend counts (module doc: the cycle)."""
        frames = bulk_frames(self.conn.compression_threshold, SERVERBOUND_ID)
        free = frames.free
        plain = (frames.filler[free:] + frames.bulk + frames.filler[:free]) * REPEAT
        secret = self.wire.secret
        cycle = plain if secret is None else cfb8(secret, bytes(16)).encryptor().update(plain)
        cpu0, t0 = time.process_time(), time.monotonic()
        self._send(UPLOAD)
        self.sock.sendall(self.wire.outgoing(frames.filler[:free]))
        deadline = t0 + ms / 1e3
        units = 0
        while True:
            self.sock.sendall(cycle)
            units += REPEAT
            if time.monotonic() >= deadline:
                break
        self.wire.resync_out(cycle[-16:])
        self.sock.sendall(self.wire.outgoing(frames.filler[free:] + frames.end(units)))
        counted, their_units = struct.unpack(">QQ", self._result(RESULT)[1:17])
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
        if their_units != units or counted != frames.stream_size(units):
            raise BenchError(f"sent {units} units, the backend counted {their_units} ({counted} bytes)")
        return {"bytes": counted, "wall_s": wall, "cpu_s": cpu}

    def download(self, ms: int) -> dict[str, Any]:
        """Ask for ``ms`` milliseconds of units; count them up to END (module doc)."""
        frames = bulk_frames(self.conn.compression_threshold, CLIENTBOUND_ID)
        finder = EndFinder(frames, self.wire.secret)
        buffer = bytearray(RECV_SIZE)
        view = memoryview(buffer)
        cpu0, t0 = time.process_time(), time.monotonic()
        self._send(DOWNLOAD + struct.pack(">I", ms))
        done = False
        while not done:
            n = self.sock.recv_into(buffer)
            if not n:
                raise EOFError("closed during a download")
            done = finder.feed(view[:n])
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
        self.wire.resync_in(finder.tail[-16:])
        return {"bytes": finder.total, "wall_s": wall, "cpu_s": cpu}

    def ping(self, ms: int, warmup: int) -> dict[str, Any]:
        """Echo a 64-byte packet one at a time for ``ms`` milliseconds after ``warmup`` unrecorded ones."""
        body = PING + random.Random(1).randbytes(PING_SIZE - 1)
        samples: list[float] = []
        for _ in range(warmup):
            self._send(body)
            self._result(PING)
        cpu0, t0 = time.process_time(), time.monotonic()
        deadline = t0 + ms / 1e3
        while True:
            start = time.perf_counter()
            self._send(body)
            echoed = self._result(PING)
            samples.append(time.perf_counter() - start)
            if echoed != body:
                raise BenchError("the echo differs from the ping")
            if time.monotonic() >= deadline:
                break
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
        samples.sort()

        def at(q: float) -> float:
            """The ``q`` quantile in microseconds."""
            return samples[min(len(samples) - 1, int(q * len(samples)))] * 1e6

        return {
            "n": len(samples),
            "p50_us": statistics.median(samples) * 1e6,
            "p99_us": at(0.99),
            "p999_us": at(0.999),
            "wall_s": wall,
            "cpu_s": cpu,
        }

    def close(self) -> None:
        """Close the session's socket."""
        self.sock.close()


def client_main() -> None:
    """Commands, one JSON object per line; each answered by one JSON line (``{"error": ...}`` on failure):

    ``{"op": "login", "port": P, "account": null | {session_server, name, token, profile}}``,
    ``{"op": "upload"|"download", "ms": M}``, ``{"op": "ping", "ms": M, "warmup": W}``, ``{"op": "close"}``.
    """
    check_ids()
    client: Client | None = None
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        try:
            if op == "login":
                if client is not None:
                    client.close()
                    client = None
                account = command.get("account")
                t0 = time.monotonic()
                client = Client(int(command["port"]), Account(**account) if account else None)
                answer: dict[str, Any] = {
                    "login_ms": (time.monotonic() - t0) * 1e3,
                    "encrypted": client.wire.secret is not None,
                    "threshold": client.conn.compression_threshold,
                }
            elif op == "close":
                if client is not None:
                    client.close()
                    client = None
                answer = {"closed": True}
            elif client is None:
                answer = {"error": "not logged in"}
            elif op == "upload":
                answer = client.upload(int(command["ms"]))
            elif op == "download":
                answer = client.download(int(command["ms"]))
            elif op == "ping":
                answer = client.ping(int(command["ms"]), int(command.get("warmup", 200)))
            else:
                answer = {"error": f"unknown op {op!r}"}
        except (BenchError, ProtocolError, OSError, EOFError, ValueError) as exc:
            answer = {"error": f"{op}: {type(exc).__name__}: {exc}"}
            if client is not None:
                client.close()
                client = None
        print(json.dumps(answer), flush=True)
    if client is not None:
        client.close()


def main(argv: list[str]) -> None:
    """``backend`` or ``client``, as the module doc says."""
    parser = argparse.ArgumentParser(prog="python -m bench._icpeers", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("backend", "client"))
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD, help="backend: Set Compression")
    options = parser.parse_args(argv)
    if options.role == "backend":
        backend_main(options.threshold)
    else:
        client_main()


if __name__ == "__main__":
    main(sys.argv[1:])
