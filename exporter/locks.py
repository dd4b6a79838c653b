"""One run per account at a time: a lock file, ``<state_dir>/<account>/lock``.

The lock is held two ways at once:

* the kernel's ``flock`` on the open file, released by the kernel when the holder exits however
  it exits (SIGKILL, power loss of a process), so a lock whose holder died is free again;
* the file's text, the holder's owner marker (``exporter.owner``: pid, process start time, host
  and pid namespace) and since when it holds the lock, so a refused run says who holds it.

A second run exits at once with ``LockedError`` naming the holder. A lock file whose ``flock`` is
free but whose text names a process is taken over only when ``owner.is_dead`` says that process is
gone (of this host and pid namespace, and its pid no longer runs or now belongs to a process
started at another time); a holder on another host (a state folder shared over NFS, where
``flock`` may not reach) or in another container cannot be told dead, so the lock is refused with
the way out: remove the file once that process is known to be gone. A caller that holds the
account's cluster-wide lease (``leased=True``: ``exporter.lease``, taken by ``exporter worker``)
takes such a file over: the lease says its holder is no longer running the account.

The file is removed when the lock is released (while still holding ``flock``); a process that
opened the old file meanwhile sees it is no longer the one at that path and tries again, so two
runs can never both believe they hold it.
"""
from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import logging
import os
import re
from pathlib import Path

from . import owner
from .errors import ConfigError, LockedError, os_error_text

log = logging.getLogger("exporter.locks")

LOCK_NAME = "lock"
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def account_dir(state_dir: str | os.PathLike, account: str) -> Path:
    """``<state_dir>/<account>``: an account's own folder (mode 0700), its name checked (letters,
    digits, ``_ . -``; it names a folder and appears in file names)."""
    if not _ACCOUNT.fullmatch(account or "") or account in (".", ".."):
        raise ConfigError(f"account name {account!r}: use letters, digits, '_', '.' or '-' (100 at most)")
    d = Path(state_dir).expanduser() / account
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise ConfigError(os_error_text(e, f"create the state folder of account {account}")) from None
    return d


def _describe(text: str) -> str:
    """``pid 123 on host h since 2026-01-02T03:04:05Z`` from a lock file's text."""
    try:
        info = json.loads(text)
    except ValueError:
        return f"an unreadable holder ({text[:60]!r})" if text.strip() else "a process that has not written its name yet"
    if not isinstance(info, dict):
        return "an unreadable holder"
    who = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"
    if info.get("command"):
        who += f" ({info['command']})"
    return who + f" since {info.get('since', '?')}"


class AccountLock:
    """``with AccountLock(state_dir, account, command="backup"):`` — see the module docstring."""

    def __init__(self, state_dir: str | os.PathLike, account: str, *, command: str = "", leased: bool = False):
        self.account = account
        self.path = account_dir(state_dir, account) / LOCK_NAME
        self.command = command
        self.leased = leased
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"AccountLock({self.path}, {'held' if self._fd is not None else 'free'})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> AccountLock:
        if self._fd is not None:
            raise LockedError(f"account {self.account} is already locked by this process", context=str(self.path))
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                text = _read(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ConfigError(os_error_text(e, f"lock account {self.account}")) from None
                raise LockedError(f"account {self.account} is already running: locked by {_describe(text)}",
                                  context=str(self.path)) from None
            if self._same_file(fd):
                break
            os.close(fd)  # released and removed meanwhile by its holder: try the new file
        try:
            self._take(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise ConfigError(os_error_text(e, f"open the lock of account {self.account}")) from None

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _take(self, fd: int) -> None:
        """We hold ``flock``: take the file unless its text names a holder that may still run."""
        text = _read(fd).strip()
        if text:
            try:
                previous = json.loads(text).get("owner")
            except (ValueError, AttributeError):
                previous = None
            if previous and not owner.is_dead(previous) and not self.leased:
                where = "another host or container" if not owner.is_local(previous) else "this host"
                raise LockedError(
                    f"account {self.account} is locked by {_describe(text)}, a process of {where} that cannot be "
                    f"told gone; once it is known to be gone, remove {self.path}", context=str(self.path))
            log.warning("account %s: taking over the lock left by %s, which is gone", self.account, _describe(text))
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        me = owner.owner()
        info = {"owner": me, "pid": os.getpid(), "host": me.rpartition("@")[2].partition("/")[0],
                "since": now, "command": self.command}
        data = (json.dumps(info) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def fileno(self) -> int:
        """The lock file, open and locked while ``held``: a child process given it (``pass_fds``)
        keeps the account locked while it runs, even if this process is killed meanwhile."""
        if self._fd is None:
            raise ValueError(f"the lock of account {self.account} is not held")
        return self._fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._same_file(fd):
                os.unlink(self.path)  # still holding flock: nobody can have taken it meanwhile
        except OSError as e:
            log.warning("account %s: could not remove %s: %s", self.account, self.path, e)
        finally:
            os.close(fd)  # releases flock

    def holder(self) -> str | None:
        """Who holds the lock now (a readable line), or None when it is free."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return _describe(_read(fd))
            text = _read(fd).strip()
            if not text:
                return None
            try:
                previous = json.loads(text).get("owner")
            except (ValueError, AttributeError):
                return _describe(text)
            return None if owner.is_dead(previous) else _describe(text)
        finally:
            os.close(fd)

    def __enter__(self) -> AccountLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return ""
