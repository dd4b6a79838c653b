"""One run per account at a time across every worker machine: a lease in Redis.

A lease is redis-py's ``Lock`` (``SET key token NX PX``, released only by the token's holder)
taken before an account runs and renewed by a heartbeat thread every third of its length while it
runs. A worker that dies (SIGKILL, power loss, cable pulled) stops renewing it, so it expires at
most ``seconds`` later and the account is free again: a dead worker never blocks an account for
ever. A holder that cannot renew (Redis unreachable for longer than the lease, or the lease expired
meanwhile) calls ``on_lost`` once, and the caller stops its run: another worker may hold it now.

The token names its holder (``pid N on host H since T``), so a refused task says who runs the
account. Keys: ``<prefix>:lease:<account folder>``.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable

from .errors import ConfigError
from .secrets import mask_url

log = logging.getLogger("exporter.lease")

DEFAULT_SECONDS = 60.0


def client(url: str):
    """A redis-py client for ``url`` (``redis://``, ``rediss://`` or ``unix://``)."""
    import redis

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"the lock store must be a Redis URL (redis://HOST:PORT/DB), not {mask_url(url)}")
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10, health_check_interval=30)


def holder_name() -> str:
    since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"pid {os.getpid()} on host {socket.gethostname()} since {since}"


class Lease:
    """``Lease(redis, key, seconds=60).acquire(wait=0)``; ``release()`` when done. While held, a
    heartbeat thread renews it every ``seconds / 3``."""

    def __init__(self, redis_client, key: str, *, seconds: float = DEFAULT_SECONDS,
                 on_lost: Callable[[str], None] | None = None):
        self.redis, self.key, self.seconds = redis_client, key, float(seconds)
        self.on_lost = on_lost
        self._lock = redis_client.lock(key, timeout=self.seconds, sleep=min(0.5, self.seconds / 10),
                                       thread_local=False)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost: str | None = None

    def __repr__(self) -> str:
        return f"Lease({self.key}, {'held' if self._beat else 'free'})"

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lease (waiting up to ``wait`` seconds for its holder to release it or to stop
        renewing it); False when it is still held by another."""
        token = f"{holder_name()} [{uuid.uuid4().hex[:12]}]"
        got = self._lock.acquire(blocking=wait > 0, blocking_timeout=wait if wait > 0 else None, token=token)
        if got:
            self._stop.clear()
            self._beat = threading.Thread(target=self._renew, name=f"lease {self.key}", daemon=True)
            self._beat.start()
        return bool(got)

    def holder(self) -> str | None:
        """Who holds the lease now (the holder's line), or None."""
        value = self.redis.get(self.key)
        if value is None:
            return None
        return value.decode("utf-8", "replace").rpartition(" [")[0] or "another worker"

    def _renew(self) -> None:
        from redis.exceptions import LockError, RedisError

        renewed = time.monotonic()
        while not self._stop.wait(self.seconds / 3):
            try:
                self._lock.reacquire()
                renewed = time.monotonic()
            except LockError:  # expired and perhaps taken by another worker meanwhile
                self._lose("its lease expired before it could be renewed")
                return
            except RedisError as e:
                if time.monotonic() - renewed >= self.seconds:
                    self._lose(f"Redis unreachable for longer than the lease ({e})")
                    return
                log.warning("lease %s: could not renew it (%s); trying again", self.key, e)

    def _lose(self, why: str) -> None:
        self.lost = why
        log.error("lease %s lost: %s", self.key, why)
        if self.on_lost is not None:
            self.on_lost(why)

    def release(self) -> None:
        from redis.exceptions import LockError, RedisError

        beat, self._beat = self._beat, None
        if beat is None:
            return
        self._stop.set()
        beat.join()
        if self.lost:
            return
        try:
            self._lock.release()
        except LockError:
            log.warning("lease %s had expired already when released", self.key)
        except RedisError as e:  # it expires by itself
            log.warning("lease %s: could not release it (%s); it expires within %gs", self.key, e, self.seconds)


class Leases:
    """The accounts' leases, under one key prefix of one Redis."""

    def __init__(self, redis_client, *, prefix: str = "exporter", lease_seconds: float = DEFAULT_SECONDS):
        self.redis, self.prefix, self.lease_seconds = redis_client, prefix, float(lease_seconds)

    @classmethod
    def from_url(cls, url: str, **kwargs) -> Leases:
        return cls(client(url), **kwargs)

    def lease(self, account_dir, on_lost: Callable[[str], None] | None = None) -> Lease:
        """The lease of the account kept in ``account_dir`` (``state_dir/name``: it names the
        account uniquely, whatever jobs file it comes from)."""
        return Lease(self.redis, f"{self.prefix}:lease:{account_dir}", seconds=self.lease_seconds, on_lost=on_lost)
