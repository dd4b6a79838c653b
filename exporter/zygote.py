"""Account processes forked from a warm zygote: an ``exporter`` command in a process of its own, in
milliseconds of CPU instead of a new interpreter's imports (about 0.25 s each).

``start(args, env=, cwd=, out=, keep=, modules=)`` runs ``exporter ARGS`` (``exporter.cli``) as a
process of its own, with exactly the environment ``env`` (nothing else of this process's), in
``cwd``, its stdin from /dev/null, its stdout and stderr to the file descriptor ``out``, and the
descriptors ``keep`` held open (an account's lock); it returns a handle with ``pid``,
``wait(timeout)`` (the exit code, negative for a signal; ``subprocess.TimeoutExpired`` past
``timeout``), ``send_signal`` and ``kill``, as ``subprocess.Popen`` has.

The zygote is a Python process of this project, one per process that asks (``shared()``: an
``exporter jobs run``, each Celery worker process), started with only the basic variables of the
environment (``BASIC_ENV``: no account's secret), single-threaded. It imports the command line and
the pipeline (``PRELOAD``) and every plugin declaration, then waits on a socket pair. A request
names the modules its command will use (``modules``: the account's source, destinations and
formats), which the zygote imports the first time, for every later child, and brings a socket of
its own: the zygote forks at once, and the child reads the rest of the request from that socket
(arguments, environment, folder, and the descriptors as ``SCM_RIGHTS``) and runs the command, so
the zygote never holds anything of an account, nor a child anything of another. The zygote
answers on that socket with the child's pid and a pidfd (signals reach that process and no other,
even once it has ended), then with its exit status. The child takes its command as its process
title (``setproctitle``), so ``ps`` shows ``exporter jobs run ... --account NAME``, as a process
the runner started as a new interpreter would.

multiprocessing's fork server (which ``exporter.parallel`` uses for the workers of one export) is
not used here: it inherits the environment of the process that starts it (every account's secrets,
in a Celery worker) and reads each request itself.

Lifetimes: the zygote ignores the stop signals (a Ctrl-C or ``systemctl stop`` reaches the exports
and their runner, which tell it what happened) and exits when its owner's end of the socket pair
closes (the owner ended, or was killed; an owner that ends normally waits for it). A child it
forked is not killed with it: like a process the runner started, it runs to its end holding its
account's lock. A zygote that dies takes its running children along (their owner could no longer
tell how they end). Where there is no ``os.pidfd_open`` (not Linux), each command runs in a new
interpreter (``popen``), with the same isolation.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Callable

#: variables the zygote (and so every account's process) gets from its owner's environment,
#: besides an account's own; none is a secret
BASIC_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
             "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
             "http_proxy", "https_proxy", "no_proxy")

#: what the zygote imports when it starts (besides every plugin declaration): the command line and
#: the pipeline; the modules of an account's source, destinations and formats come with the
#: requests (``spawn(modules=)``), imported by the zygote the first time, for every later child
PRELOAD = ("exporter.cli", "exporter.api", "exporter.pipeline")

_PID = struct.Struct("=i")
_MAX_REQUEST = 1 << 20


def basic_env(environ=None) -> dict[str, str]:
    """The variables of ``environ`` (this process's) that every account's process gets."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k in BASIC_ENV or k.startswith("LC_")}


# ----------------------------------------------------------------------------------------------
# the owner's side
# ----------------------------------------------------------------------------------------------


class Child:
    """An account's process forked by the zygote (the ``subprocess.Popen`` calls the runner uses)."""

    def __init__(self, sock: socket.socket, pid: int, pidfd: int):
        self.pid, self._sock, self._pidfd = pid, sock, pidfd
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._sock.settimeout(timeout)
            try:
                data = self._sock.recv(16)
            except TimeoutError:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0) from None
            if len(data) == 1 + _PID.size and data[:1] == b"S":
                self.returncode = os.waitstatus_to_exitcode(_PID.unpack(data[1:])[0])
            else:  # the zygote died: nobody can tell how the child ends, so it ends now
                self.kill()
                ended = select.poll()
                ended.register(self._pidfd, select.POLLIN)
                ended.poll(10_000)
                self.returncode = -signal.SIGKILL
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            os.close(self._pidfd)


