"""Stop signals as an exception: SIGTERM (timeout, ``systemctl stop``, ``docker stop``), SIGHUP
(the terminal went away) and SIGINT (Ctrl-C) become ``Interrupted`` raised in the main thread, so
a run rolls back and removes its temporary files on its way out.

``install()`` is called only by a process the CLI owns (``exporter.cli.main``, a parallel
export's workers), never on behalf of a library caller. ``deferred()`` marks a short critical
section (starting worker processes) during which a signal waits and is raised at its end; it
changes nothing process-wide, and without ``install()`` it does nothing at all.
"""
from __future__ import annotations

import contextlib
import logging
import signal
from typing import Iterator

from .errors import Interrupted

log = logging.getLogger("exporter.interrupts")

#: the signals that stop a run cleanly
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n))

_state: dict = {"raised": False, "depth": 0, "pending": None}


def _handler(signum, frame) -> None:
    if _state["raised"]:  # stopping already: a clean-up is not cut short (SIGKILL still stops all)
        log.debug("signal %s ignored: already stopping", signum)
        return
    if _state["depth"]:
        _state["pending"] = signum
        return
    _state["raised"] = True
    raise Interrupted(signum)


def install() -> None:
    """Raise ``Interrupted`` on the stop signals, once (a signal arriving while the run stops is
    ignored)."""
    _state.update(raised=False, depth=0, pending=None)
    for sig in STOP_SIGNALS:
        signal.signal(sig, _handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal back until the end of the block, then raise it."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        signum = _state["pending"]
        if not _state["depth"] and signum is not None and not _state["raised"]:
            _state["pending"], _state["raised"] = None, True
            raise Interrupted(signum)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """The clean-up of a run that failed already: a stop signal arriving meanwhile is ignored, as a
    second one is (``_handler``), so the clean-up runs to its end and the first error is the one
    reported. Without ``install()`` it does nothing."""
    before = _state["raised"]
    _state["raised"] = True
    try:
        yield
    finally:
        _state["raised"] = before
