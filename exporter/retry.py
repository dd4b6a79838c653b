"""The one retry helper: exponential backoff with full jitter, a cap, and Retry-After."""
from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import time
from typing import Callable, TypeVar

from .errors import ExporterError

T = TypeVar("T")
log = logging.getLogger("exporter.retry")


def retry_call(
    fn: Callable[[], T],
    *,
    attempts: int = 6,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    is_retryable: Callable[[BaseException], bool] | None = None,
    describe: str = "call",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, retrying transient failures.

    A failure is retried when ``is_retryable(exc)`` says so (default: an ExporterError marked
    ``transient``). When the error carries ``retry_after`` (seconds), that delay is honoured,
    capped at ``max_delay``; otherwise the delay is exponential with full jitter.
    """
    check = is_retryable or (lambda e: isinstance(e, ExporterError) and e.transient)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except BaseException as exc:  # noqa: BLE001 - filtered just below
            if attempt >= attempts or not check(exc):
                raise
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                delay = min(max(float(retry_after), 0.0), max_delay)
            else:
                delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            log.info("%s failed (%s); retry %d/%d in %.2fs", describe, exc, attempt, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now())
