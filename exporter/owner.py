"""Who owns a run's leftovers, and whether that process is still alive.

A run marks what it leaves behind while it works (temporary file names, its row in a SQL ``runs``
table) with its owner: the host (and its pid namespace: containers may share a host name), the
process id and the process's start time (so a recycled pid is not mistaken for the run's). A later
run removes or closes those leftovers only when their owner is on this host and is dead; anything
owned elsewhere, or whose owner cannot be told dead, is left alone (a live concurrent run's files are never touched).
"""
from __future__ import annotations

import os
import secrets
import socket
from typing import TypeGuard

_cache: tuple[int, str] | None = None


def _stat(pid: int) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux), or [] elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()
    except OSError:
        return []


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or "" where unknown."""
    fields = _stat(pid)
    return fields[19].decode() if len(fields) > 19 else ""


def token() -> str:
    """``<pid>-<random>``: what this process puts in its temporary names. A forked child gets
    its own (the cache is keyed by pid)."""
    global _cache
    pid = os.getpid()
    if _cache is None or _cache[0] != pid:
        _cache = (pid, f"{pid}-{secrets.token_hex(3)}")
    return _cache[1]


def _pid_namespace() -> str:
    """This process's pid namespace (Linux: the inode of ``/proc/self/ns/pid``), or "" where
    unknown. Two containers (or a container and its host) may share a host name; their pids
    mean nothing to each other."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return ""


def _where() -> str:
    ns = _pid_namespace()
    return f"{socket.gethostname()}/{ns}" if ns else socket.gethostname()


def owner() -> str:
    """This process as ``<pid>.<start time>@<host>[/<pid namespace>]``, stored where a later run
    can read it."""
    pid = os.getpid()
    return f"{pid}.{_start_time(pid)}@{_where()}"


def is_local(owner_text: str | None) -> TypeGuard[str]:
    """Whether ``owner_text`` (from ``owner()``) names a process of this host and pid namespace,
    the only ones whose life this process can tell."""
    if not owner_text:
        return False
    where = owner_text.rpartition("@")[2]
    host, _, ns = where.partition("/")
    return host == socket.gethostname() and not (ns and ns != _pid_namespace())


def is_dead(owner_text: str | None) -> bool:
    """True only when ``owner_text`` (from ``owner()``) names a process of this host that no
    longer runs. Unknown hosts, unreadable texts and live processes give False."""
    if not is_local(owner_text):
        return False  # another host, or another pid namespace of this one: cannot tell
    who = owner_text.rpartition("@")[0]
    pid_text, _, start = who.partition(".")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid <= 0:
        return False
    if pid == os.getpid():
        return start != _start_time(pid) and bool(start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by another user
    fields = _stat(pid)
    if not fields:
        return False
    if fields[0] in (b"Z", b"X"):  # exited, not yet reaped by its parent
        return True
    now = fields[19].decode() if len(fields) > 19 else ""
    return bool(start) and bool(now) and now != start  # the pid was recycled by another process
