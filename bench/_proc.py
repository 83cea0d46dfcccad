"""Reading what processes and the kernel spend, from /proc.

CPU: ``utime + stime`` of ``/proc/<pid>/stat`` (fields 14 and 15, in clock ticks), which covers every
thread of the process. A relay made of several processes (infrarust with ``workers = 2``) is measured
as the sum over its process tree, read before and after each trial.

Memory per idle session has two parts:

* user space: the growth of ``VmRSS`` (``/proc/<pid>/status``) summed over the relay's process tree
  while the idle sessions are opened;
* kernel: the growth of ``Slab`` in ``/proc/meminfo`` (socket, file, inode, dentry, epoll item and
  pipe objects all live in slab caches) plus the pages ``/proc/net/sockstat`` counts as TCP buffer
  memory. Both are machine-wide, so the load generator's and the backend's own sockets are in it
  too: the harness opens the same number of sessions without a relay ("direct") in the same round
  and subtracts that, leaving what the relay's two sockets, its pipes and its bookkeeping cost. Pipe
  data pages are not in Slab, but an idle pipe holds none (they are freed once a splice drains
  them). The figure is noisy when other work allocates kernel memory at the same time, which is
  why it is a median over rounds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """The root pid and all its living descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree: list[int] = []
    todo = [root]
    while todo and len(tree) < 10_000:
        pid = todo.pop()
        if _stat_fields(pid) is None:
            continue
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the given processes, in seconds (threads included)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime: fields 14, 15 of stat
    return ticks / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and its descendants."""
    return cpu_seconds(process_tree(root))


def rss_bytes(pids: Iterable[int]) -> int:
    """Sum of VmRSS of the given processes."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def kernel_bytes() -> int:
    """Machine-wide kernel memory that sessions grow: Slab plus TCP buffer pages (see module doc)."""
    slab = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            slab = int(line.split()[1]) * 1024
    tcp_pages = 0
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            parts = line.split()
            tcp_pages = int(parts[parts.index("mem") + 1])
    return slab + tcp_pages * PAGE


def settle(root: int | None, *, interval: float = 0.05, limit: float = 5.0) -> None:
    """Wait until the relay has gone idle (no CPU tick in one interval), at most `limit` seconds.

    Work left over from one step (sessions closing, log lines) must not be charged to the next."""
    if root is None:
        return
    deadline = time.monotonic() + limit
    last = tree_cpu_seconds(root)
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = tree_cpu_seconds(root)
        if now == last:
            return
        last = now


def listening_processes(pids: Iterable[int], port: int) -> list[int]:
    """Those of `pids` that hold a socket listening on 127.0.0.1:`port` (or any address)."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and int(f[1].split(":")[1], 16) == port:  # 0A: LISTEN
            inodes.add(f"socket:[{f[9]}]")
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, PermissionError):
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    found.append(pid)
                    break
            except OSError:
                continue
    return found
