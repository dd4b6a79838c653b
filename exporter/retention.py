"""Which backups to keep: the rules of restic's ``forget``, as a pure function.

``keep_last N`` keeps the N most recent backups. ``keep_daily N`` keeps, for each of the last N
days that have a backup, the most recent backup of that day; ``keep_weekly`` (ISO weeks),
``keep_monthly`` and ``keep_yearly`` the same per week, month and year. The rules add up: a
backup is kept when any rule keeps it. Days, weeks... are counted among those that *have* a
backup, newest first, so a gap in the schedule never makes the policy drop more than asked.

Whatever the policy, the newest good backup is always kept, and a policy that keeps nothing
(every count 0) is refused: pruning only ever follows an explicit policy.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TypeVar

from .errors import ConfigError

T = TypeVar("T")

_BUCKETS: dict[str, Callable[[dt.datetime], object]] = {
    "keep_daily": lambda t: t.date(),
    "keep_weekly": lambda t: t.isocalendar()[:2],
    "keep_monthly": lambda t: (t.year, t.month),
    "keep_yearly": lambda t: t.year,
}


@dataclass(frozen=True)
class Retention:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{f.name} must be a whole number >= 0, not {value!r}")

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name)) or "none"


def select(items: Sequence[T], when: Callable[[T], dt.datetime], good: Callable[[T], bool],
           policy: Retention) -> tuple[list[T], list[T]]:
    """(kept, removed) among ``items``, newest first in each. Only good backups fill the
    policy's slots (a bad one never stands in for a day); bad ones are removed, except that
    nothing is removed when no good backup exists at all."""
    if policy.empty:
        raise ConfigError("no retention policy: give at least one of keep_last, keep_daily, keep_weekly, "
                          "keep_monthly, keep_yearly")
    ordered = sorted(items, key=when, reverse=True)
    goods = [b for b in ordered if good(b)]
    if not goods:
        return ordered, []
    keep_ids: set[int] = {id(goods[0])}  # the newest good backup, whatever the policy says
    for i, b in enumerate(goods):
        if i < policy.keep_last:
            keep_ids.add(id(b))
    for rule, bucket in _BUCKETS.items():
        left = getattr(policy, rule)
        last = object()
        for b in goods:
            if left <= 0:
                break
            key = bucket(when(b))
            if key != last:
                keep_ids.add(id(b))
                last = key
                left -= 1
    kept = [b for b in ordered if id(b) in keep_ids]
    removed = [b for b in ordered if id(b) not in keep_ids]
    return kept, removed
