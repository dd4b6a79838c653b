"""``--workers auto``: how many requests may be in flight, adapted as the run goes (AIMD).

The limit starts at 4 (the default ``--workers``). Each *round* (as many completed requests as the limit) measures the
throughput. At first the limit doubles while the throughput grows from one round to the next (a
slow start, as TCP's: 4, 8, 16 in two rounds, where one more per round took twelve); the first
doubling that brings no growth goes back to the limit before it plus one, and from there the
limit goes up by one while the throughput grows, and holds when it stops growing. A sign of
congestion (429, 503, a timeout: any transient failure) halves it at once, once for all the
requests that were in flight then (they share one sign), and ends the slow start. It stays
between ``low`` and ``high`` (1 and 16). No rate limit is documented for the service, so this
is how the exporter finds what it may ask without being told.

The controller is deterministic given its clock, so it is unit-tested without a network.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from exporter.errors import TransientSourceError

log = logging.getLogger("exporter.kizeo")

MAX_WORKERS = 16


class AIMD:
    """A gate for requests: ``with gate.slot(): send()`` waits while ``limit`` requests are in
    flight. ``growth``: the least throughput gain (1.05 = 5 %) that counts as growing."""

    def __init__(self, *, low: int = 1, high: int = MAX_WORKERS, start: int = 4, growth: float = 1.05,
                 clock: Callable[[], float] = time.monotonic):
        if not 1 <= low <= start <= high:
            raise ValueError("AIMD needs 1 <= low <= start <= high")
        self.low, self.high, self.growth = low, high, growth
        self.limit = start
        self.peak = start
        self.decreases = 0
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight = 0
        self._done = 0
        self._round_start = clock()
        self._last_rate: float | None = None
        self._epoch = 0  # counts decreases: a request started before the last one cannot cause another
        self._slow = True  # slow start: doubling while the throughput grows
        self._doubled_from, self._rate_before = start, 0.0  # the limit before the last doubling, its throughput

    def __repr__(self) -> str:
        return f"AIMD(limit={self.limit}, {self.low}..{self.high})"

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self) -> int:
        """Wait for a place; returns the ticket to give back to ``release``."""
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1
            return self._epoch

    def release(self, ticket: int, congested: bool = False) -> None:
        """One request ended; ``congested`` when it met a sign of congestion."""
        with self._cond:
            self._in_flight -= 1
            if congested:
                if ticket == self._epoch:
                    self._decrease()
            else:
                self._done += 1
                if self._done >= self.limit:
                    self._end_round()
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one place while the body runs; a transient failure inside counts as congestion."""
        ticket = self.acquire()
        try:
            yield
        except TransientSourceError:
            self.release(ticket, congested=True)
            raise
        except BaseException:
            self.release(ticket)
            raise
        self.release(ticket)

    # ---- the rule (called with the lock held) ------------------------------------------------
    def _end_round(self) -> None:
        now = self._clock()
        rate = self._done / max(now - self._round_start, 1e-9)
        grew = self._last_rate is None or rate > self._last_rate * self.growth
        if self._slow and not grew:  # the last doubling brought nothing: from before it, one by one
            self._slow = False
            self.limit = min(self._doubled_from + 1, self.limit)
            rate = self._rate_before
            log.debug("%.1f requests/s: %d in flight now", rate, self.limit)
        elif grew and self.limit < self.high:
            if self._slow:
                self._doubled_from, self._rate_before = self.limit, rate
            self.limit = min(self.high, 2 * self.limit if self._slow else self.limit + 1)
            self.peak = max(self.peak, self.limit)
            log.debug("%.1f requests/s: %d in flight now", rate, self.limit)
        elif grew:  # at the top
            self._slow = False
        self._last_rate = rate
        self._done = 0
        self._round_start = now

    def _decrease(self) -> None:
        new = max(self.low, self.limit // 2)
        if new != self.limit:
            log.info("the service shows congestion: %d requests in flight now (was %d)", new, self.limit)
        self.limit = new
        self.decreases += 1
        self._epoch += 1
        self._slow = False  # no more doubling after congestion
        self._last_rate = None  # the next round measures afresh, then growth resumes
        self._done = 0
        self._round_start = self._clock()
