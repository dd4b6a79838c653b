"""``exporter jobs check|run|status|crontab`` and ``exporter audit verify``: command groups of
their own in ``exporter.cli``, like ``backups``.

The jobs file is read by ``exporter.jobsfile``, run by ``exporter.jobrun``; this module only turns
their results and errors into output and exit codes (0 success, 1 failure, 2 a jobs file or a
command line that is wrong, each problem one line ``FILE:LINE: KEY: message``).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

import click

from ..errors import ConfigError
from ..secrets import mask
from .cluster import cluster_options
from .common import Ctx, run_guarded

if TYPE_CHECKING:
    from ..jobrun import Outcome
    from ..jobsfile import JobsFile


class _Problems(click.ClickException):
    """A jobs file's problems: one line each on stderr, exit 2 (a usage error)."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        super().__init__(problems[0])
        self.problems = problems

    def show(self, file: IO[Any] | None = None) -> None:
        for p in self.problems:
            click.echo(mask(p), err=True)


def _guarded(fn: Callable[[], None]) -> None:
    """``fn`` as every command runs (``run_guarded``: one line, exit 1 or 2, a traceback only with
    --debug); a jobs file's problems are each said on a line of their own."""
    from ..jobsfile import JobsFileError

    def go() -> None:
        try:
            fn()
        except JobsFileError as e:
            raise _Problems(e.problems) from None

    run_guarded(click.get_current_context(), go)


def _load(path: str, names: tuple[str, ...] = (), environment: bool = True) -> tuple[JobsFile, list[str]]:
    from ..jobsfile import check_environment, load

    jobs = load(path)
    unknown = [n for n in names if n not in jobs.accounts]
    if unknown:
        raise ConfigError(f"{path}: no account {', '.join(unknown)} (accounts: {', '.join(jobs.accounts)})")
    selected = list(names) or list(jobs.accounts)
    if environment:
        check_environment(jobs, selected)
    return jobs, selected


def _switches() -> Ctx:
    return click.get_current_context().find_object(Ctx) or Ctx(False, False, False)


def _quiet() -> bool:
    return _switches().quiet


@click.group()
def jobs() -> None:
    """Run many accounts from one jobs file (TOML): each isolated, scheduled, audited.

    \b
    exporter jobs check FILE                 validate the file and its environment, run nothing
    exporter jobs run FILE [--account NAME] [--due] [--parallel N]
    exporter jobs status FILE                last run, result, duration and next due time of each account
    exporter jobs crontab FILE [--systemd]   crontab lines, or systemd service and timer units
    exporter jobs enqueue FILE [--account NAME] [--due] --broker URL   tasks for `exporter worker`
    """


@jobs.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--no-env", is_flag=True, help="Do not check that the variables and files the file names exist "
                                             "(checking the file on another machine).")
def check(file: str, no_env: bool) -> None:
    """Check a jobs file (keys, types, secrets by reference, cron schedules, destination options,
    variables and files) without running anything. Exit 0 when it is good, 2 with one line per
    problem otherwise."""

    def go() -> None:
        jobs_file, selected = _load(file, environment=not no_env)
        if not _quiet():
            click.echo(f"{file}: {len(selected)} account(s) OK: {', '.join(selected)}")

    _guarded(go)


@jobs.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--account", "accounts", multiple=True, metavar="NAME", help="Only this account (repeatable).")
@click.option("--due", is_flag=True, help="Only what is due: an export whose schedule has a time since its last "
                                         "run (an account that never ran is due), a backup likewise.")
@click.option("--parallel", type=click.IntRange(1, 64), default=None, metavar="N",
              help="Accounts run side by side (default: 4, at most the number of accounts).")
def run(file: str, accounts: tuple[str, ...], due: bool, parallel: int | None) -> None:
    """Run the accounts of a jobs file, each in its own process, environment, spool and log; one
    account's failure never stops another. Exit 1 if any failed; a summary table at the end."""
    from ..jobrun import DEFAULT_PARALLEL, Runner

    outcome: dict = {}

    def go() -> None:
        jobs_file, selected = _load(file, accounts)
        runner = Runner(jobs_file, selected, due_only=due, parallel=parallel or DEFAULT_PARALLEL,
                        verbose=_switches().verbose or _switches().debug)
        outcome["results"] = runner.run()
        outcome["interrupted"] = runner.interrupted

    _guarded(go)
    results = outcome["results"]
    if not _quiet() or any(o.failed for o in results):
        for line in summary_table(results):
            click.echo(line, err=_quiet())
    if outcome["interrupted"] is not None:
        raise outcome["interrupted"]
    if any(o.failed for o in results):
        sys.exit(1)