class Zygote:
    """The zygote of this process: started by ``start()`` (or the first ``spawn``), again if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._ctl: socket.socket | None = None

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def _ensure(self) -> socket.socket:
        if self._ctl is not None and self._proc is not None and self._proc.poll() is None:
            return self._ctl
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self._proc = subprocess.Popen([sys.executable, "-c", "from exporter.cli.zygote import main; main()",
                                           str(theirs.fileno())],
                                          env=basic_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          pass_fds=(theirs.fileno(),))
        self._ctl = ours
        return ours

    def close(self) -> None:
        """Let the zygote go: it exits (the processes it forked run on to their end), and is
        waited for (its CPU, and its children's, is this process's children's)."""
        if self._ctl is not None:
            self._ctl.close()  # the zygote exits when this end closes
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        self._ctl = self._proc = None

    def forget(self) -> None:
        """After ``fork()``: this copy belongs to the parent; close it without waiting for anything."""
        if self._ctl is not None:
            self._ctl.close()
        self._ctl = self._proc = None

    def spawn(self, args: list[str], *, env: dict[str, str], cwd: str, out: int, keep=(), modules=()) -> Child:
        """``exporter ARGS`` in a child of the zygote (see the module docstring), once the zygote
        has imported ``modules`` (what the command will import: not again in each child)."""
        request = json.dumps({"args": list(args), "env": dict(env), "cwd": str(cwd)}).encode()
        if len(request) > _MAX_REQUEST:
            raise ValueError("the account's process request is too large")
        mine, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock, its:
                for attempt in (1, 2):
                    ctl = self._ensure()
                    try:
                        socket.send_fds(ctl, [b"F" + "\n".join(modules).encode()], [its.fileno()])
                        break
                    except OSError:  # the zygote died since: a new one (once)
                        self.close()
                        if attempt == 2:
                            raise
            socket.send_fds(mine, [request], [out, *keep])
            msg, fds, _flags, _addr = socket.recv_fds(mine, 16, 1)
            if len(msg) != 1 + _PID.size or msg[:1] != b"P" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                raise OSError("the zygote did not start the account's process")
        except BaseException:
            mine.close()
            raise
        return Child(mine, _PID.unpack(msg[1:])[0], fds[0])


_shared: dict[str, Zygote] = {}


def shared() -> Zygote:
    """This process's zygote (a process forked from this one gets its own), closed when this
    process exits (``close_shared``)."""
    if "zygote" not in _shared:
        _shared["zygote"] = Zygote()
        atexit.register(close_shared)
    return _shared["zygote"]


def close_shared() -> None:
    """Close this process's zygote, if it has one (at its exit; a Celery worker process's end)."""
    z = _shared.pop("zygote", None)
    if z is not None:
        z.close()


def _after_fork() -> None:
    z = _shared.pop("zygote", None)
    if z is not None:
        z.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def start(args: list[str], *, env: dict[str, str], cwd, out: int, keep=(), modules=()) -> Child | subprocess.Popen:
    """``exporter ARGS`` as a process of its own (see the module docstring)."""
    if hasattr(os, "pidfd_open"):
        return shared().spawn(args, env=env, cwd=str(cwd), out=out, keep=keep, modules=modules)
    return popen(args, env=env, cwd=cwd, out=out, keep=keep)


def popen(args: list[str], *, env: dict[str, str], cwd, out: int, keep=()) -> subprocess.Popen:
    """``exporter ARGS`` in a new interpreter (where no zygote can run)."""
    return subprocess.Popen([sys.executable, "-m", "exporter", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, pass_fds=tuple(keep))


# ----------------------------------------------------------------------------------------------
# the zygote's side
# ----------------------------------------------------------------------------------------------


def _preload(modules) -> None:
    """Import ``modules`` (one that fails is left to the child, which reports it)."""
    for name in modules:
        if name and name not in sys.modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)


def serve(ctl_fd: int, after_imports: Callable[[], None] = lambda: None) -> socket.socket | None:
    """The zygote's loop; returns, in a child only, the socket its request comes on.
    ``after_imports`` is called after each round of imports, before the next fork."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    from setproctitle import setproctitle

    # before any child empties its environment: the first call moves the environment away from the
    # command line's memory, which every child's title then reuses
    setproctitle("exporter zygote")
    ctl = socket.socket(fileno=ctl_fd)
    from .registry import FORMATS, REMOTES, SINKS, SOURCES

    for registry in (SOURCES, SINKS, REMOTES, FORMATS):
        registry.all()  # the entry points read and every declaration loaded once, not in each child
    _preload(PRELOAD)
    after_imports()
    live: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, the child's socket)
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    while True:
        for fd, _event in poller.poll():
            if fd == ctl.fileno():
                msg, fds, _flags, _addr = socket.recv_fds(ctl, _MAX_REQUEST, 1)
                if not msg:  # the owner is gone
                    return None
                if not fds:
                    continue
                conn = socket.socket(fileno=fds[0])
                wanted = [m for m in msg[1:].decode().split("\n") if m and m not in sys.modules]
                if wanted:
                    _preload(wanted)
                    after_imports()
                for stream in (sys.stdout, sys.stderr):  # nothing of the zygote's goes to a child's log
                    stream.flush()
                pid = os.fork()
                if pid == 0:
                    ctl.close()
                    for pidfd, (_pid, other) in live.items():
                        os.close(pidfd)
                        other.close()
                    return conn
                pidfd = os.pidfd_open(pid)
                live[pidfd] = (pid, conn)
                poller.register(pidfd, select.POLLIN)
                with contextlib.suppress(OSError):
                    socket.send_fds(conn, [b"P" + _PID.pack(pid)], [pidfd])
            else:
                pid, conn = live.pop(fd)
                poller.unregister(fd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):
                    conn.send(b"S" + _PID.pack(status))
                conn.close()
                os.close(fd)


def become(conn: socket.socket) -> list[str]:
    """In a child of the zygote: read the request, become the account's process (its standard
    streams, stop signals, environment, folder); the command's arguments, for the command line
    (``exporter.cli.zygote``) to run as ``python -m exporter ARGS`` would. A folder that cannot be
    entered is one line in its log, and exit 1."""
    msg, fds, flags, _addr = socket.recv_fds(conn, _MAX_REQUEST, 64)
    conn.close()
    if not msg or flags & socket.MSG_TRUNC:
        raise SystemExit(1)
    out = fds[0]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)  # sys.stdout and sys.stderr write to these descriptors: now the account's log
    os.dup2(out, 2)
    for fd in (null, out):
        os.close(fd)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    request = json.loads(msg)
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    try:
        os.chdir(request["cwd"])
    except OSError as e:
        print(f"Error: cannot enter the account's folder {request['cwd']}: {e.strerror}", file=sys.stderr)
        raise SystemExit(1) from None
    args = list(request["args"])
    _retitle(args)
    return args


def _retitle(args: list[str]) -> None:
    """Show the account's command in ``ps``/``top``, not the zygote's it was forked from (the
    arguments name secrets only by reference; URLs are masked all the same)."""
    from setproctitle import setproctitle

    from .secrets import mask

    setproctitle(" ".join(["exporter", *(mask(a) for a in args)]))
