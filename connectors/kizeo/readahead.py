"""Reading ahead of the consumer: the web source keeps fetching while the sinks write a batch.

The pipeline writes and commits a batch with the source's generator suspended; with a service far
away, that pause stopped every request in flight. ``ReadAhead`` runs the generator in a thread of
its own and hands its records over through a queue of at most ``size`` records, in order, so
memory stays bounded and the output is the same. An exception in the generator is raised to the
consumer at the place it happened; ``close()`` (or closing the iterator) stops the thread.

Not for unread mode: there the source must wait for each page's acknowledgement before it asks
for the next page, which only the consumer gives.

``FormsAhead`` reads the forms of a run this way, one ``ReadAhead`` per form, and starts the next
form as soon as the one being read has asked for its last submission: without it the pool of
workers drained at every form boundary (the last requests of a form in flight, nothing else).
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

from exporter.model import blob_bytes

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Budget:
    """What one or more readers may hold queued, together: ``size`` records and ``max_bytes`` of
    media (each reader may still queue one record when its own queue is empty, so the consumer
    never waits for a reader that another one crowds out)."""

    def __init__(self, size: int, max_bytes: int = 16 << 20):
        self.size, self.max_bytes = max(1, size), max_bytes
        self.count = 0
        self.bytes = 0
        self.cond = threading.Condition()

    def full(self) -> bool:
        return self.count >= self.size or self.bytes >= self.max_bytes


class ReadAhead:
    """Iterate ``records`` in a background thread, at most ``size`` records and ``max_bytes`` of
    media and documents ahead (a record bigger than that still goes, alone), or within a
    ``budget`` shared with other readers."""

    def __init__(self, records: Iterator[Any], size: int = 1000, max_bytes: int = 16 << 20,
                 budget: Budget | None = None):
        self._records = records
        self._budget = budget if budget is not None else Budget(size, max_bytes)
        self._items: collections.deque = collections.deque()
        self._bytes = 0  # media bytes in this reader's queue
        self._cond = self._budget.cond
        self._stop = False
        self._thread = threading.Thread(target=self._produce, name="kizeo-read-ahead", daemon=True)
        self._thread.start()

    _weight = staticmethod(blob_bytes)

    def _put(self, item: Any) -> bool:
        budget = self._budget
        with self._cond:
            while not self._stop and self._items and budget.full():
                self._cond.wait()
            if self._stop:
                return False
            self._items.append(item)
            w = self._weight(item)
            self._bytes += w
            budget.count += 1
            budget.bytes += w
            self._cond.notify_all()
            return True

    def _get(self) -> Any:
        budget = self._budget
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            w = self._weight(item)
            self._bytes -= w
            budget.count -= 1
            budget.bytes -= w
            self._cond.notify_all()
            return item

    def _produce(self) -> None:
        try:
            for r in self._records:
                if not self._put(r):
                    return
            self._put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._put(_Failure(e))
        finally:
            if isinstance(self._records, Generator):
                self._records.close()

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                item = self._get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            self.close()

    @property
    def queued(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Stop reading ahead (records not consumed yet are dropped). Safe to call twice."""
        with self._cond:
            self._stop = True
            self._budget.count -= len(self._items)
            self._budget.bytes -= self._bytes
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)  # a request in flight finishes on its own (daemon thread)


class FormsAhead:
    """The records of ``fids``, form after form, each form read ahead of its turn.

    ``begin(fid)`` (a form's definition and id list) runs on ``pool`` while the form before is
    read. With ``overlap``, each form's records (``read(fid, begun)``) come from a ``ReadAhead``
    of their own, and the next form's reader starts as soon as the form before calls
    ``asked_all()`` (its last submission is asked for: only its last answers are in flight), even
    while the consumer is still busy with an earlier form (small forms follow one another
    without a pause), up to ``ahead`` forms beyond the one the consumer reads. The readers share
    one ``Budget``: at most ``size`` records and ``max_bytes`` of media ahead of the consumer in
    all, as with one reader (plus one record per reader whose own queue is empty). Without
    ``overlap`` (unread mode, whose pages wait for acknowledgements, or no read-ahead at all)
    each form is read in the consumer's thread, only its beginning ahead.
    """

    def __init__(self, fids: Sequence[str], pool: cf.ThreadPoolExecutor, begin: Callable[[str], Any],
                 read: Callable[[str, Any], Iterator], *, overlap: bool, size: int, max_bytes: int = 16 << 20,
                 ahead: int = 4):
        self.fids, self.pool, self.begin, self.read, self.overlap = list(fids), pool, begin, read, overlap
        self.ahead = max(1, ahead)
        self.budget = Budget(size, max_bytes)
        self._lock = threading.Lock()
        self._begun: dict[int, cf.Future] = {}
        self._readers: dict[int, ReadAhead] = {}
        self._asked: set[int] = set()  # forms that asked for all their submissions (-1: before the first form)
        self._threads: dict[int, int] = {}  # reader thread -> its form
        self._current = -1
        self._closed = False
        self._begin_at(0)
        if overlap:  # the first form is read at once (while the consumer takes what comes before it)
            self.asked_all()

    def _begin_at(self, k: int) -> None:
        if k < len(self.fids) and k not in self._begun:
            self._begun[k] = self.pool.submit(self.begin, self.fids[k])

    def _records(self, k: int) -> Iterator:
        me = threading.get_ident()
        with self._lock:
            self._threads[me] = k
        try:
            yield from self.read(self.fids[k], self._begun[k].result())
        finally:
            with self._lock:
                self._threads.pop(me, None)

    def _start(self, k: int) -> ReadAhead | None:
        """Form ``k``'s reader, started now if it was not (called with the lock held); the next
        form's beginning is asked for from now on."""
        self._begin_at(k)
        self._begin_at(k + 1)
        if not self.overlap:
            return None
        if k not in self._readers and not self._closed:
            self._readers[k] = ReadAhead(self._records(k), budget=self.budget)
        return self._readers.get(k)

    def asked_all(self) -> None:
        """The caller's form has asked for everything it will ask: the next form may start. (Outside
        any form's reader: the part before the first form, which starts at once anyway.)"""
        with self._lock:
            self._asked.add(self._threads.get(threading.get_ident(), -1))
            self._start_due()

    def _start_due(self) -> None:
        """Start every form whose predecessor asked for everything, up to ``ahead`` forms beyond
        the one the consumer reads (called with the lock held)."""
        for k in range(self._current + 1, min(len(self.fids), self._current + 1 + self.ahead)):
            if k not in self._readers:
                if k - 1 not in self._asked:
                    return
                self._start(k)

    def __iter__(self) -> Iterator:
        try:
            for k, fid in enumerate(self.fids):
                with self._lock:
                    if self._closed:
                        return
                    self._current = k
                    reader = self._start(k)
                    self._start_due()
                try:
                    if reader is None:  # read here; the next form's beginning is asked for meanwhile
                        yield from self.read(fid, self._begun[k].result())
                    else:
                        yield from reader
                finally:
                    with self._lock:
                        self._readers.pop(k, None)
                        self._begun.pop(k, None)
                    if reader is not None:
                        reader.close()
        finally:
            self.close()

    @property
    def queued(self) -> int:
        return self.budget.count

    def close(self) -> None:
        """Stop every reader (safe to call twice)."""
        with self._lock:
            self._closed = True
            readers = list(self._readers.values())
            self._readers.clear()
        for r in readers:
            r.close()
