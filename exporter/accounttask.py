"""What a worker does with one task: run one account of a jobs file, once, under its lease.

A task names a jobs file, an account and a schedule slot (nothing secret: the worker reads the
account's secrets by reference, from its own environment or files). The worker

1. loads the jobs file (cached while the file is unchanged) and checks the account's environment;
2. takes the account's lease (``exporter.lease``): held by another worker -> the task is dropped
   with an audit line saying who holds it (a redelivered task first waits up to one lease and a
   half, since its holder may be the worker that died with it);
3. drops a task for a run already made: the account's state records a run for the task's slot or
   a later one (the same message delivered again after its run was recorded). A due task (beat's,
   ``enqueue --due``) is left to the schedule instead: the runner runs only what is still due;
4. takes over a lock file left in the shared state folder by a worker that died on another host
   (the lease says it is gone), then runs the account exactly as ``exporter jobs run --account
   NAME [--due]`` does (``jobrun.Runner``: its own process, spool, log, environment and local lock,
   the state, the audit line, the alert), with the task's slot and worker in the audit line;
5. releases the lease. The runner records each run with the task's slot in the account's state,
   the moment its export or backup process ends, before anything else.

A lease that cannot be renewed stops the run (its export rolls back): another worker may hold the
account now. Every task leaves an audit line in the account's log, run or dropped.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal

from . import audit, jobstate
from .errors import ConfigError, Interrupted, LockedError, one_line
from .jobrun import Outcome, Runner, audit_record
from .jobsfile import Account, JobsFile
from .secrets import mask

log = logging.getLogger("exporter.worker")

#: results of a run that served its slot (one stopped before its end did not)
SERVED = ("ok", "failed", "timed out")
#: outcomes the runner does not audit itself (nothing ran): the task audits them
UNAUDITED = ("not due", "locked", "running")

_cache: dict[str, tuple[tuple[int, int], JobsFile]] = {}


def load_jobs(path: str) -> JobsFile:
    """The jobs file at ``path``, read again only when it changed (size or modification time)."""
    from .jobsfile import load

    try:
        st = os.stat(path)
    except OSError as e:
        from .errors import os_error_text

        raise ConfigError(os_error_text(e, "read the jobs file")) from None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is None or cached[0] != stamp:
        cached = _cache[path] = (stamp, load(path))
    return cached[1]


def _drop(jobs: JobsFile, account: Account, result: str, why: str, note: dict) -> dict:
    now = jobstate.now()
    outcome = Outcome(account.name, "export", result, start=now, end=now, error=mask(why))
    log.warning("account %s: task of slot %s dropped: %s", account.name, note.get("slot"), mask(why))
    _audit(jobs, account, outcome, note)
    return {"account": account.name, "slot": note.get("slot"), "result": result, "error": mask(why)}


def _audit(jobs: JobsFile, account: Account, outcome: Outcome, note: dict) -> None:
    try:
        jobstate.prepare(account)
        audit.write(account.state_dir, account.name, audit_record(jobs, account, outcome, note))
    except Exception as e:  # noqa: BLE001 - bookkeeping never hides the task's own result
        log.error("account %s: could not write its audit line: %s", account.name, mask(str(e)))


def served_slot(account: Account, slot: str) -> str | None:
    """The slot of a run the account's state records at or after ``slot`` (the run the task asks
    for was made already: the same message delivered again), or None."""
    state = jobstate.read(account) if account.dir.exists() else {}
    served = [s for run in state.values() if run.get("result") in SERVED and isinstance(s := run.get("slot"), str)
              and s >= slot]
    return max(served) if served else None


def execute(jobs_path: str, name: str, slot: str, *, due: bool, redelivered: bool, leases, note: dict,
            time_limit: float | None = None, verbose: bool = False) -> dict:
    """Run (or drop) the task for account ``name`` of ``jobs_path`` and ``slot``; a summary."""
    note = {"slot": slot, **note}
    try:
        jobs = load_jobs(jobs_path)
    except ConfigError as e:
        log.error("task for account %s of %s: %s", name, jobs_path, mask(one_line(e)))
        return {"account": name, "slot": slot, "result": "failed", "error": mask(one_line(e))}
    account = jobs.accounts.get(name)
    if account is None:
        log.error("%s: no account %s", jobs_path, name)
        return {"account": name, "slot": slot, "result": "failed", "error": f"{jobs_path}: no account {name}"}
    from .jobsfile import check_environment

    try:
        check_environment(jobs, [name])
    except ConfigError as e:
        problems = "; ".join(getattr(e, "problems", [str(e)]))
        return _drop(jobs, account, "failed", f"on this worker: {problems}", note)

    if account.time_limit is None and time_limit:  # the worker's default: every run of a task stops in time
        account = dataclasses.replace(account, time_limit=time_limit)
        jobs = dataclasses.replace(jobs, accounts={**jobs.accounts, name: account})
    from redis.exceptions import RedisError

    lease = leases.lease(account.dir)
    try:
        got = lease.acquire(wait=leases.lease_seconds * 1.5 if redelivered else 0)
    except RedisError as e:  # without the lease, nobody can tell the account is not running elsewhere
        return _drop(jobs, account, "failed", f"the lock store cannot be reached, so the account is not run: {e}",
                     note)
    if not got:
        holder = lease.holder()
        return _drop(jobs, account, "locked", f"account {name} is already running: leased by "
                                              f"{holder or 'another worker'}", note)
    try:
        served = None if due else served_slot(account, slot)
        if served:
            return _drop(jobs, account, "already done", f"a run was already made for slot {served}", note)
        from .locks import AccountLock

        try:  # a lock file left by a worker that died (on any host): ours to take over, holding the lease
            with AccountLock(account.state_dir, name, command="exporter worker", leased=True):
                pass
        except LockedError as e:  # a live process (``exporter jobs run`` or ``backups`` by hand) runs it
            return _drop(jobs, account, "locked", str(e), note)
        runner = Runner(jobs, [name], due_only=due, parallel=1, verbose=verbose, note=note)
        lease.on_lost = lambda why: runner.stop(Interrupted(signal.SIGTERM))
        outcomes = runner.run()
        for o in outcomes:
            if o.result in UNAUDITED:
                o.start = o.end = o.start or jobstate.now()
                _audit(jobs, account, o, note)
    finally:
        lease.release()
    return {"account": name, "slot": slot, "results": {o.action: o.result for o in outcomes},
            **({"lease lost": lease.lost} if lease.lost else {})}

