"""A small cluster for the Celery tests and the scale benchmark: fake services (``exporter serve``),
a jobs file of many tiny accounts, ``exporter worker`` processes (each in a session of its own, so
one can be killed outright with everything it started), and the brokers' clean-up.

Redis: every key of a test carries its own prefix (``--prefix``: the leases and the broker's keys
alike) in database 9, deleted afterwards. RabbitMQ: a virtual host of the test's own
(made and removed with ``rabbitmqctl`` when it can be run here), else the default one with the test's
own queue, deleted afterwards.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import SAMPLE, port_open, require_service, wait_port

REDIS = "redis://127.0.0.1:6379/9"
AMQP = "amqp://guest:guest@127.0.0.1:5672"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(token: str, latency: float = 0.0, source: Path = SAMPLE) -> tuple[subprocess.Popen, str]:
    """``exporter serve`` of ``source`` expecting ``token``: (process, REST URL)."""
    port = free_port()
    extra = ["--latency", str(latency)] if latency else []
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "-s", str(source), "--port", str(port),
                             "--token-env", "SERVED_TOKEN", *extra], env={**os.environ, "SERVED_TOKEN": token},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}/rest/v3"


def tiny_accounts(path: Path, n: int, sources: list[tuple[str, str]], *, schedule: str | None = "0 0 1 1 *",
                  sqlite: bool = True, prefix: str = "acc") -> dict[str, str]:
    """A jobs file of ``n`` accounts (``acc00``...), each exporting one form of 10 submissions (no
    media) to its own SQLite file (or JSON folder), alternating over ``sources`` ((URL, token));
    each account reads its token from a variable of its own. Returns those variables."""
    env: dict[str, str] = {}
    lines = ['[defaults]', 'state_dir = "state"', 'forms = ["1003"]', 'incremental = "none"',
             *([f'schedule = "{schedule}"'] if schedule else []), '']
    for i in range(n):
        name = f"{prefix}{i:02d}"
        url, token = sources[i % len(sources)]
        var = f"{name.upper()}_TOKEN"
        env[var] = token
        dest = f'{{ to = "sqlite:///out/{name}.db" }}' if sqlite else f'{{ to = "out/{name}", formats = ["json"] }}'
        lines += [f"[accounts.{name}]", f'source = "{url}"', f'token_env = "{var}"', f"destinations = [{dest}]", ""]
    path.write_text("\n".join(lines))
    (path.parent / "out").mkdir(exist_ok=True)
    return env


@dataclass
class Broker:
    """Where a test's tasks go: the broker URL, the Redis of the leases, the key prefix, the queue."""
    url: str
    prefix: str
    queue: str
    locks: str = REDIS
    cleanup: list = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"EXPORTER_BROKER": self.url, "EXPORTER_LOCKS": self.locks, "EXPORTER_PREFIX": self.prefix,
                "EXPORTER_QUEUE": self.queue}

    def redis(self):
        import redis

        return redis.Redis.from_url(self.locks)

    def keys(self, kind: str) -> list[str]:
        return sorted(k.decode() for k in self.redis().scan_iter(f"{self.prefix}:{kind}:*"))

    def close(self) -> None:
        """Remove what the test made: its queue (``cleanup``), and every key of its prefix in the
        Redis of the leases and, when it is another Redis, the broker's."""
        import redis

        for fn in reversed(self.cleanup):
            with contextlib.suppress(Exception):
                fn()
        urls = {self.locks} | ({self.url} if self.url.startswith(("redis://", "rediss://", "unix://")) else set())
        for url in urls:
            r = redis.Redis.from_url(url)
            for k in r.scan_iter(f"{self.prefix}:*"):
                r.delete(k)
            r.close()


def _rabbitmqctl(*args: str) -> bool:
    exe = shutil.which("rabbitmqctl")
    if not exe:
        return False
    try:
        return subprocess.run([exe, *args], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def make_broker(kind: str) -> Broker:
    """A broker of ``kind`` (redis, amqp) for one test; ``close()`` removes all it made."""
    require_service(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")
    tag = secrets.token_hex(4)
    prefix, queue = f"exptest-{tag}", f"exptest-{tag}"
    if kind == "redis":
        return Broker(REDIS, prefix, queue)
    require_service(port_open("127.0.0.1", 5672), "RabbitMQ on 127.0.0.1:5672")
    vhost = f"exptest-{tag}"
    if _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"):
        b = Broker(f"{AMQP}/{vhost}", prefix, queue)
        b.cleanup.append(lambda: _rabbitmqctl("delete_vhost", vhost))
        return b
    return broker_at(f"{AMQP}//", prefix, queue)


def broker_at(url: str, prefix: str, queue: str) -> Broker:
    """A broker at ``url`` (the leases in it when it is Redis, else in ``REDIS``) whose ``close()``
    removes the keys of ``prefix`` and, on RabbitMQ, the queue and exchange named ``queue``."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return Broker(url, prefix, queue, locks=url)
    b = Broker(url, prefix, queue)

    def drop_queue():
        from kombu import Connection

        with Connection(b.url) as c:
            ch = c.channel()
            ch.queue_delete(queue)
            ch.exchange_delete(queue)

    b.cleanup.append(drop_queue)
    return b


class Worker:
    """An ``exporter worker`` process (and all it starts), its log in ``log``."""

    def __init__(self, cwd: Path, name: str, env: dict, *, concurrency: int = 2, options=(), verbose: bool = True):
        self.name, self.log = name, cwd / f"worker-{name}.log"
        self._fh = open(self.log, "wb")
        argv = [sys.executable, "-m", "exporter", *(["-v"] if verbose else []), "worker", "-c", str(concurrency),
                "-n", f"{name}@%h", *options]
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log.read_bytes():
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited: {self.text()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"worker {self.name} not ready after {timeout}s: {self.text()[-3000:]}")

    def text(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of every process of the worker's session."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                sid = os.getsid(int(d.name))
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except (OSError, ProcessLookupError):
                continue
            if sid == self.proc.pid:
                out.append((int(d.name), cmd))
        return out

    def exports(self) -> list[str]:
        """The accounts whose export runs in this worker now (its processes writing to an account's log)."""
        return [name for pid, _cmd in self.processes() if (name := account_of(pid))]

    def kill(self) -> None:
        """SIGKILL to the worker and everything it started (a machine that dies)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._fh.close()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the worker alone (as systemd's KillMode=mixed does): a warm shutdown, its
        running accounts end first; then anything left of its session is killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # anything it left behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._fh.close()


def account_of(pid: int) -> str | None:
    """The account whose process ``pid`` is: the one whose log (``state/<account>/logs/*.log``) is
    its standard output."""
    try:
        out = Path(os.readlink(f"/proc/{pid}/fd/1"))
    except OSError:
        return None
    return out.parent.parent.name if out.parent.name == "logs" and out.suffix == ".log" else None


def audit_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
