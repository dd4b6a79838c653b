"""Loads that run on a background thread while the caller reads and parses the next batch.

A bulk loader (``pg_copy.CopyLoader``, ``mysql_insert.MultiRowLoader``) mixes in
:class:`Overlapping`; after ``overlap()`` its statements and the batch's commit go to one
:class:`Background` thread, in order. The caller builds everything in Python (COPY data,
statements) and hands over closures that are almost only driver calls, which release the
interpreter lock while the server works; so the two threads hardly compete.
"""
from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any

import sqlalchemy as sa


class DeferredError(Exception):
    """A statement run in the background failed; raised by the next ``drain()``."""

    def __init__(self, label: str, error: BaseException):
        super().__init__(f"{label}: {error}")
        self.label = label
        self.error = error


class Background:
    """One thread that runs a connection's statements in the order they were handed over, while the
    caller goes on (reading and parsing the next batch). The caller builds everything in Python
    (COPY text, statements) and hands over closures that are almost only driver calls, which
    release the interpreter lock while the server works; so the two threads hardly compete.

    Rules: the caller touches the connection only after ``drain()`` (``CopyLoader`` drains before
    every statement it or anybody else runs on the connection); after a failure the remaining
    closures are skipped (the transaction is lost anyway) and the next ``drain()`` raises the
    failure as ``DeferredError``."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._cv = threading.Condition()
        self._pending = 0
        self._error: DeferredError | None = None
        self._thread = threading.Thread(target=self._loop, name="exporter-sql-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            label, fn = item
            if self._error is None:
                try:
                    fn()
                except BaseException as e:  # noqa: BLE001 - handed to the caller by drain()
                    self._error = DeferredError(label, e)
            with self._cv:
                self._pending -= 1
                if not self._pending:
                    self._cv.notify_all()

    def in_worker(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, label: str, fn: Any) -> None:
        with self._cv:
            self._pending += 1
        self._q.put((label, fn))

    def drain(self) -> None:
        """Wait until everything handed over has run; raise the first failure."""
        with self._cv:
            while self._pending:
                if not self._cv.wait(timeout=1.0) and not self._thread.is_alive():
                    self._pending = 0
                    self._error = self._error or DeferredError(
                        "background writer", RuntimeError("the background writer thread stopped"))
        err, self._error = self._error, None
        if err is not None:
            raise err

    def stop(self) -> None:
        with contextlib.suppress(DeferredError):
            self.drain()
        self._q.put(None)
        self._thread.join(timeout=60)


class Overlapping:
    """A loader whose statements can run on a ``Background`` thread (``overlap()``), while the
    caller reads and parses the next batch."""

    conn: sa.Connection
    _background: Background | None = None
    overlapping = False

    # ------------------------------------------------------------------ background
    def overlap(self) -> None:
        """Run bulk loads and commits on a background thread from now on (``stop()`` ends it).
        Every statement anybody runs on the connection through SQLAlchemy first waits for them."""
        if self._background is None:
            self._background = Background()
            self.overlapping = True
            sa.event.listen(self.conn, "before_cursor_execute", self._before_execute)

    def _before_execute(self, *_args: Any, **_kw: Any) -> None:
        self.settle()

    def drain(self) -> None:
        if self._background is not None:
            self._background.drain()

    def submit(self, label: str, fn: Any) -> None:
        """Hand ``fn`` to the background thread (``overlap()`` first; without it, run it now)."""
        if self._background is None:
            fn()
            return
        self._background.submit(label, fn)

    def stop(self) -> None:
        bg, self._background = self._background, None
        if bg is not None:
            self.overlapping = False
            with contextlib.suppress(Exception):
                sa.event.remove(self.conn, "before_cursor_execute", self._before_execute)
            bg.stop()

    def later(self, label: str, fn: Any) -> None:
        """Run ``fn`` on the background thread when there is one (in its turn), else now."""
        bg = self._background
        if bg is None or bg.in_worker():
            fn()
        else:
            bg.submit(label, fn)

    def settle(self) -> None:
        """Before using the connection directly (not through SQLAlchemy): wait for the background
        thread, unless this is it."""
        bg = self._background
        if bg is not None and not bg.in_worker():
            bg.drain()
