"""A form's submission ids, held compactly: the complete listing a source gives its sinks for the
deletions check (``Checkpoint.listing``, ``exporter.deletions``).

A listing holds every id of a form, so it grows with the form: as a ``frozenset`` of strings each
id costs about 100 bytes (the string and its slot in the table), and building it as a ``set``
first costs that twice. Service ids are decimal numbers, so an ``IdSet`` keeps those as 64-bit
integers in a sorted ``array`` (8 bytes each, looked up by bisection) and only the others, if any,
as strings. It is a read-only ``collections.abc.Set`` of strings: ``in``, ``len``, iteration and
comparison with any other set behave as a ``frozenset`` of the same ids would.
"""
from __future__ import annotations

import itertools
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Set
from typing import Any

#: the longest digit string stored as a number (any 18-digit number fits in 64 bits)
_MAX_DIGITS = 18


def _as_number(sid: str) -> int | None:
    """The id as the number it spells exactly (no sign, no leading zero, ASCII digits), else None."""
    if 0 < len(sid) <= _MAX_DIGITS and sid.isdigit() and sid.isascii() and (sid[0] != "0" or len(sid) == 1):
        return int(sid)
    return None


class IdSet(Set[str]):
    """A read-only set of ids (see the module docstring). Build one with ``IdSet(ids)`` or, while
    reading a form, with ``IdSet.Builder``."""

    __slots__ = ("_numbers", "_others")

    def __init__(self, ids: Iterable[str] = ()):
        builder = IdSet.Builder()
        for sid in ids:
            builder.add(sid)
        self._numbers, self._others = builder._sorted()

    def __contains__(self, sid: object) -> bool:
        if type(sid) is not str:
            return False
        n = _as_number(sid)
        if n is None:
            return sid in self._others
        numbers = self._numbers
        i = bisect_left(numbers, n)
        return i < len(numbers) and numbers[i] == n

    def __len__(self) -> int:
        return len(self._numbers) + len(self._others)

    def __iter__(self) -> Iterator[str]:
        return itertools.chain(map(str, self._numbers), self._others)

    def __sub__(self, other: Set[Any]) -> IdSet:  # (the mixin's, typed as what it builds)
        return IdSet(sid for sid in self if sid not in other)

    def __repr__(self) -> str:
        return f"IdSet({len(self)} ids)"

    def __reduce__(self) -> tuple:
        return _rebuild, (self._numbers, self._others)

    __hash__ = Set._hash

    class Builder:
        """Ids added one at a time (duplicates allowed), then ``done()``: the ``IdSet``."""

        __slots__ = ("_numbers", "_others")

        def __init__(self) -> None:
            self._numbers = array("q")
            self._others: set[str] = set()

        def add(self, sid: str) -> None:
            n = _as_number(sid)
            if n is None:
                self._others.add(sid)
            else:
                self._numbers.append(n)

        def _sorted(self) -> tuple[array, frozenset[str]]:
            numbers = self._numbers
            if any(a >= b for a, b in itertools.pairwise(numbers)):  # not read in order: sorted once
                numbers = array("q", (n for n, _same in itertools.groupby(sorted(numbers))))
            self._numbers = array("q")
            return numbers, frozenset(self._others)

        def done(self) -> IdSet:
            ids = IdSet.__new__(IdSet)
            ids._numbers, ids._others = self._sorted()
            return ids


def _rebuild(numbers: array, others: frozenset[str]) -> IdSet:
    ids = IdSet.__new__(IdSet)
    ids._numbers, ids._others = numbers, others
    return ids
