"""``exporter worker`` and ``exporter beat``: the Celery side of a jobs file (``exporter jobs
enqueue`` is in ``jobs``, with the options of ``cluster_options``). Celery is imported only when
one of them runs; where it is not installed, each says in one line to install the ``celery`` extra."""
from __future__ import annotations

import importlib
import logging
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from ..errors import ConfigError, ExporterError
from .common import F, run_guarded

if TYPE_CHECKING:
    from ..worker import Settings


def require_celery(command: str) -> None:
    """Celery and redis-py (the ``celery`` extra) importable, or one line saying how to get them."""
    for module in ("celery", "redis"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise ExporterError(f"exporter {command} needs Celery, which is not installed here: "
                                "pip install 'exporter[celery]'") from None


def _no_password_on_command_line(ctx: click.Context, name: str) -> None:
    """A URL given on the command line holds no password (every user of the machine sees a command
    line): it belongs in the environment variable the option reads."""
    value = ctx.params.get(name)
    if not value or ctx.get_parameter_source(name) is not click.core.ParameterSource.COMMANDLINE:
        return
    try:
        has_password = urlsplit(value).password is not None
    except ValueError:
        has_password = False
    if has_password:
        raise ConfigError(f"--{name}: a password inside the URL is visible to every user of this machine: set "
                          f"EXPORTER_{name.upper()} instead (e.g. in the service's environment file)")


def cluster_options(fn: F) -> F:
    """The options every command talking to the broker takes (each with its environment variable)."""
    options = [
        click.option("--broker", envvar="EXPORTER_BROKER", metavar="URL",
                     help="The broker: redis://HOST:6379/N or amqp://USER@HOST:5672/VHOST [EXPORTER_BROKER]."),
        click.option("--locks", envvar="EXPORTER_LOCKS", metavar="URL",
                     help="The Redis holding the accounts' leases (default: the broker, when it is Redis) "
                          "[EXPORTER_LOCKS]."),
        click.option("--prefix", envvar="EXPORTER_PREFIX", metavar="TEXT",
                     help="Key prefix of the leases (and of the broker's keys on Redis) [EXPORTER_PREFIX; exporter]."),
        click.option("--queue", envvar="EXPORTER_QUEUE", metavar="NAME",
                     help="The queue of the account tasks [EXPORTER_QUEUE; exporter]."),
        click.option("--lease", envvar="EXPORTER_LEASE", type=click.FloatRange(3), metavar="SECONDS",
                     help="Length of an account's lease, renewed every third of it while it runs: a dead "
                          "worker's accounts are free again after this long [EXPORTER_LEASE; 60]."),
        click.option("--time-limit", envvar="EXPORTER_TIME_LIMIT", type=click.FloatRange(1), metavar="SECONDS",
                     help="The time_limit of an account whose jobs file sets none: its export, then its backup, "
                          "each stopped (rolled back) past it [EXPORTER_TIME_LIMIT; 10800]."),
        click.option("--visibility-timeout", envvar="EXPORTER_VISIBILITY_TIMEOUT", type=click.FloatRange(1),
                     metavar="SECONDS", help="Redis broker: a task not acknowledged after this long is given to "
                                             "another worker; longer than the longest task "
                                             "[EXPORTER_VISIBILITY_TIMEOUT; 2 x (time limit + 60) + 660]."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def settings_of(ctx: click.Context) -> Settings:
    """The checked settings from the cluster options given (the rest at their defaults)."""
    from ..worker import Settings, with_defaults

    for name in ("broker", "locks"):
        _no_password_on_command_line(ctx, name)
    params = ctx.params
    keys = ("broker", "locks", "prefix", "queue", "lease", "time_limit", "visibility_timeout")
    return with_defaults(Settings(broker=""), **{k: params.get(k) for k in keys}).checked()


def _ping_locks(settings: Settings) -> None:
    from redis.exceptions import RedisError

    from ..lease import client
    from ..secrets import mask_url

    store = settings.lock_store
    assert store is not None  # Settings.checked() refuses settings without one
    try:
        client(store).ping()
    except RedisError as e:
        raise ConfigError(f"the lock store {mask_url(store)} cannot be reached: {e}") from None


def _log_level() -> str:
    level = logging.getLogger().level
    return "DEBUG" if level <= logging.DEBUG else "INFO" if level <= logging.INFO else \
        "ERROR" if level >= logging.ERROR else "WARNING"


@click.command()
@cluster_options
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Accounts this worker runs side by side (each in a worker process of its own).")
@click.option("-n", "--hostname", metavar="NAME", help="The worker's name (default: exporter@HOST).")
def worker(concurrency: int, hostname: str | None, **_cluster: Any) -> None:
    """Run account tasks from the broker: each task runs one account of a jobs file, exactly as
    `exporter jobs run --account NAME` does, under the account's cluster-wide lease. Start one (or
    more) on each worker machine; the accounts' secrets are read from this machine's environment.
    Stop it with SIGTERM: running accounts finish first (a second SIGTERM gives them back to the
    broker)."""

    def go() -> None:
        require_celery("worker")
        settings = settings_of(click.get_current_context())
        _ping_locks(settings)
        from ..worker import app, configure

        configure(app, settings)
        level = _log_level()
        logging.getLogger("exporter").setLevel(level)
        argv = ["worker", f"--concurrency={concurrency}", f"--hostname={hostname or 'exporter@' + socket.gethostname()}",
                "--pool=prefork", "--without-gossip", "--without-mingle", f"--loglevel={level}",
                f"--queues={settings.queue}"]
        app.worker_main(argv)

    run_guarded(click.get_current_context(), go)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@cluster_options
@click.option("--schedule-file", default="exporter-beat-schedule", show_default=True, metavar="PATH",
              help="Where beat keeps when it last sent each account's task (Celery's schedule file).")
def beat(file: str, schedule_file: str, **_cluster: Any) -> None:
    """Send each account's task when its cron schedule (export or backup) comes, for the workers
    to run what is due. Run exactly one beat per jobs file (a second one sends nothing the workers
    would run twice, but is useless). The file is read again when beat restarts."""

    def go() -> None:
        require_celery("beat")
        from ..beat import entries
        from ..jobsfile import load
        from ..worker import app, configure

        settings = settings_of(click.get_current_context())
        jobs = load(file)
        schedule = entries(jobs, settings)
        if not schedule:
            raise ConfigError(f"{file}: no account has a schedule: nothing for beat to send")
        configure(app, settings)
        app.conf.beat_schedule = schedule
        app.Beat(schedule=schedule_file, loglevel=_log_level(), max_interval=60).run()

    run_guarded(click.get_current_context(), go)


COMMANDS = (worker, beat)
