"""Scheduled misbehaviour of the fake Kizeo service (``fake_server``): 429, 503, dropped
connections, latency, malformed JSON, cut downloads, and answers too big for the service."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Faults:
    """Scheduled misbehaviour. ``*_every=N`` hits every Nth request (counted over all requests,
    1-based); ``0`` disables it. When several would hit the same request, the first in this order
    wins: drop, 429, 503, malformed. A request whose method and path got a scheduled fault on each
    of its last ``max_in_a_row`` attempts is answered normally (``0``: no limit): with several
    clients sharing the counter, one request's retries could otherwise keep landing on faulted
    counts, and a client that retries a few times would fail at random."""

    rate_limit_every: int = 0
    retry_after: str | float = 1  # the Retry-After sent with a 429: seconds, or an HTTP date string
    fail_503_every: int = 0
    drop_every: int = 0  # close the connection without answering
    latency: float = 0.0  # seconds to wait before every answer
    malformed_every: int = 0  # a truncated JSON body with status 200
    malformed_paths: tuple[str, ...] = ()  # glob patterns (path after /rest/v3) always malformed
    fail_paths: dict[str, int] = field(default_factory=dict)  # glob -> HTTP status, always
    ignore_read_marks: bool = False  # markasreadbyaction answers ok but changes nothing
    truncate_media_every: int = 0  # every Nth media download stops halfway and closes the connection
    max_in_a_row: int = 3  # scheduled faults on one method + path in a row, at most (0: no limit)
    #: a ``data/advanced`` answer of more than this many records is a 504 Gateway Timeout, as a
    #: big form's unbounded search is in production (0: no limit)
    max_answer: int = 0

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.__dict__.items()
                 if k != "retry_after" and v not in (0, 0.0, (), {}, False)]
        return ", ".join(parts) or "none"

    def retry_after_header(self) -> str:
        v = self.retry_after
        if isinstance(v, (int, float)):
            return str(int(v)) if float(v).is_integer() else f"{float(v):g}"
        return str(v)
