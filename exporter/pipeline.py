"""Source -> batches -> every sink, in one streaming pass.

The pipeline pulls records from the source, groups them into bounded batches, hands each batch to
every sink, commits every sink, and only then acknowledges the batch to the source (server read
markers advance only after every sink has committed). A batch is closed when it holds
``batch_size`` submissions or ``batch_bytes`` of media (never between a submission and its media),
or at each ``Checkpoint`` (the end of a form or of a page of unread records), so a sink's stored
cursor is committed with the data it covers.

Any failure (an interruption too) closes every sink with ``ok=False`` (roll back, discard
unfinished files), after telling the sinks that record runs why (``note_failure``), and is raised
again; nothing is acknowledged. A clean-up that fails after it never replaces the first error (it is
logged at debug level).
"""
from __future__ import annotations

import collections
import contextlib
import datetime as dt
import functools
import logging
import operator
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, Sequence

from .deletions import preflight
from .errors import ExporterError, SinkError, one_line, run_status
from .interrupts import shielded
from .model import Record, blob_bytes
from .secrets import mask
from .sinks import RecordsFailures, RunContext, Sink, StatefulSink
from .sources import CheckedSource, CountsSubmissions, Source

if TYPE_CHECKING:
    from .privacy.pseudonymise import Pseudonymiser

log = logging.getLogger("exporter.pipeline")

_KIND = operator.attrgetter("kind")


def _privacy_stage(ctx: RunContext) -> Pseudonymiser | None:
    """``privacy.pseudonymise.stage_for(ctx)``, imported only by a run that asks for a stage."""
    if ctx.privacy is None:
        return None
    from .privacy.pseudonymise import stage_for

    return stage_for(ctx)


@dataclass
class RunSummary:
    run_id: str
    source: str
    counts: dict[str, int] = field(default_factory=dict)
    per_sink: dict[str, dict[str, int]] = field(default_factory=dict)
    media_bytes: int = 0
    seconds: float = 0.0
    batches: int = 0
    status: str = "ok"
    #: submissions the source will give, when it can tell (an archive replayed in full)
    expected: int | None = None

    def rate(self) -> float:
        n = self.counts.get("submission", 0)
        return n / self.seconds if self.seconds > 0 else 0.0


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def merged_state(sinks: Sequence[Sink]) -> dict[str, str | None]:
    """The cursor the source may start from, per form: the oldest among the stateful sinks, so
    that every sink gets everything it has not yet committed. A form that one stateful sink has
    never seen is read in full (absent from the result)."""
    states = []
    for s in sinks:
        if not isinstance(s, StatefulSink):
            return {}  # a sink without state (e.g. an archive) needs everything
        states.append(s.load_state())
    if not states:
        return {}
    common = set(states[0])
    for st in states[1:]:
        common &= set(st)
    out: dict[str, str | None] = {}
    for fid in common:
        values = [v for st in states if (v := st[fid]) is not None]
        out[fid] = min(values) if len(values) == len(states) else None
    return out


class Progress(Protocol):
    def update(self, summary: RunSummary, current: str | None) -> None: ...

    def stage(self, text: str) -> None:
        """A step after the last batch that may take long (a destination finishing its files):
        shown at once, so a long close does not look like a hang. Optional: an object without it
        is told of batches and the end only."""

    def done(self, summary: RunSummary) -> None: ...


def batches(records: Iterable[Record], batch_size: int, batch_bytes: int) -> Iterator[list[Record]]:
    """Group the stream into batches of about ``batch_size`` submissions or ``batch_bytes`` of
    media and documents, each closed right after a ``Checkpoint``, or, once a limit is reached,
    just before the next record that is none of a ``Media``, a ``Document`` or a ``Checkpoint``: a
    submission and the media and documents that follow it always share a batch (the source
    acknowledges a batch's submissions once it is committed, so what was left to the next batch
    would be lost if the run stopped in between)."""
    batch: list[Record] = []
    subs = 0
    size = 0
    full = False  # a limit was reached: close before the next record that starts something new
    for r in records:
        kind = r.kind
        if full and kind not in _BELONGING:
            yield batch
            batch, subs, size, full = [], 0, 0, False
        batch.append(r)
        if r.kind == "submission":
            subs += 1
        else:
            size += blob_bytes(r)
        if kind == "checkpoint":
            yield batch
            batch, subs, size, full = [], 0, 0, False
        elif subs >= batch_size or size >= batch_bytes:
            full = True
    if batch:
        yield batch


#: records that belong to the submission before them (never the first of a batch)
_BELONGING = frozenset(("media", "document", "checkpoint"))

#: submissions per batch by default
BATCH_SIZE = 500


