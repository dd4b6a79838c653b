"""Reading ahead of the consumer: the web source keeps fetching while the sinks write a batch.

The pipeline writes and commits a batch with the source's generator suspended; with a service far
away, that pause stopped every request in flight. ``ReadAhead`` runs the generator in a thread of
its own and hands its records over through a queue of at most ``size`` records, in order, so
memory stays bounded and the output is the same. An exception in the generator is raised to the
consumer at the place it happened; ``close()`` (or closing the iterator) stops the thread.

Not for unread mode: there the source must wait for each page's acknowledgement before it asks
for the next page, which only the consumer gives.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Generator, Iterator
from typing import Any

from exporter.model import blob_bytes

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class ReadAhead:
    """Iterate ``records`` in a background thread, at most ``size`` records and ``max_bytes`` of
    media and documents ahead (a record bigger than that still goes, alone)."""

    def __init__(self, records: Iterator[Any], size: int, max_bytes: int = 16 << 20):
        self._records = records
        self.size, self.max_bytes = max(1, size), max_bytes
        self._items: collections.deque = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._produce, name="kizeo-read-ahead", daemon=True)
        self._thread.start()

    _weight = staticmethod(blob_bytes)

    def _put(self, item: Any) -> bool:
        with self._cond:
            while not self._stop and self._items and (len(self._items) >= self.size or self._bytes >= self.max_bytes):
                self._cond.wait()
            if self._stop:
                return False
            self._items.append(item)
            self._bytes += self._weight(item)
            self._cond.notify_all()
            return True

    def _get(self) -> Any:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            self._bytes -= self._weight(item)
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
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)  # a request in flight finishes on its own (daemon thread)