def summary_table(results: Sequence[Outcome]) -> list[str]:
    rows = [("account", "action", "result", "duration", "submissions", "media", "detail")]
    for o in results:
        detail = o.error or (o.log if o.failed else "")
        rows.append((o.account, o.action, o.result, f"{o.seconds:.1f}s" if o.start else "-",
                     str(o.counts.get("submissions", "-")) if o.counts else "-",
                     str(o.counts.get("media", "-")) if o.counts else "-", mask(detail)))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return ["  ".join(c.ljust(w) for c, w in zip(r[:6], widths, strict=True)) + "  " + r[6] for r in rows]


@jobs.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--account", "accounts", multiple=True, metavar="NAME", help="Only this account (repeatable).")
@click.option("--due", is_flag=True, help="Only the accounts with something due, each with the slot (scheduled "
                                         "time) that made it due; the worker runs only what is still due.")
@cluster_options
def enqueue(file: str, accounts: tuple[str, ...], due: bool, **_cluster: Any) -> None:
    """Put one task per account on the broker, for `exporter worker` processes to run (each
    exactly as `exporter jobs run --account NAME [--due]` would). A task holds the jobs file's
    path, the account's name and its slot: nothing secret."""
    from .cluster import require_celery, settings_of

    def go() -> None:
        require_celery("jobs enqueue")
        from ..worker import enqueue as send

        settings = settings_of(click.get_current_context())
        jobs_file, selected = _load(file, accounts, environment=False)
        sent = send(settings, jobs_file, selected, due=due)
        if not _quiet():
            for name, slot in sent:
                click.echo(f"{name}  slot {slot}")
            click.echo(f"{len(sent)} task(s) sent to queue {settings.queue}")

    _guarded(go)


@jobs.command()
@click.argument("file", type=click.Path(dir_okay=False))
def status(file: str) -> None:
    """Each account's last export and backup (start, result, duration, the host that ran it) and
    when each is next due; an account running now is shown with its runner's pid, host and start."""
    from .. import jobstate
    from ..jobrun import lock_holder

    def go() -> None:
        jobs_file, _ = _load(file, environment=False)
        rows = [("account", "action", "last start", "result", "duration", "next due", "host")]
        t = jobstate.now()
        for account in jobs_file.accounts.values():
            state = jobstate.read(account)
            running = lock_holder(account)
            if running:
                rows.append((account.name, "(running)", running, "", "", "", ""))
            for action in ("export", "backup"):
                if action == "backup" and account.backup is None:
                    continue
                last = state.get(action) or {}
                nxt = jobstate.next_due(account, action, state, t)
                when = ("with each export" if action == "backup" else "when run by name") if nxt is None else \
                    ("now" if nxt <= t else jobstate.iso(nxt))
                rows.append((account.name, action, last.get("start", "never"), last.get("result", "-"),
                             f"{last['seconds']:.1f}s" if isinstance(last.get("seconds"), (int, float)) else "-",
                             when, last.get("host", "")))
        widths = [max(len(r[i]) for r in rows) for i in range(7)]
        for r in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())

    _guarded(go)


@jobs.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--systemd", is_flag=True, help="Print systemd service and timer units instead of crontab lines.")
def crontab(file: str, systemd: bool) -> None:
    """Print the crontab lines (or the systemd units) that run each account when it is due."""
    from .. import jobunits

    def go() -> None:
        jobs_file, _ = _load(file, environment=False)
        for line in (jobunits.systemd(jobs_file) if systemd else jobunits.crontab(jobs_file)):
            click.echo(line)

    _guarded(go)


@click.group()
def audit() -> None:
    """Audit logs written by `exporter jobs run` and `exporter backups` (one hash-chained JSON line
    per run or backup command)."""


@audit.command("verify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def audit_verify(paths: tuple[str, ...]) -> None:
    """Check that audit logs are intact: every line chained to the one before, the last one as
    recorded. Exit 0 only if all are; each problem is printed."""
    from ..audit import verify

    def go() -> None:
        problems = [p for path in paths for p in verify(path)]
        for p in problems:
            click.echo(p, err=True)
        if problems:
            raise click.ClickException(f"{len(problems)} problem(s) found")
        if not _quiet():
            click.echo(f"OK: {len(paths)} audit log(s) intact")

    _guarded(go)

