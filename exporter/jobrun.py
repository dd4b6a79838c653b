"""``exporter jobs run``: each account of a jobs file exported in isolation, side by side.

Each account runs as its own process (``exporter export`` with arguments built from the file:
the command line stays the one way to export; forked from this process's warm zygote,
``exporter.zygote``, so that it does not pay for a new interpreter's imports), in the jobs file's
folder, under its lock (``account_lock``), with an environment holding only the basics
(``zygote.BASIC_ENV``) and the variables its own ``*_env`` keys name (never another account's, nor
the alerts' webhook or SMTP secrets), its temporary files in its spool (TMPDIR, mode 0700), and its output in its
own log file. Accounts run concurrently on
a bounded pool: one that fails, hangs (``time_limit``) or is locked never stops or delays another.
After each run the runner records it (``jobstate``), appends one audit line to the account's log
and to its state_dir's (``exporter.audit``) and sends the alert the account asks for
(``exporter.alerts``), whose failure is logged and changes nothing.

A stop signal (SIGTERM, Ctrl-C) stops the runner: running exports get SIGTERM (they roll back),
accounts not yet started are not started, and every account's outcome is still recorded.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from . import audit, jobstate, zygote
from .errors import ConfigError, Interrupted, LockedError, without_help_hint
from .jobsfile import Account, JobsFile
from .jobtables import SETTINGS
from .secrets import mask, read_secret

log = logging.getLogger("exporter.jobs")

DEFAULT_PARALLEL = 4
STOP_GRACE = 60.0  # seconds a stopped or timed-out export has to roll back before SIGKILL
#: the export's summary, in the account's spool (emptied before each run)
SUMMARY = "summary.json"


@dataclass
class Outcome:
    account: str
    action: str  # export, backup
    result: str  # ok, failed, timed out, interrupted, locked, running, not started
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    exit_code: int | None = None
    counts: dict = field(default_factory=dict)
    error: str = ""
    log: str = ""
    extra: dict = field(default_factory=dict)  # a backup's name, size and hashes, for the audit line

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.start and self.end else 0.0

    @property
    def failed(self) -> bool:
        """Whether the run counts against the exit code: not done, or done badly (an account
        that is not due, or already running under ``--due``, is not a failure)."""
        return self.result not in ("ok", "running", "not due")


# ----------------------------------------------------------------------------------------------
# the hooks: the account lock
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def account_lock(account: Account):
    """Hold the account's lock (``exporter.locks``, the one ``exporter backups`` takes too) while
    its export runs, or raise LockedError naming who holds it since when; yields the lock's file,
    which the export process is given, so a runner killed outright does not free the account
    while its export still writes."""
    from .locks import AccountLock

    with AccountLock(account.state_dir, account.name, command="jobs run") as lock:
        yield lock.fileno()


def lock_holder(account: Account) -> str | None:
    """Who runs the account now (``pid N on host H (...) since T``), or None."""
    if not (account.dir / "lock").exists():
        return None
    from .locks import AccountLock

    return AccountLock(account.state_dir, account.name).holder()


# ----------------------------------------------------------------------------------------------
# one account's process
# ----------------------------------------------------------------------------------------------


def _exporter(verbose: bool) -> list[str]:
    return ["--verbose"] if verbose else []


def _source_args(account: Account, keys) -> list[str]:
    """``--source`` and its settings, every secret by reference."""
    argv = ["--source", account.source]
    if account.token_env:
        argv += ["--token-env", account.token_env]
    if account.token_file:
        argv += ["--token-file", account.token_file]
    for key, value in account.settings.items():
        if key not in keys:
            continue
        flag, kind = SETTINGS[key]
        if kind == "flag":
            argv += [flag] if value else []
        elif kind in ("list", "specs"):
            for v in value:
                argv += [flag, v]
        else:
            argv += [flag, ",".join(value) if isinstance(value, tuple) else str(value)]
    return argv


def _options(options: dict) -> list[str]:
    out = []
    for k, v in options.items():
        out += ["-o", f"{k}={'true' if v is True else 'false' if v is False else v}"]
    return out


def export_argv(account: Account, *, verbose: bool = False) -> list[str]:
    """The arguments of ``exporter export ...`` for the account."""
    argv = _exporter(verbose) + ["export"] + _source_args(account, SETTINGS) + ["--incremental", account.incremental]
    if account.formats:  # only when a destination writes files (the command refuses formats otherwise)
        argv += ["--format", ",".join(account.formats)]
    argv += ["--summary-json", str(account.dir / "spool" / SUMMARY)]
    for d in account.destinations:
        argv += ["--to", d.to] + (["-o", "formats=" + ",".join(d.formats)] if d.formats else [])
        if d.password_env:
            argv += ["--to-password-env", d.password_env]
        if d.password_file:
            argv += ["--to-password-file", d.password_file]
        argv += _options(d.options)
    return argv


#: the account settings a backup's source reads (a backup holds every form: no ``forms``)
BACKUP_SETTINGS = ("skip", "timezone", "ca_bundle", "timeout", "workers")


def backup_argv(account: Account, *, verbose: bool = False) -> list[str]:
    """The arguments of ``exporter backups create --no-audit ...`` for the account
    (``exporter.backups``: a full archive, verified, encrypted to ``encrypt_to``, stored, checked,
    then pruned; its audit line is the runner's)."""
    b = account.backup
    if b is None:
        raise ConfigError(f"account {account.name} has no backup table in the jobs file")
    # --no-audit: the runner writes the backup's audit line itself (with its log, exit code, jobs file)
    argv = _exporter(verbose) + ["backups", "create", "--no-audit", "--account", account.name, "--state-dir",
                                 str(account.state_dir)] + _source_args(account, BACKUP_SETTINGS) + ["--to", b.to]
    options = dict(b.options)
    for key, flag in (("password_env", "--to-password-env"), ("password_file", "--to-password-file")):
        if key in options:
            argv += [flag, str(options.pop(key))]
    argv += _options(options)
    for r in b.encrypt_to:
        argv += ["--encrypt-to", r]
    for rule in ("last", "daily", "weekly", "monthly", "yearly"):
        if getattr(b, f"keep_{rule}"):
            argv += [f"--keep-{rule}", str(getattr(b, f"keep_{rule}"))]
    return argv


def _backup_entry(account: Account) -> dict:
    """The newest entry of the account's backups index, as the audit line carries it."""
    from .backups import audit_fields, load_index

    entries = load_index(account.state_dir, account.name)
    return {"backup": audit_fields(entries[-1])} if entries else {}


def plugin_modules(account: Account, action: str) -> list[str]:
    """The modules of the plugins the account's process will use (its source, its destinations
    and formats, or its backup's storage): imported once by the zygote, not in each process."""
    from .registry import FORMATS, REMOTES, SINKS, SOURCES, Plugin

    try:
        plugins: list[Plugin | None] = [SOURCES.for_url(account.source)]
        if action == "export":
            plugins += [SINKS.for_url(d.to) for d in account.destinations] + [FORMATS.find(f) for f in account.formats or ()]
        elif account.backup is not None:
            plugins.append(REMOTES.for_url(account.backup.to))
    except ConfigError:  # the process reports it
        return []
    return [p.target.partition(":")[0] for p in plugins if p is not None] + (["exporter.backups"] if action == "backup"
                                                                            else [])


def child_env(account: Account, spool: Path, environ=None) -> dict[str, str]:
    """The account's process environment: the basics, its own variables, TMPDIR = its spool."""
    environ = os.environ if environ is None else environ
    env = zygote.basic_env(environ)
    for _key, var in account.env_refs:
        env[var] = environ[var]
    env["TMPDIR"] = str(spool)
    return env


def _register_secrets(account: Account) -> None:
    """The account's secret values are masked in everything this process writes (audit, alerts)."""
    for key, var in account.env_refs:
        read_secret(env=var, what=var, required=False, register=key[-1] not in NOT_SECRET)
    for key, f in account.file_refs:
        with contextlib.suppress(ConfigError):
            read_secret(file=account.base_dir / os.path.expanduser(f), required=False, register=key[-1] not in NOT_SECRET)


#: keys read by reference whose values are not secrets (masking a user name would blank it everywhere)
NOT_SECRET = ("user_env", "user_file")


#: the counts of an export's summary (``--summary-json``) as its audit line names them
COUNTED = {"form": "forms", "submission": "submissions", "media": "media", "user": "users", "group": "groups",
           "list": "lists", "document": "documents"}


def _counts_of(summary_path: Path) -> dict:
    """The counts of a successful export, from the summary it wrote (``--summary-json``), with
    the bytes of media and documents it read; {} when it wrote none (it failed)."""
    try:
        summary = json.loads(summary_path.read_text("utf-8"))
        counts = {COUNTED[k]: int(n) for k, n in summary["counts"].items() if k in COUNTED}
        return {**counts, "bytes": int(summary["media_bytes"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _error_of(log_path: Path) -> str:
    """The error line at the end of a run's log (masked)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 65536))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    errors = [line[len("Error: "):] for line in tail if line.startswith("Error: ")]
    error = errors[-1] if errors else next((line for line in reversed(tail) if line.strip()), "")
    # a usage error ends with where the command's help is: not the jobs file's user's concern
    return mask(without_help_hint(error.strip()))[:500]


def due_actions(account: Account, due_only: bool) -> tuple[bool, bool]:
    """(export, backup): what a run of ``account`` does now. Without ``due_only`` the export runs;
    with it, only when its schedule has a time since its last start. The backup runs when its own
    schedule is due, or with each export when it has none."""
    at = jobstate.now()
    state = jobstate.read(account) if account.dir.exists() else {}
    export = not due_only or jobstate.due(account, "export", state, at)
    backup = account.backup is not None and (jobstate.due(account, "backup", state, at)
                                             or (account.backup.schedule is None and export))
    return export, backup


def audit_record(jobs: JobsFile, account: Account, outcome: Outcome, note: dict | None = None) -> dict:
    """The audit line of one outcome (``note``: what the caller adds, e.g. a worker's task)."""
    run = run_record(outcome, note)
    return {"id": uuid.uuid4().hex, "time": run["end"] or jobstate.iso(jobstate.now()), "account": account.name,
            "action": outcome.action,
            **run, "source": account.source, "host": socket.gethostname(), "jobs_file": str(jobs.path.resolve()),
            "destinations": ([d.to for d in account.destinations] if outcome.action == "export"
                             else [account.backup.to] if account.backup else []), **outcome.extra, **(note or {})}


def run_record(outcome: Outcome, note: dict | None = None) -> dict:
    """What the account's state keeps of its last run of an action (``jobstate.record``), with the
    schedule slot a worker's task ran it for (``exporter.accounttask``)."""
    return {"start": outcome.start and jobstate.iso(outcome.start), "end": outcome.end and jobstate.iso(outcome.end),
            "result": outcome.result, "seconds": round(outcome.seconds, 3), "exit_code": outcome.exit_code,
            "counts": outcome.counts, "error": outcome.error, "log": outcome.log, "host": socket.gethostname(),
            **({"slot": note["slot"]} if note and "slot" in note else {})}


class Runner:
    def __init__(self, jobs: JobsFile, names: list[str], *, due_only: bool = False,
                 parallel: int = DEFAULT_PARALLEL, verbose: bool = False, note: dict | None = None):
        self.jobs, self.names, self.due_only, self.note = jobs, names, due_only, note
        self.parallel, self.verbose = max(1, parallel), verbose
        self._lock = threading.Lock()
        self._live: dict[str, zygote.Child | subprocess.Popen] = {}
        self._stopping: Interrupted | None = None

    # -- all accounts ---------------------------------------------------------------------------
    def run(self) -> list[Outcome]:
        """Every account's outcomes (export, then backup), in the order of ``names``. A stop signal
        is re-raised once every account has been recorded (``self.interrupted``)."""
        pool = ThreadPoolExecutor(max_workers=min(self.parallel, max(1, len(self.names))),
                                  thread_name_prefix="account")
        futures: dict = {}
        try:
            try:
                for n in self.names:
                    futures[pool.submit(self._account, self.jobs.accounts[n])] = n
                pending = set(futures)
                while pending:
                    _done, pending = wait(pending, timeout=0.5)
            except (Interrupted, KeyboardInterrupt) as e:
                self.stop(e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT))
                wait(futures)
        finally:
            pool.shutdown(wait=True)
        results = {name: f.result() for f, name in futures.items()}
        return [o for n in self.names for o in results.get(n, [Outcome(n, "export", "not started")])]

    @property
    def interrupted(self) -> Interrupted | None:
        return self._stopping

    def stop(self, why: Interrupted) -> None:
        """Start nothing more; ask every running export to stop (it rolls back)."""
        with self._lock:
            self._stopping = why
            for proc in self._live.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)

    # -- one account ----------------------------------------------------------------------------
    def _account(self, account: Account) -> list[Outcome]:
        try:
            return self._account_steps(account)
        except Exception as e:  # noqa: BLE001 - one account's trouble is its own: reported, never raised
            log.debug("account %s", account.name, exc_info=True)
            from .errors import one_line

            return [Outcome(account.name, "export", "failed", error=mask(one_line(e)))]

    def _account_steps(self, account: Account) -> list[Outcome]:
        export, backup = due_actions(account, self.due_only)
        if not export and not backup:
            return [Outcome(account.name, "export", "not due")]
        jobstate.prepare(account)
        out = []
        if export:
            try:
                with account_lock(account) as fd:
                    jobstate.clean_spool(account)
                    out.append(self._step(account, "export", fd))
            except LockedError as e:
                return [self._locked(account, "export", e)]
        if backup:
            # ``exporter backups create`` takes the account's lock itself
            holder = lock_holder(account)
            if holder:
                return out + [self._locked(account, "backup", LockedError(
                    f"account {account.name} is already running: locked by {holder}"))]
            out.append(self._step(account, "backup", None))
        return out

    def _locked(self, account: Account, action: str, e: LockedError) -> Outcome:
        return Outcome(account.name, action, "running" if self.due_only else "locked", error=str(e))

    def _step(self, account: Account, action: str, lock_fd: int | None) -> Outcome:
        start = jobstate.now()
        outcome = Outcome(account.name, action, "failed", start=start)
        if self._stopping is not None:
            outcome.result, outcome.end = "not started", start
            return outcome
        _register_secrets(account)
        spool = account.dir / "spool"
        log_path = jobstate.new_log(account, start)
        outcome.log = str(log_path)
        argv = (export_argv if action == "export" else backup_argv)(account, verbose=self.verbose)
        env = child_env(account, spool)
        with open(log_path, "ab", buffering=0) as fh:
            os.chmod(log_path, 0o600)
            fh.write((f"# exporter jobs run: account {account.name}, {action}, started {jobstate.iso(start)}\n"
                      f"# command: {mask(shlex.join(['exporter', *argv]))}\n# cwd: {account.base_dir}\n"
                      f"# environment: {', '.join(sorted(env))}\n").encode())
            outcome.exit_code, timed_out = self._child(account, argv, env, fh, lock_fd, plugin_modules(account, action))
        outcome.end = jobstate.now()
        outcome.counts = _counts_of(spool / SUMMARY) if action == "export" else {}
        outcome.error = _error_of(log_path)
        code = outcome.exit_code
        if timed_out:
            outcome.result, outcome.error = "timed out", f"stopped after its time_limit of {account.time_limit:g}s"
        elif code == 0:
            outcome.result, outcome.error = "ok", ""
            if action == "backup":
                outcome.extra = _backup_entry(account)
                outcome.counts = (outcome.extra.get("backup") or {}).get("counts") or {}
        elif code < 0:  # killed outright
            outcome.result = "interrupted" if self._stopping is not None else "failed"
            outcome.error = f"killed by {signal.Signals(-code).name}"
        elif code in (128 + signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGHUP):
            outcome.result = "interrupted"  # stopped by a signal (ours, or the service manager's): rolled back
        return self._finish(account, outcome)

    def _child(self, account: Account, argv: list[str], env: dict, fh, lock_fd: int | None,
               modules: list[str]) -> tuple[int, bool]:
        with self._lock:
            if self._stopping is not None:
                return 128 + self._stopping.signum, False
            proc = zygote.start(argv, env=env, cwd=account.base_dir, out=fh.fileno(),
                                keep=() if lock_fd is None else (lock_fd,), modules=modules)
            self._live[account.name] = proc
        try:
            try:
                return proc.wait(timeout=account.time_limit), False
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                return proc.wait(), True
        finally:
            with self._lock:
                self._live.pop(account.name, None)
                if isinstance(proc, zygote.Child):
                    proc.close()

    def _finish(self, account: Account, outcome: Outcome) -> Outcome:
        """Record the run, audit it, alert about it; none of these changes its result."""
        record = audit_record(self.jobs, account, outcome, self.note)
        # staged before the state records the run, so a kill anywhere after it loses no audit line
        for what, fn in (("audit logs", lambda: audit.stage(account.state_dir, account.name, record)),
                         ("state", lambda: jobstate.record(account, outcome.action, run_record(outcome, self.note))),
                         ("audit logs", lambda: audit.flush(account.state_dir, account.name)),
                         ("alert", lambda: self._alert(account, record))):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - bookkeeping never hides the run's own result
                log.error("account %s: could not write its %s: %s", account.name, what, mask(str(e)))
        return outcome

    def _alert(self, account: Account, record: dict) -> None:
        alerts = account.alerts
        wanted = "success" if record["result"] == "ok" else "failure"
        if alerts is None or wanted not in alerts.on:
            return
        from .alerts import notify

        for problem in notify(alerts, record, account.base_dir):
            log.error("account %s: %s", account.name, problem)
