"""Deletions: submissions a destination holds that the form's complete listing no longer has.

A source that read a form's complete id listing (``data/all`` in full mode, or with
``--check-deletions``; every id of an archive replayed in full) puts it on the form's final
``Checkpoint`` (``listing``). A sink compares it with the ids it holds for the form; the ids it
holds and the listing lacks were erased on the service. No listing (it failed, was cut short, or
was not read) means no deletion at all.

Safety first: a form whose deletions exceed the limit (``--max-deletions``: a count, or a
percentage of the ids the destination holds for the form; 10% by default) refuses the run with one
line (``DeletionsRefused``), before anything of that batch is committed anywhere.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Set
from dataclasses import dataclass

from .errors import ConfigError, ExporterError
from .sinks import HoldsIds
from .sources import ListsIds

MODES = ("soft", "hard")
DEFAULT_MAX = "10%"


class DeletionsRefused(ExporterError):
    """A run would delete more submissions of a form than ``--max-deletions`` allows."""


@dataclass(frozen=True)
class DeletionPolicy:
    """``mode``: ``soft`` marks the rows (``deleted_at``), ``hard`` removes them. ``count`` or
    ``percent``: the most deletions allowed per form."""

    mode: str = "soft"
    count: int | None = None
    percent: float | None = 10.0

    def limit(self, held: int) -> int:
        """The most deletions allowed for a form of which the destination holds ``held`` ids."""
        if self.count is not None:
            return self.count
        return math.floor(held * (self.percent or 0.0) / 100 + 1e-9)

    def check(self, form_id: str, doomed: int, held: int, where: str) -> None:
        """Refuse (one line) when ``doomed`` deletions of ``held`` ids exceed the limit."""
        allowed = self.limit(held)
        if doomed > allowed:
            what = f"{self.count}" if self.count is not None else f"{self.percent:g}% of {held} = {allowed}"
            raise DeletionsRefused(
                f"form {form_id}: {doomed} of {held} submissions are gone from the service, more than "
                f"--max-deletions allows ({what}); nothing was deleted. Check the account, then run "
                f"again with a higher --max-deletions if these deletions are real", context=where)


def parse_policy(mode: str | None = None, max_deletions: str | None = None) -> DeletionPolicy:
    """``--deletions soft|hard`` and ``--max-deletions N|P%`` as a policy (ConfigError if bad)."""
    mode = (mode or "soft").strip().lower()
    if mode not in MODES:
        raise ConfigError(f"--deletions takes soft or hard (not {mode!r})")
    text = (max_deletions or DEFAULT_MAX).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not (0 <= pct <= 100) or math.isnan(pct):
                raise ValueError
            return DeletionPolicy(mode, None, pct)
        n = int(text)
        if n < 0:
            raise ValueError
        return DeletionPolicy(mode, n, None)
    except ValueError:
        raise ConfigError(f"--max-deletions takes a count (50) or a percentage of a form (5%), not {text!r}") from None


def preflight(source: object, sinks: Iterable[object], policy: DeletionPolicy) -> None:
    """Before any destination is opened: each form's complete listing (a ``sources.ListsIds``
    source's ``listing(form_id)``, when its ``lists_ids`` is true) against the ids each destination
    holds for it (a ``sinks.HoldsIds`` sink's ``held_ids(form_id)``: a set, or None). Only forms
    some destination holds are listed, one at a time. A form over the limit refuses the run here, so nothing
    anywhere is changed. The same check is made again when the deletions are applied (the
    service may change meanwhile)."""
    holders = [s for s in sinks if isinstance(s, HoldsIds)]
    if not isinstance(source, ListsIds) or not source.lists_ids or not holders:
        return
    for form_id in source.form_ids():
        held = [(s, ids) for s in holders if (ids := s.held_ids(str(form_id)))]
        if not held:
            continue
        listing = source.listing(str(form_id))
        for s, ids in held:
            policy.check(str(form_id), len(doomed_ids(ids, listing)), len(ids), s.name)


def doomed_ids(held: Iterable[str], listing: Iterable[str]) -> list[str]:
    """The ids held that the complete listing lacks, sorted."""
    listed = listing if isinstance(listing, Set) else set(listing)  # an ``IdSet`` too, as it is
    return sorted(i for i in held if i not in listed)
