"""What the jobs runner keeps per account, under ``state_dir/<account>/`` (mode 0700):

    last-export.json  the last export: start, end, result, counts (last-backup.json: the last backup)
    audit.jsonl       one hash-chained JSON line per run (``exporter.audit``); state_dir/audit.jsonl
                      holds the lines of every account kept in that state_dir
    audit-pending/    a line until it is in both logs (written before the run is recorded; a
                      process killed before both appends leaves it for the account's next line)
    logs/<start>.log  what each run printed (the newest ``KEEP_LOGS`` are kept)
    spool/            the run's temporary files (its TMPDIR), emptied before each run
    lock              held while the account runs (``exporter.locks``; also by ``exporter backups``)

Times are stored as ISO 8601 with their UTC offset. ``due`` and ``next_due`` read the account's
schedules against the last start of each action.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from pathlib import Path

from . import schedule
from .fsutil import atomic_write
from .jobsfile import Account

KEEP_LOGS = 60
ACTIONS = ("export", "backup")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).astimezone()


def iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="seconds")


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # whatever the umask: only this user reads what an account keeps
    return path


def prepare(account: Account) -> None:
    """The account's folders, mode 0700 (the state_dir too when it is made here)."""
    if not account.state_dir.exists():
        _private_dir(account.state_dir)
    _private_dir(account.dir)
    _private_dir(account.dir / "logs")


def clean_spool(account: Account) -> Path:
    """The account's spool, emptied (under its lock: what a killed run left there goes)."""
    spool = account.dir / "spool"
    if spool.exists():
        shutil.rmtree(spool)
    return _private_dir(spool)


def read(account: Account) -> dict:
    """``{action: its last run}`` for the actions that ran."""
    state = {}
    for action in ACTIONS:
        try:
            data = json.loads((account.dir / f"last-{action}.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            state[action] = data
    return state


def record(account: Account, action: str, run: dict) -> None:
    """Store ``run`` as the last ``action`` of the account (atomically; a file per action, so an
    export and a backup recorded at once do not overwrite each other)."""
    with atomic_write(account.dir / f"last-{action}.json", "w", encoding="utf-8") as fh:
        json.dump(run, fh, indent=1, sort_keys=True)


def last_start(state: dict, action: str) -> dt.datetime | None:
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return dt.datetime.fromisoformat(state[action]["start"])
    return None


def schedule_of(account: Account, action: str) -> str | None:
    if action == "export":
        return account.schedule
    return account.backup.schedule if account.backup else None


def due(account: Account, action: str, state: dict, at: dt.datetime) -> bool:
    """Whether ``action`` is due: its schedule has a time after its last start and at or before
    ``at``. A backup without a schedule goes with every export; an export without one is never due
    (it runs when named)."""
    expr = schedule_of(account, action)
    return expr is not None and schedule.due(expr, last_start(state, action), at)


def next_due(account: Account, action: str, state: dict, at: dt.datetime) -> dt.datetime | None:
    """When ``action`` is next due (``at`` or before: due now); None without a schedule."""
    expr = schedule_of(account, action)
    if expr is None:
        return None
    last = last_start(state, action)
    return at if last is None else schedule.next_after(expr, last)


def new_log(account: Account, start: dt.datetime) -> Path:
    """A new log file for a run starting at ``start`` (the oldest beyond ``KEEP_LOGS`` removed)."""
    logs = account.dir / "logs"
    old = sorted(p for p in logs.glob("*.log"))
    for p in old[:max(0, len(old) - KEEP_LOGS + 1)]:
        with contextlib.suppress(OSError):
            p.unlink()
    stamp = start.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return logs / f"{stamp}.log"
