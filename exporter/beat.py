"""``exporter beat``: Celery beat with a schedule built from a jobs file's cron expressions.

One entry per account and schedule (its export's, its backup's): when a scheduled time comes,
beat sends ``exporter.run_account(jobs_file, account, slot, due=True)``, the slot being that
time (``BeatLazyFunc``: worked out when the task is sent). The worker then runs what is due, as
``exporter jobs run --account NAME --due`` would, and drops a slot already served, so a second
beat by mistake, or a beat restarted, never makes a second run.

The cron expressions are evaluated by ``exporter.schedule`` (cronsim, the machine's time zone, as
cron and ``exporter jobs crontab`` read them), through ``CronSchedule``, a Celery schedule. Beat
keeps when it last sent each entry in its schedule file (Celery's ``PersistentScheduler``), so a
time missed while beat was down is sent once when it starts again.
"""
from __future__ import annotations

import datetime as dt
import math

from celery.beat import BeatLazyFunc
from celery.schedules import BaseSchedule, schedstate

from . import schedule
from .jobsfile import JobsFile


class CronSchedule(BaseSchedule):
    """A Celery schedule for a cron expression of a jobs file."""

    def __init__(self, expr: str, nowfun=None, app=None):
        schedule.check(expr)
        self.expr = expr
        super().__init__(nowfun=nowfun, app=app)

    def __repr__(self) -> str:
        return f"<cron {self.expr}>"

    def __reduce__(self):
        return self.__class__, (self.expr,)

    def __eq__(self, other) -> bool:
        return isinstance(other, CronSchedule) and other.expr == self.expr

    def __hash__(self) -> int:
        return hash(self.expr)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        last = self.maybe_make_aware(last_run_at)
        return schedule.next_after(self.expr, last) - self.maybe_make_aware(self.now())

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        rem = self.remaining_estimate(last_run_at).total_seconds()
        if rem <= 0:  # due: sent now; checked again at the next scheduled time
            return schedstate(True, max(self.remaining_estimate(self.now()).total_seconds(), 0.0))
        return schedstate(False, rem)


def slot_now(expr: str) -> str:
    """The slot of a task beat sends now for ``expr``: its latest time at or before now."""
    from .worker import slot_text

    return slot_text(schedule.last_at_or_before(expr, dt.datetime.now(dt.UTC)))


def entries(jobs: JobsFile, settings) -> dict:
    """Celery's ``beat_schedule`` for the jobs file: an entry per account and schedule."""
    from .worker import TASK

    path = str(jobs.path.resolve())
    out = {}
    for account in jobs.accounts.values():
        for action, expr in (("export", account.schedule), ("backup", account.backup and account.backup.schedule)):
            if not expr:
                continue
            limit = settings.task_time_limit(account)
            out[f"{account.name} {action}"] = {
                "task": TASK, "schedule": CronSchedule(expr),
                "args": (path, account.name, BeatLazyFunc(slot_now, expr)), "kwargs": {"due": True},
                "options": {"time_limit": math.ceil(limit)} if limit else {},
            }
    return out