def run(
    source: Source,
    sinks: Sequence[Sink],
    ctx: RunContext,
    *,
    batch_size: int | None = None,
    batch_bytes: int = 64 << 20,
    progress: Progress | None = None,
    state: dict[str, str | None] | None = None,
    before_close: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """Stream ``source`` into every sink (see the module docstring). ``before_close`` is called
    once the source is exhausted, with the sinks still open (a parallel export runs its workers
    there); if it raises, the run fails like any other step."""
    summary = RunSummary(run_id=ctx.run_id, source=source.description,
                         expected=source.expected_submissions if isinstance(source, CountsSubmissions) else None)
    start = time.monotonic()
    opened: list[Sink] = []
    current: str | None = None
    source_open = True
    try:
        check_source(source)
        stage = _privacy_stage(ctx)  # --pseudonymise: what every sink is given instead of the batch
        # each sink's stored state is read before any sink is opened for writing
        start_state = state if state is not None else (merged_state(sinks) if ctx.mode == "cursor" else {})
        preflight(source, sinks, ctx.deletion_policy())  # too many deletions: refused before anything opens
        for s in sinks:
            s.open(ctx)
            opened.append(s)
            summary.per_sink[s.name] = {}
        if batch_size is None:
            batch_size = BATCH_SIZE
        for batch in batches(source.records(start_state), batch_size, batch_bytes):
            shown = batch if stage is None else stage.apply(batch)
            for s in sinks:
                b = batch if stage is not None and stage.keeps_original(s) else shown
                guard(s, "write", functools.partial(s.write, b))
            for s in sinks:
                guard(s, "commit", s.commit)
            source.acknowledge(batch)
            summary.batches += 1
            kinds = collections.Counter(map(_KIND, shown))
            if kinds["media"] or kinds["document"]:
                summary.media_bytes += sum(map(blob_bytes, shown))
            if kinds["form"]:
                last = [r for r in shown if r.kind == "form"][-1]
                current = f"form {last.id} {last.name}"
            for counts in (summary.counts, *(summary.per_sink[s.name] for s in sinks)):
                for kind, n in kinds.items():
                    counts[kind] = counts.get(kind, 0) + n
            summary.seconds = time.monotonic() - start
            if progress:
                progress.update(summary, current)
            # let go of the batch now: held until the loop rebinds it, it would live on while the
            # next batch is read, and the cycle collector would walk both
            batch = shown = b = []
        if before_close is not None:
            before_close(summary)
        source_open = False  # a stop signal while it closes: the sinks still roll back (below)
        _close_source(source)
    except BaseException as e:
        summary.status = run_status(e)
        with shielded():  # a stop signal now neither cuts the clean-up short nor hides ``e``
            close_failed(opened, e)
            if source_open:
                _close_source(source)
        if progress:  # a live display is taken down before the error is printed
            with contextlib.suppress(Exception):
                progress.done(summary)
        raise
    first_error: BaseException | None = None
    # a progress object of the API's callers may predate stages (``update`` and ``done`` only), and
    # a display that fails must not keep a destination from closing
    stage = getattr(progress, "stage", None)
    for i, s in enumerate(opened):
        try:
            if stage is not None:
                with contextlib.suppress(Exception):
                    stage(f"finishing {s.name}")
            guard(s, "close", functools.partial(s.close, True))
        except BaseException as e:  # noqa: BLE001 - close every sink, raise the first error
            summary.status = run_status(e)
            first_error = first_error or e
            if not isinstance(e, Exception):  # interrupted: the sinks not yet closed roll back
                close_failed(opened[i + 1:], e)
                break
    summary.seconds = time.monotonic() - start
    if progress:
        progress.done(summary)
    if first_error:
        raise first_error
    return summary


def check_source(source: Source) -> None:
    """A source that can say it is reachable and its token accepted (``CheckedSource``) says so
    before any sink creates anything: a refused run leaves no empty folder nor empty database."""
    if isinstance(source, CheckedSource):
        source.check()


def _close_source(source: Source) -> None:
    try:
        source.close()
    except Exception as e:  # noqa: BLE001
        log.debug("closing the source: %s", e)


def close_failed(sinks: Sequence[Sink], error: BaseException) -> None:
    """Close ``sinks`` (last opened first) as failed after ``error``: each is told the run's status
    and its one-line cause when it records runs (``note_failure``), and each gets its close even
    when another's fails; those later failures are logged, never raised over ``error``."""
    status, message = run_status(error), mask(one_line(error))
    # let go of what the failed calls' frames still hold (a driver's cursor keeps a SQLite write
    # lock, a library's half-written stream its file) before the sinks clean up
    traceback.clear_frames(error.__traceback__)
    for s in reversed(sinks):
        try:
            if isinstance(s, RecordsFailures):
                s.note_failure(status, message)
            s.close(False)
        except Exception as e:  # noqa: BLE001 - report the first failure, not the clean-up's
            log.debug("while rolling back %s (after: %s): %s", s.name, message, one_line(e))


def guard(sink: Sink, what: str, fn: Callable[[], None]) -> None:
    """Run a sink step; any error that is not already ours is wrapped with the sink's name."""
    try:
        fn()
    except ExporterError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - translated at the boundary
        raise SinkError(f"{type(e).__name__}: {e}", context=f"{sink.name} ({what})") from e
