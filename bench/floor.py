"""The floor contender: the smallest Trio relay doing exactly infrarust's per-connection work.

``python -m bench.floor BACKEND_PORT`` listens on 127.0.0.1 (a free port, printed as ``port N``) and for
every connection: accepts it, reads the Minecraft handshake and the login start (two length-prefixed
frames), connects to the backend, sends them, then splices both directions through pooled kernel pipes
in a nursery, one task per direction, waiting with ``wait_readable`` / ``wait_writable``, passes each EOF
on as a half-close, and closes both sockets. No routing, no admission, no logging, no metrics, no
timeouts: what is left is the cost of Trio itself for this shape of work, the measured limit of
infrarust's design. The listener has TCP_NODELAY set, which Linux passes on to accepted sockets, as
infrarust does; the backend socket gets it before it connects.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys

import trio

PIPE_SIZE = 65536
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
HELLO_LIMIT = 4096
_pool: list[tuple[int, int]] = []


def _pipe() -> tuple[int, int]:
    if _pool:
        return _pool.pop()
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


def _frames_end(buf: bytes, frames: int) -> int:
    """Offset just past `frames` complete length-prefixed frames of `buf`, or -1 if not all there yet."""
    pos = 0
    for _ in range(frames):
        length = shift = 0
        while True:
            if pos >= len(buf) or shift > 28:
                return -1
            b = buf[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        pos += length
        if pos > len(buf):
            return -1
    return pos


async def _pump(src: trio.socket.SocketType, dst: trio.socket.SocketType) -> None:
    splice = os.splice
    sfd, dfd = src.fileno(), dst.fileno()
    while True:
        r, w = _pipe()
        try:
            moved = splice(sfd, w, PIPE_SIZE, None, None, FLAGS)
        except BlockingIOError:
            moved = -1
        except OSError:
            _pool.append((r, w))
            break
        if moved < 0:
            _pool.append((r, w))
            await trio.lowlevel.wait_readable(src)
            continue
        if moved == 0:
            _pool.append((r, w))
            break
        while moved:
            try:
                sent = splice(r, dfd, moved, None, None, FLAGS)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(dst)
                continue
            except OSError:
                os.close(r)
                os.close(w)
                return
            moved -= sent
        _pool.append((r, w))
    # A plain try is cheaper per connection than contextlib.suppress (two calls fewer).
    try:  # noqa: SIM105
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


async def _handle(client: trio.socket.SocketType, backend_port: int) -> None:
    backend = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        buf = b""
        while True:
            chunk = await client.recv(HELLO_LIMIT)
            if not chunk:
                return
            buf += chunk
            if _frames_end(buf, 2) >= 0:
                break
            if len(buf) > HELLO_LIMIT:
                return
        backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await backend.connect(("127.0.0.1", backend_port))
        await backend.send(buf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, backend)
            await _pump(backend, client)
    except OSError:
        pass
    finally:
        backend.close()
        client.close()


async def main(backend_port: int) -> None:
    listener = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    print(f"port {listener.getsockname()[1]}", flush=True)
    async with trio.open_nursery() as nursery:
        while True:
            try:
                client, _ = await listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    await trio.sleep(0.1)
                    continue
                raise
            nursery.start_soon(_handle, client, backend_port)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
