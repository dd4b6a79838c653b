"""Parallel export: forms spread over worker processes (``exporter export --jobs N``).

Reading, typing and row building are pure Python, so one process keeps one core busy while a
database destination mostly waits. With ``--jobs N`` the parent process opens every destination
as in a sequential run, writes the account-level records (account, users, groups, lists) and keeps
its run open; N worker processes (spawned, each with its own source reader and its own
connections) then take the forms one at a time from a shared queue, largest first, and stream each
form through the ordinary pipeline, from its definition to its checkpoint. A form is therefore
written by exactly one process, in the same batches, transactions and state updates as in a
sequential run: only whole forms run side by side.

Only destinations declaring ``parallel_writers`` take part (PostgreSQL): the workers must be able
to write different forms' tables and rows at once, with schema changes serialised by the
destination (``SqlSink`` takes a transaction-scoped lock before planning names). The workers leave
the run's own bookkeeping to the parent (``RunContext.worker``), which adds their counts to its
sinks (``add_counts``) before closing them.

The first worker failure stops the others (terminated: their open transactions roll back, their
state does not advance), the parent closes its destinations as failed and raises that error, one
line as always. Forms that workers finished before it stay committed with their state, as the forms
before a failing one do in a sequential run.
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import queue
import sys
import time
import traceback
from typing import Any, Iterable, Iterator, Sequence

from . import errors
from .errors import ConfigError, ExporterError
from .pipeline import Progress, RunSummary, merged_state, run
from .sinks import RunContext

log = logging.getLogger("exporter.parallel")


@dataclasses.dataclass
class WorkerSpec:
    """Everything a worker needs to rebuild its own source and destinations (sent over a pipe to
    the spawned process, never on a command line)."""

    source_args: dict  # keyword arguments of ``exporter.cli.build_source``
    urls: list[str]
    options: dict
    ctx: RunContext
    state: dict[str, str | None]
    batch_size: int
    log_level: int = logging.WARNING
    debug: bool = False


class _Part:
    """A source restricted to the account-level records, or to forms pulled from a queue."""

    def __init__(self, source: Any, *, account: bool, forms: Iterable[str]):
        self.source = source
        self.description = source.description
        self.account = account
        self.forms = forms

    def records(self, state: dict[str, str | None]) -> Iterator:
        return self.source.records(state, account=self.account, forms=self.forms)

    def acknowledge(self, batch: Sequence) -> None:
        self.source.acknowledge(batch)

    def close(self) -> None:
        self.source.close()


def _pull(forms: Any) -> Iterator[str]:
    while True:
        fid = forms.get()
        if fid is None:
            return
        yield fid


def _snapshot(summary: RunSummary) -> dict:
    return {"counts": dict(summary.counts), "per_sink": {k: dict(v) for k, v in summary.per_sink.items()},
            "media_bytes": summary.media_bytes, "batches": summary.batches}


class _Relay:
    """A worker's progress, sent to the parent after each batch."""

    def __init__(self, events: Any, idx: int):
        self.events, self.idx = events, idx

    def update(self, summary: RunSummary, current: str | None) -> None:
        self.events.put(("progress", self.idx, _snapshot(summary), current))

    def done(self, summary: RunSummary) -> None:
        pass


def _worker(spec: WorkerSpec, idx: int, forms: Any, events: Any) -> None:
    """Entry point of a worker process."""
    from .cli import _setup_logging, build_source
    from .registry import create_sink

    _setup_logging(spec.log_level)
    try:
        sinks = [create_sink(u, spec.options) for u in spec.urls]
        src = build_source(**spec.source_args)
        summary = run(_Part(src, account=False, forms=_pull(forms)), sinks,
                      dataclasses.replace(spec.ctx, worker=idx), batch_size=spec.batch_size,
                      state=spec.state, progress=_Relay(events, idx))
        events.put(("done", idx, _snapshot(summary), None))
    except BaseException as e:  # noqa: BLE001 - every failure goes to the parent, as one line
        if spec.debug:
            traceback.print_exception(e, file=sys.stderr)
        text = str(e) if isinstance(e, ExporterError) else f"{type(e).__name__}: {e}"
        events.put(("error", idx, type(e).__name__, text))
        events.close()
        events.join_thread()
        sys.exit(1)


