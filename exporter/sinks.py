"""The sink protocol: small and required, plus optional abilities detected at run time.

A sink is opened once, receives batches of canonical records (see ``exporter.model`` for the
order), commits after each batch (its durable point: state it stores advances only here) and is
closed with ``ok=False`` after any failure, when it must roll back or remove what is unfinished.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from .capabilities import Capabilities
from .model import Record


@dataclass
class RunContext:
    """What every sink is told when it opens."""

    run_id: str  # UTC timestamp "YYYYMMDDTHHMMSSZ", unique per run
    source: str  # masked source description
    mode: str = "full"  # "full", "cursor" or "unread"
    formats: tuple[str, ...] = ("json", "csv")
    #: set in the worker processes of a parallel export (``--jobs``): the run's own bookkeeping
    #: (its row in a runs table, its final counts) is left to the parent process, which holds the
    #: run open until every worker is done and then adds the workers' counts with ``add_counts``
    worker: int | None = None
    #: ``--deletions`` and ``--max-deletions`` (``exporter.deletions.parse_policy``)
    deletions: str = "soft"
    max_deletions: str | None = None
    #: ``--pseudonymise``: an ``exporter.privacy.PseudonymiseSpec`` (its key by reference), or None
    privacy: object | None = None

    def deletion_policy(self):
        from .deletions import parse_policy

        return parse_policy(self.deletions, self.max_deletions)


@runtime_checkable
class Sink(Protocol):
    name: str  # human-readable destination, secrets masked
    capabilities: Capabilities

    def open(self, ctx: RunContext) -> None: ...

    def write(self, batch: Sequence[Record]) -> None: ...

    def commit(self) -> None: ...

    def close(self, ok: bool) -> None: ...


@runtime_checkable
class StatefulSink(Protocol):
    """A sink that remembers each form's incremental cursor, stored with its data."""

    def load_state(self) -> dict[str, str | None]: ...


@runtime_checkable
class RecordsFailures(Protocol):
    """A sink that records its runs (a SQL ``runs`` table): told before ``close(False)`` how the
    run ended (``failed`` or ``interrupted``) and its one-line cause, secrets already masked."""

    def note_failure(self, status: str, message: str) -> None: ...


@runtime_checkable
class HoldsIds(Protocol):
    """A sink that can say which submission ids it holds for a form (a set, or None when it
    cannot tell): the deletions check before a run (``exporter.deletions.preflight``)."""

    name: str

    def held_ids(self, form_id: str) -> set[str] | None: ...


@runtime_checkable
class AddsCounts(Protocol):
    """A sink that records a run's counts and is told those of a parallel export's workers
    (``exporter.parallel``), added once they are all done."""

    def add_counts(self, counts: dict[str, int]) -> None: ...


@dataclass
class SinkStats:
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    def add(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n
