"""The source protocol: small and required, plus optional abilities as separate protocols.

A source yields the canonical records (``exporter.model``), is told which batches every sink has
committed (``acknowledge``) and is closed once. What only some sources can do (say they are
reachable, list a form's ids, weigh a form, count their submissions ahead) is a protocol of its
own, tested with ``isinstance``: no source stubs what it cannot do.
"""
from __future__ import annotations

from typing import AbstractSet, Iterator, Protocol, Sequence, runtime_checkable

from .model import Record


class Source(Protocol):
    description: str

    def records(self, state: dict[str, str | None]) -> Iterator[Record]: ...

    def acknowledge(self, batch: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class CheckedSource(Protocol):
    """A source that can say it is reachable and its token accepted, before any sink opens."""

    def check(self) -> None: ...


@runtime_checkable
class FormsSource(Protocol):
    """A source that lists its forms' ids (in the order it reads them)."""

    def form_ids(self) -> list[str]: ...


@runtime_checkable
class ListsIds(FormsSource, Protocol):
    """A source that can read each form's complete id listing (``exporter.deletions``);
    ``lists_ids`` says whether this run does."""

    @property
    def lists_ids(self) -> bool: ...

    def listing(self, form_id: str) -> AbstractSet[str]: ...


@runtime_checkable
class WeighsForms(FormsSource, Protocol):
    """A source holding an immutable snapshot that can weigh each form (``exporter.parallel``)."""

    def form_weight(self, form_id: str) -> int: ...


@runtime_checkable
class CountsSubmissions(Protocol):
    """A source that knows ahead how many submissions it holds (for a progress bar's total)."""

    @property
    def expected_submissions(self) -> int | None: ...