def _error(name: str, text: str) -> ExporterError:
    """The parent's copy of a worker's error: same class when it is one of ours."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, ExporterError):
        return cls(text)
    return ExporterError(text)


class _Workers:
    """Run the workers (called by the parent's pipeline once the account-level records are in)."""

    def __init__(self, spec: WorkerSpec, form_ids: list[str], jobs: int, sinks: Sequence,
                 progress: Progress | None):
        self.spec, self.form_ids, self.jobs, self.sinks, self.progress = spec, form_ids, jobs, sinks, progress

    def __call__(self, summary: RunSummary) -> None:
        mp = multiprocessing.get_context("spawn")
        forms, events = mp.Queue(), mp.Queue()
        for fid in self.form_ids:
            forms.put(fid)
        for _ in range(self.jobs):
            forms.put(None)
        base = _snapshot(summary)
        t0 = time.monotonic() - summary.seconds
        procs = [mp.Process(target=_worker, args=(self.spec, i, forms, events), name=f"exporter-worker-{i}",
                            daemon=True) for i in range(self.jobs)]
        latest: dict[int, dict] = {}
        finished: set[int] = set()
        silent_since: dict[int, float] = {}
        log.info("exporting %d forms with %d worker processes", len(self.form_ids), self.jobs)
        try:
            for p in procs:
                p.start()
            while len(finished) < len(procs):
                try:
                    kind, idx, snap, extra = events.get(timeout=0.2)
                except queue.Empty:
                    self._check_alive(procs, finished, silent_since)
                    continue
                if kind == "error":
                    raise _error(snap, extra)
                latest[idx] = snap
                if kind == "done":
                    finished.add(idx)
                self._merge(summary, base, latest)
                summary.seconds = time.monotonic() - t0
                if self.progress and kind == "progress":
                    self.progress.update(summary, extra)
        except BaseException:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            raise
        finally:
            for p in procs:
                if p.pid is not None:
                    p.join(timeout=10)
            forms.close()
            events.close()
        for s in self.sinks:
            add = getattr(s, "add_counts", None)
            if add is not None:
                totals: dict[str, int] = {}
                for snap in latest.values():
                    for k, n in snap["per_sink"].get(s.name, {}).items():
                        totals[k] = totals.get(k, 0) + n
                add(totals)

    @staticmethod
    def _check_alive(procs: list, finished: set[int], silent_since: dict[int, float]) -> None:
        """A worker that exited without a word (killed, crashed): give its last message a moment
        to arrive through the pipe, then fail."""
        now = time.monotonic()
        for i, p in enumerate(procs):
            if i in finished or p.exitcode is None:
                continue
            first = silent_since.setdefault(i, now)
            if now - first > 2.0:
                raise ExporterError(f"parallel export: worker {i} stopped unexpectedly (exit code {p.exitcode})")

    @staticmethod
    def _merge(summary: RunSummary, base: dict, latest: dict[int, dict]) -> None:
        def add(into: dict, more: dict) -> None:
            for k, n in more.items():
                into[k] = into.get(k, 0) + n

        counts = dict(base["counts"])
        per_sink = {k: dict(v) for k, v in base["per_sink"].items()}
        media_bytes, batches = base["media_bytes"], base["batches"]
        for snap in latest.values():
            add(counts, snap["counts"])
            for name, c in snap["per_sink"].items():
                add(per_sink.setdefault(name, {}), c)
            media_bytes += snap["media_bytes"]
            batches += snap["batches"]
        summary.counts, summary.per_sink = counts, per_sink
        summary.media_bytes, summary.batches = media_bytes, batches


def run_parallel(source: Any, sinks: Sequence, ctx: RunContext, *, jobs: int, source_args: dict,
                 urls: list[str], batch_size: int = 500, progress: Progress | None = None,
                 log_level: int = logging.WARNING, debug: bool = False) -> RunSummary:
    """``pipeline.run`` with the forms spread over ``jobs`` worker processes (see the module
    docstring). ``source_args`` and ``urls`` let each worker rebuild the source and the sinks."""
    refused = [s.name for s in sinks if not s.capabilities.parallel_writers]
    if refused:
        raise ConfigError(f"--jobs {jobs}: only destinations that take parallel writers (PostgreSQL) can be "
                          f"written by several processes; not {', '.join(refused)} (use --jobs 1)")
    state = merged_state(sinks) if ctx.mode == "cursor" else {}
    form_ids = list(source.form_ids())
    weight = getattr(source, "form_weight", None)
    if weight is not None:
        form_ids.sort(key=weight, reverse=True)  # largest first: the last ones to finish are small
    jobs = min(jobs, len(form_ids))
    if jobs <= 1:
        return run(source, sinks, ctx, batch_size=batch_size, progress=progress, state=state)
    spec = WorkerSpec(source_args=source_args, urls=list(urls), options=ctx.options, ctx=ctx, state=state,
                      batch_size=batch_size, log_level=log_level, debug=debug)
    return run(_Part(source, account=True, forms=()), sinks, ctx, batch_size=batch_size, progress=progress,
               state=state, before_close=_Workers(spec, form_ids, jobs, sinks, progress))
