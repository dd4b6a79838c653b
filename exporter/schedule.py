"""Cron schedules of the jobs file: checked, evaluated and written out for cron and systemd.

Expressions are the five fields of cron (minute hour day-of-month month day-of-week, with
lists, ranges, steps and names) or one of ``@hourly @daily @weekly @monthly @yearly``; they are
parsed and evaluated by ``cronsim`` (the evaluator of healthchecks.io), in the machine's local time
zone (``TZ``, else ``/etc/localtime``), as cron itself reads them. ``due`` tells whether a
scheduled time has passed since the last run; ``on_calendar`` writes the same times for a systemd
timer (or None when systemd cannot say them: the timer then wakes every minute and ``--due``
decides).
"""
from __future__ import annotations

import datetime as dt
import os
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import ConfigError

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


@lru_cache(maxsize=1)
def local_zone() -> dt.tzinfo:
    """The machine's time zone, as cron uses it: ``TZ``, else ``/etc/localtime``, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return dt.UTC


def expand(expr: str) -> str:
    """``expr`` with an ``@alias`` written out; white space normalised."""
    text = " ".join(str(expr).split())
    return ALIASES.get(text.lower(), text)


def check(expr: str) -> CronSim:
    """The parsed expression, or a ConfigError saying what is wrong with it."""
    text = expand(expr)
    if text.startswith("@"):
        raise ConfigError(f"unknown schedule {expr!r}: use five cron fields or one of {', '.join(ALIASES)}")
    if len(text.split()) != 5:
        raise ConfigError(f"schedule {expr!r} must have five fields (minute hour day month weekday), "
                          f"it has {len(text.split())}")
    try:
        return CronSim(text, dt.datetime.now(local_zone()))
    except CronSimError as e:
        raise ConfigError(f"bad schedule {expr!r}: {str(e).lower()}") from None
    except (ValueError, IndexError) as e:  # pragma: no cover - cronsim reports its own errors
        raise ConfigError(f"bad schedule {expr!r}: {e}") from None


def next_after(expr: str, after: dt.datetime) -> dt.datetime:
    """The first scheduled time strictly after ``after`` (aware), in local time."""
    return next(CronSim(expand(expr), after.astimezone(local_zone())))


def last_at_or_before(expr: str, at: dt.datetime) -> dt.datetime:
    """The latest scheduled time at or before ``at`` (aware), in local time."""
    return next(CronSim(expand(expr), (at + dt.timedelta(microseconds=1)).astimezone(local_zone()), reverse=True))


def due(expr: str, last: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a scheduled time falls after ``last`` and at or before ``now``; an account that never
    ran is due."""
    return last is None or next_after(expr, last) <= now


def _cron_can_read(c: CronSim) -> bool:
    """Whether cron itself reads the expression: no last day (``L``), nearest weekday (``W``) or
    n-th weekday (``#``), which cronsim knows and cron does not."""
    return all(isinstance(d, int) and d > 0 for d in c.days) and all(isinstance(d, int) for d in c.weekdays)


def cron_line(expr: str) -> str:
    """The five fields for a crontab line; an expression cron cannot read (``L``, ``W``, ``#``)
    becomes every minute (``--due`` then decides)."""
    return expand(expr) if _cron_can_read(check(expr)) else "* * * * *"


def _field(values, full: range, width: int = 2) -> str:
    vals = sorted(values)
    if vals == list(full):
        return "*"
    return ",".join(f"{v:0{width}d}" for v in vals)


def on_calendar(expr: str) -> list[str] | None:
    """systemd ``OnCalendar=`` values for ``expr`` (two when both day fields are restricted: cron
    then runs on either, systemd only on both); None when systemd cannot express it."""
    c = check(expr)
    if not _cron_can_read(c):
        return None
    minutes, hours = _field(c.minutes, range(60)), _field(c.hours, range(24))
    days, months = _field(c.days, range(1, 32)), _field(c.months, range(1, 13))
    # _cron_can_read let only plain weekdays through (no (day, nth) pairs of ``#`` or ``L``)
    weekdays = sorted({d % 7 for d in c.weekdays if isinstance(d, int)})
    dow = "" if weekdays == list(range(7)) else ",".join(_DAYS[d] for d in weekdays) + " "
    time = f"{hours}:{minutes}:00"
    if dow and days != "*" and not c.day_and:
        return [f"*-{months}-{days} {time}", f"{dow}*-{months}-* {time}"]
    return [f"{dow}*-{months}-{days} {time}"]
