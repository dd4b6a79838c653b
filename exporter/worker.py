"""Scale-out on Celery: the app, its task, and putting tasks on the broker.

``exporter worker --broker URL`` (or ``celery -A exporter.worker worker`` with ``EXPORTER_BROKER``
set) runs the task ``exporter.run_account(jobs_file, account, slot, due=...)``, which runs one
account of a jobs file exactly as ``exporter jobs run`` does (``exporter.accounttask``).
``exporter jobs enqueue`` and ``exporter beat`` (``exporter.beat``) put those tasks on the broker.
A message holds the jobs file's path, the account's name, the schedule slot and whether only what
is due runs: nothing secret (the worker reads the account's secrets by reference, on its machine).

Delivery is at least once and runs are exactly once per slot: tasks are acknowledged after they
ran (``acks_late``), a worker process lost mid-task gives its task back (``reject_on_worker_lost``),
each worker process reserves one task at a time (prefetch multiplier 1), every task has a time
limit (an account's export and backup each stop at its ``time_limit``, or the worker's default
``--time-limit``; Celery kills a task past ``hard_limit`` of that as a last resort), and a second
copy is dropped: by the account's lease in Redis (``exporter.lease``) while it runs, by the slot
its state records (or, for a due run, by its schedule) once it ran.
A worker killed outright: RabbitMQ gives its tasks to another worker as soon as the connection
drops; Redis after ``visibility_timeout`` (by default the default task's hard limit and 10
minutes, so a long run is not handed out twice while it still runs).

Settings come from the command line or the environment (``Settings.from_env``): ``EXPORTER_BROKER``
(a URL with a password belongs there, not on a command line), ``EXPORTER_LOCKS`` (the Redis of the
leases; default: the broker when it is Redis), ``EXPORTER_PREFIX``, ``EXPORTER_QUEUE``,
``EXPORTER_LEASE``, ``EXPORTER_TIME_LIMIT``, ``EXPORTER_VISIBILITY_TIMEOUT``. No results backend:
each run's outcome is in the account's state and audit log, in the shared state folder.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import socket
from dataclasses import dataclass, replace
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from .errors import ConfigError
from .jobrun import STOP_GRACE
from .lease import DEFAULT_SECONDS
from .secrets import mask_url

TASK = "exporter.run_account"
DEFAULT_TIME_LIMIT = 3 * 3600.0  # an account's time_limit on a worker when its jobs file sets none
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
BROKER_SCHEMES = REDIS_SCHEMES + ("amqp://", "amqps://", "pyamqp://")


@dataclass(frozen=True)
class Settings:
    broker: str
    locks: str | None = None  # the Redis of the leases; None: the broker (when it is Redis)
    prefix: str = "exporter"
    queue: str = "exporter"
    lease: float = DEFAULT_SECONDS
    time_limit: float = DEFAULT_TIME_LIMIT
    visibility_timeout: float | None = None  # None: the default task's hard limit + 10 minutes

    ENV = {"broker": "EXPORTER_BROKER", "locks": "EXPORTER_LOCKS", "prefix": "EXPORTER_PREFIX",
           "queue": "EXPORTER_QUEUE", "lease": "EXPORTER_LEASE", "time_limit": "EXPORTER_TIME_LIMIT",
           "visibility_timeout": "EXPORTER_VISIBILITY_TIMEOUT"}

    @classmethod
    def from_env(cls, environ=None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict = {}
        for field, var in cls.ENV.items():
            text = environ.get(var, "").strip()
            if not text:
                continue
            if field in ("lease", "time_limit", "visibility_timeout"):
                try:
                    values[field] = float(text)
                except ValueError:
                    raise ConfigError(f"{var}={text!r}: expected a number of seconds") from None
            else:
                values[field] = text
        return cls(**{"broker": "", **values})

    def checked(self) -> Settings:
        """The settings, or a ConfigError naming what is wrong."""
        if not self.broker:
            raise ConfigError("no broker: give --broker URL or set EXPORTER_BROKER (redis://HOST:6379/0 or "
                              "amqp://USER@HOST:5672/VHOST)")
        if not self.broker.startswith(BROKER_SCHEMES):
            raise ConfigError(f"broker {mask_url(self.broker)}: expected a redis:// or amqp:// URL")
        if self.lock_store is None:
            raise ConfigError("the broker is not Redis: give --locks redis://HOST:6379/N (or EXPORTER_LOCKS), "
                              "the Redis that holds the accounts' leases")
        for name in ("lease", "time_limit"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive number of seconds")
        if self.lease < 3:
            raise ConfigError("the lease must be 3 seconds at least (it is renewed every third of it)")
        if not self.prefix or not self.queue:
            raise ConfigError("the key prefix and the queue name cannot be empty")
        return self

    @property
    def lock_store(self) -> str | None:
        return self.locks or (self.broker if self.broker.startswith(REDIS_SCHEMES) else None)

    @property
    def redis_broker(self) -> bool:
        return self.broker.startswith(REDIS_SCHEMES)

    def task_time_limit(self, account) -> float | None:
        """The hard time limit a message carries for ``account``: None (the worker's default,
        ``hard_limit(time_limit)``) unless the account sets its own ``time_limit``."""
        return hard_limit(account.time_limit) if account.time_limit else None


def hard_limit(time_limit: float) -> float:
    """A task's hard time limit (Celery kills its worker process past it) for an account whose
    export and backup may each take ``time_limit``: both, each with the grace a stopped one has
    to roll back, and a margin. The runner stops a step at ``time_limit`` before that."""
    return 2 * (time_limit + STOP_GRACE) + 60


def configure(app: Celery, settings: Settings) -> Celery:
    """Set ``app`` up for ``settings``: broker, queue, delivery guarantees, time limits."""
    transport: dict = {}
    if settings.redis_broker:
        visibility = settings.visibility_timeout or hard_limit(settings.time_limit) + 600
        transport = {"visibility_timeout": visibility, "global_keyprefix": f"{settings.prefix}:",
                     # look for the tasks of dead workers often enough for a short visibility timeout
                     "unacked_restore_interval": max(1, min(10, int(visibility / 4))), "unacked_restore_throttle": 1}
    app.conf.update(
        broker_url=settings.broker, broker_transport_options=transport, broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue, task_default_exchange=settings.queue,
        task_default_routing_key=settings.queue, task_create_missing_queues=True,
        task_serializer="json", accept_content=["json"], result_serializer="json", task_ignore_result=True,
        result_expires=None,
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_time_limit=math.ceil(hard_limit(settings.time_limit)), timezone="UTC", enable_utc=True,
        worker_hijack_root_logger=False, worker_redirect_stdouts=False,
    )
    app.conf["exporter_settings"] = settings
    return app


app = Celery("exporter", set_as_current=False)
_settings = Settings.from_env()
if _settings.broker:  # ``celery -A exporter.worker worker``: the environment says it all
    configure(app, _settings)

_leases: dict = {}


@worker_process_init.connect
def _start_zygote(**_kwargs) -> None:
    """Each worker process starts its zygote (``exporter.zygote``, the accounts' processes are
    forked from it) when it starts, before its first task."""
    from .zygote import shared

    shared().start()


@worker_process_shutdown.connect
def _close_zygote(**_kwargs) -> None:
    """... and lets it go when it ends (the zygote would leave by itself, unwaited for)."""
    from .zygote import close_shared

    close_shared()


def leases():
    """This process's lease store (made after the pool's fork: no connection is shared)."""
    from .lease import Leases

    settings: Settings = app.conf["exporter_settings"]
    key = (os.getpid(), settings.lock_store, settings.prefix, settings.lease)
    if key not in _leases:
        _leases.clear()
        assert settings.lock_store is not None  # Settings.checked() refuses settings without one
        _leases[key] = Leases.from_url(settings.lock_store, prefix=settings.prefix, lease_seconds=settings.lease)
    return _leases[key]


@app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_account(self, jobs_file: str, account: str, slot: str, due: bool = False) -> dict:
    """Run ``account`` of ``jobs_file`` for ``slot`` (``due``: only what is due), once."""
    import logging

    from .accounttask import execute

    request = self.request
    redelivered = bool((request.delivery_info or {}).get("redelivered"))
    note = {"worker": request.hostname or socket.gethostname(), "task": request.id, "redelivered": redelivered}
    verbose = logging.getLogger("exporter").getEffectiveLevel() <= logging.INFO
    return execute(jobs_file, account, slot, due=due, redelivered=redelivered, leases=leases(), note=note,
                   time_limit=app.conf["exporter_settings"].time_limit, verbose=verbose)


def slot_text(t: dt.datetime) -> str:
    """A slot as messages carry it: ISO 8601 in UTC to the second (they sort as text)."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def due_slot(account, at: dt.datetime) -> str:
    """The slot of a run that is due at ``at``: the latest scheduled time (of the export or the
    backup) at or before it."""
    from . import schedule

    times = [schedule.last_at_or_before(expr, at) for expr in
             (account.schedule, account.backup.schedule if account.backup else None) if expr]
    return slot_text(max(times)) if times else slot_text(at)


def enqueue(settings: Settings, jobs, names: list[str], *, due: bool) -> list[tuple[str, str]]:
    """Put one task per account on the broker: ``[(account, slot)]`` sent. With ``due``, only the
    accounts with something due (by the state this machine can read: none readable, each
    scheduled account is sent and its worker decides), each with the slot that made it due;
    otherwise every account named, with the slot "now"."""
    from . import jobstate
    from .jobrun import due_actions

    configure(app, settings)
    at = jobstate.now()
    path = str(jobs.path.resolve())
    plan = []
    for name in names:
        account = jobs.accounts[name]
        if due and not any(due_actions(account, True)):
            continue
        plan.append((account, due_slot(account, at) if due else slot_text(at)))
    with app.producer_or_acquire() as producer:
        for account, slot in plan:
            limit = settings.task_time_limit(account)
            options: dict[str, Any] = {"time_limit": math.ceil(limit)} if limit else {}  # none: the worker's
            run_account.apply_async((path, account.name, slot), {"due": due}, producer=producer, **options)
    return [(a.name, s) for a, s in plan]


def with_defaults(settings: Settings, **given) -> Settings:
    """``settings`` with the values given (the command line's, None: not given)."""
    return replace(settings, **{k: v for k, v in given.items() if v is not None})
