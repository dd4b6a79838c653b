"""What changed since a time, read from ``data/advanced`` in bounded time windows.

One unbounded ``data/advanced`` answer times out on big forms in production, and holds the whole
answer in memory. So a form is read window by window, oldest first: ``[lo, hi)`` then ``[hi, ...)``,
the last window open-ended. The first window spans a week (``FIRST_SPAN``): a nightly run's window
is open-ended at once, and an old cursor on a big form does not start with a search that times
out. A window whose answer times out (``AnswerTimeout``: a 504 or a stalled answer) or holds more
than ``limit`` records is halved and asked again; a window that brought few records doubles the
next one, so a sparse form needs few requests.

Which submissions: whether the service fills ``_update_time`` on a never-edited submission is not
documented, so a window asks for ``_update_time`` in it OR ``_create_time`` in it. A submission is
kept in the one window that holds its *change time*, the later of the two (``change_time``): an
edited submission also matches the window of its creation, where it is dropped. The windows follow
one another without gap or overlap, so every submission changed since ``since`` comes exactly once,
including those on a window's border (``>=`` on the low side, ``<`` on the high side).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator

from exporter.errors import ConfigError

from .http_errors import AnswerTimeout

log = logging.getLogger("exporter.kizeo")

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
WINDOW_LIMIT = 1000  # records per answer, at most, before a window is halved
ONE_SECOND = dt.timedelta(seconds=1)
FIRST_SPAN = dt.timedelta(days=7)


def change_time(raw: dict) -> str:
    """The later of a flat record's ``_update_time`` and ``_create_time`` (either may be empty)."""
    return max(str(raw.get("_update_time") or ""), str(raw.get("_create_time") or ""))


def window_filter(lo: str, hi: str | None) -> list[dict]:
    """``data/advanced`` filters: updated or created in ``[lo, hi)`` (``hi`` None: no end)."""
    def within(field: str) -> dict:
        parts = [{"field": field, "operator": ">=", "type": "simple", "val": lo}]
        if hi is not None:
            parts.append({"field": field, "operator": "<", "type": "simple", "val": hi})
        return {"type": "AND", "components": parts}

    return [{"type": "OR", "components": [within("_update_time"), within("_create_time")]}]


def _parse(text: str) -> dt.datetime:
    return dt.datetime.strptime(text[:19], TIME_FORMAT)


def _text(t: dt.datetime) -> str:
    return t.strftime(TIME_FORMAT)


def changed_since(fetch: Callable[[str, str | None], list[dict]], since: str, *, limit: int = WINDOW_LIMIT,
                  now: Callable[[], dt.datetime] = dt.datetime.now, describe: str = "form") -> Iterator[list[dict]]:
    """Yield, window after window, the flat records changed at or after ``since``, each window's
    sorted by change time. ``fetch(lo, hi)`` asks the service for one window (``window_filter``)
    and raises ``AnswerTimeout`` when the answer does not come. ``now`` is the local clock: the
    service's times are the account's local time, so everything after ``now() + 1 day`` is one
    open-ended window whatever the time zone."""
    try:
        lo = _parse(since)
    except ValueError:
        raise ConfigError(f"{describe}: the stored cursor {since!r} is not a time (YYYY-MM-DD HH:MM:SS)") from None
    horizon = now().replace(microsecond=0) + dt.timedelta(days=1)
    span: dt.timedelta | None = FIRST_SPAN  # None: the window has no end
    while True:
        if span is not None and lo + span >= horizon:
            span = None
        lo_text = _text(lo)
        hi_text = None if span is None else _text(lo + span)
        try:
            rows = fetch(lo_text, hi_text)
        except AnswerTimeout as e:
            span = _halved(lo, span, horizon)
            if span is None:
                raise AnswerTimeout(f"{e.message}, even for the submissions of one second ({lo_text}); "
                                    "the service cannot answer for less", context=e.context) from None
            log.info("%s: the search from %s timed out (%s); asking for %s at a time", describe, lo_text,
                     e.message, span)
            continue
        if len(rows) > limit:
            smaller = _halved(lo, span, horizon)
            if smaller is not None:
                log.info("%s: %d records from %s is more than %d; asking for %s at a time", describe,
                         len(rows), lo_text, limit, smaller)
                span = smaller
                continue
        kept = [r for r in rows if isinstance(r, dict) and lo_text <= change_time(r)
                and (hi_text is None or change_time(r) < hi_text)]
        del rows
        kept.sort(key=change_time)
        yield kept
        if span is None:
            return
        lo += span
        if len(kept) < limit // 4:
            span *= 2


def _halved(lo: dt.datetime, span: dt.timedelta | None, horizon: dt.datetime) -> dt.timedelta | None:
    """Half of the window starting at ``lo`` (an open one reaches ``horizon``), in whole seconds;
    None when it is one second already, or is an open one at or past ``horizon`` (a half of it
    would be open again: asking again would never end)."""
    whole = span if span is not None else horizon - lo
    if whole <= ONE_SECOND:
        return None
    return max(ONE_SECOND, dt.timedelta(seconds=int(whole.total_seconds()) // 2))


def clock_set_back(cursor: str, timezone: str | None, now: dt.datetime | None = None) -> int:
    """Seconds to read back further than ``cursor`` because the account's clock was set back.

    Times are served as wall-clock text (no offset). When ``timezone``'s clock is set back (the
    autumn DST change) less than that much after the cursor's instant, the hour that comes twice
    holds changes made *after* the cursor with an *earlier* wall time: reading from the cursor would
    miss them. Then the jump is returned (to add to the overlap); else 0, and 0 without a time zone
    (the cursor's wall time, when it comes twice, is taken at its first occurrence)."""
    if not timezone:
        return 0
    import zoneinfo

    try:
        zone = zoneinfo.ZoneInfo(timezone)
        start = dt.datetime.strptime(cursor[:19], TIME_FORMAT).replace(tzinfo=zone, fold=0)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return 0
    begin = start.astimezone(dt.UTC)
    end = min(now or dt.datetime.now(dt.UTC), begin + MAX_SET_BACK)
    before, after = begin.astimezone(zone).utcoffset(), end.astimezone(zone).utcoffset()
    if before is None or after is None or after >= before:
        return 0
    return int((before - after).total_seconds())


#: the largest clock change of any time zone (a DST change is 1 hour; a few are 30 minutes)
MAX_SET_BACK = dt.timedelta(hours=2)
