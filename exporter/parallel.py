"""Parallel export: forms spread over worker processes (``exporter export --jobs N``).

Reading, typing and row building are pure Python, so one process keeps one core busy while a
database destination mostly waits. With ``--jobs N`` the parent process opens every destination
as in a sequential run, writes the account-level records (account, users, groups, lists) and keeps
its run open; N worker processes (started from a fork server, spawned where there is none; each
with its own source reader and its own connections) then take the forms one at a time from a shared
queue, largest first, and stream each
form through the ordinary pipeline, from its definition to its checkpoint, in the same batches,
transactions and state updates as in a sequential run. A big form of an archive (an immutable
snapshot) is cut into parts (``plan_tasks``, ``FormPart``) taken by different workers; its cursor
is then stored by the parent once every part is committed (``_Part`` holds the parts' checkpoints
back from the workers' sinks).

Only destinations declaring ``parallel_writers`` take part (PostgreSQL, MariaDB/MySQL): the workers
must be able to write different forms' tables and rows at once, with schema changes serialised by
the destination (``SqlSink`` takes a schema lock before planning names) and a batch that loses a
deadlock written again (``SqlSink.write``). The workers leave
the run's own bookkeeping to the parent (``RunContext.worker``), which adds their counts to its
sinks (``add_counts``) before closing them.

The first worker failure stops the others (terminated: their open transactions roll back, their
state does not advance), the parent closes its destinations as failed and raises that error, one
line as always. Forms that workers finished before it stay committed with their state, as the forms
before a failing one do in a sequential run; a form in parts gets no state unless every part is in.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing
import queue
import sys
import time
import traceback
from typing import Any, Iterator, Sequence

from . import errors
from .deletions import preflight
from .errors import ConfigError, ExporterError
from .interrupts import deferred
from .model import PART_ROWS, Checkpoint, FormPart
from .pipeline import Progress, RunSummary, check_source, guard, merged_state, run
from .sinks import AddsCounts, RunContext, Sink
from .sources import CountsSubmissions, WeighsForms

log = logging.getLogger("exporter.parallel")


@dataclasses.dataclass
class WorkerSpec:
    """Everything a worker needs to rebuild its own source and destinations (sent over a pipe to
    the spawned process, never on a command line)."""

    source: str  # the source's URL or path (``exporter.registry.open_source``)
    source_options: dict  # its typed options
    source_run: dict  # forms, mode, action, overlap_seconds, check_deletions
    destinations: list[tuple[str, dict]]  # (URL, typed options) of each destination
    ctx: RunContext
    state: dict[str, str | None]
    batch_size: int | None
    log_level: int = logging.WARNING
    debug: bool = False


class _Part:
    """A source restricted to the account-level records (the parent's), or to the forms and form
    parts a worker pulls from the queue. The checkpoint of a form part is not the form's: it is
    held back from the sinks and reported to the parent once the batch holding the part's last
    record is committed (``acknowledge``); the parent stores the form's cursor when every part of
    it is in."""

    def __init__(self, source: Any, *, account: bool, forms: Any = None, events: Any = None, idx: int = 0):
        self.source = source
        self.description = source.description
        self.expected_submissions = (source.expected_submissions
                                     if account and isinstance(source, CountsSubmissions) else None)
        self.account = account
        self.queue, self.events, self.idx = forms, events, idx
        self.current: FormPart | None = None
        self.held: list[tuple[Any, Checkpoint]] = []  # (last record of the part, its checkpoint)

    def _pull(self) -> Iterator[FormPart | str]:
        while self.queue is not None:
            task = self.queue.get()
            if task is None:
                return
            self.current = task
            yield task if task.count > 1 else task.form_id  # only an archive gets parts

    def records(self, state: dict[str, str | None]) -> Iterator:
        last = None
        self.unacknowledged = False  # records yielded since the last batch was acknowledged
        for r in self.source.records(state, account=self.account, forms=self._pull()):
            if r.kind == "checkpoint" and isinstance(self.current, FormPart) and self.current.count > 1:
                if self.unacknowledged:
                    self.held.append((last, r))
                else:  # the batch that ended with the part's last record is committed already
                    self.events.put(("part", self.idx, (r.form_id, r.cursor, r.mode), None))
                continue
            last = r
            self.unacknowledged = True
            yield r

    def acknowledge(self, batch: Sequence) -> None:
        self.source.acknowledge(batch)
        # the pipeline cuts a batch right after the record that fills it: every record yielded
        # so far is in this batch or an earlier one
        self.unacknowledged = False
        # (a sink loading in the background may still be committing this batch: the parent uses
        # the parts' cursors only after every worker has closed its sinks without an error)
        if self.held:
            committed = {id(r) for r in batch}
            keep = []
            for last, cp in self.held:
                if id(last) in committed:
                    self.events.put(("part", self.idx, (cp.form_id, cp.cursor, cp.mode), None))
                else:
                    keep.append((last, cp))
            self.held = keep

    def close(self) -> None:
        self.source.close()


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    for k, n in more.items():
        into[k] = into.get(k, 0) + n


def _snapshot(summary: RunSummary) -> dict:
    return {"counts": dict(summary.counts), "per_sink": {k: dict(v) for k, v in summary.per_sink.items()},
            "media_bytes": summary.media_bytes, "batches": summary.batches}


class _Relay:
    """A worker's progress, sent to the parent after each batch."""

    def __init__(self, events: Any, idx: int):
        self.events, self.idx = events, idx

    def update(self, summary: RunSummary, current: str | None) -> None:
        self.events.put(("progress", self.idx, _snapshot(summary), current))

    def stage(self, text: str) -> None:
        pass  # the workers write SQL only, whose close is a commit: nothing long to show

    def done(self, summary: RunSummary) -> None:
        pass


def _worker(spec: WorkerSpec, idx: int, forms: Any, events: Any) -> None:
    """Entry point of a worker process."""
    from .interrupts import install
    from .logs import setup_logging
    from .registry import create_sink, open_source

    install()  # SIGTERM from the parent (or anyone): roll back, then report
    setup_logging(spec.log_level)
    try:
        sinks = [create_sink(u, o, spec.ctx.formats) for u, o in spec.destinations]
        src = open_source(spec.source, spec.source_options, **spec.source_run)
        summary = run(_Part(src, account=False, forms=forms, events=events, idx=idx), sinks,
                      dataclasses.replace(spec.ctx, worker=idx), batch_size=spec.batch_size,
                      state=spec.state, progress=_Relay(events, idx))
        events.put(("done", idx, _snapshot(summary), None))
    except BaseException as e:  # noqa: BLE001 - every failure goes to the parent, as one line
        if spec.debug:
            traceback.print_exception(e, file=sys.stderr)
        from .secrets import mask

        # masked here: a secret only this worker knows (a --login-env session token) is not the parent's to mask
        text = mask(str(e) if isinstance(e, ExporterError) else f"{type(e).__name__}: {e}")
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

    def __init__(self, spec: WorkerSpec, tasks: list[FormPart], jobs: int, sinks: Sequence[Sink],
                 progress: Progress | None):
        self.spec, self.tasks, self.jobs, self.sinks, self.progress = spec, tasks, jobs, sinks, progress
        self.split = {t.form_id: t.count for t in tasks if t.count > 1}
        self.parts: dict[str, list[tuple[str, str | None, str]]] = {}

    def __call__(self, summary: RunSummary) -> None:
        mp = _context()
        forms, events = mp.Queue(), mp.Queue()
        for task in self.tasks:
            forms.put(task)
        for _ in range(self.jobs):
            forms.put(None)
        base = _snapshot(summary)
        t0 = time.monotonic() - summary.seconds
        procs = [mp.Process(target=_worker, args=(self.spec, i, forms, events), name=f"exporter-worker-{i}",
                            daemon=True) for i in range(self.jobs)]
        latest: dict[int, dict] = {}
        finished: set[int] = set()
        silent_since: dict[int, float] = {}
        log.info("exporting %d forms (%d parts) with %d worker processes",
                 len({t.form_id for t in self.tasks}), len(self.tasks), self.jobs)
        try:
            with deferred():  # a worker half started when the parent stops would fail noisily
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
                if kind == "part":  # a committed share of a split form: its cursor
                    self.parts.setdefault(snap[0], []).append(snap)
                    continue
                latest[idx] = snap
                if kind == "done":
                    finished.add(idx)
                self._merge(summary, base, latest)
                summary.seconds = time.monotonic() - t0
                if self.progress and kind == "progress":
                    self.progress.update(summary, extra)
        except BaseException:
            # SIGTERM: each worker rolls its transaction back and exits (``_worker``)
            for p in procs:
                if p.is_alive():
                    p.terminate()
            raise
        finally:
            deadline = time.monotonic() + 10
            for p in procs:
                if p.pid is not None:
                    p.join(timeout=max(0.1, deadline - time.monotonic()))
                    if p.is_alive():  # stuck: its database rolls back when its connection drops
                        log.warning("parallel export: worker %s did not stop; killing it", p.name)
                        p.kill()
                        p.join(timeout=5)
            forms.close()
            events.close()
        # a split form's definition went to each worker taking a part of it: count the form once
        extra = sum(n - 1 for n in self.split.values())
        for counts in (summary.counts, *summary.per_sink.values()):
            if counts.get("form"):
                counts["form"] -= extra
        for s in self.sinks:
            if isinstance(s, AddsCounts):
                totals: dict[str, int] = {"form": -extra}
                for snap in latest.values():
                    _add(totals, snap["per_sink"].get(s.name, {}))
                s.add_counts(totals)
        self._store_cursors(summary)

    def _store_cursors(self, summary: RunSummary) -> None:
        """The checkpoint of each split form, once all its parts are committed: its greatest
        cursor (each part's starts from the stored one), written by the parent's sinks."""
        cps = []
        for fid, n in self.split.items():
            got = self.parts.get(fid, [])
            if len(got) != n:
                raise ExporterError(f"parallel export: form {fid}: {len(got)} of its {n} parts reported done")
            cursors = [c for _f, c, _m in got if c is not None]
            cps.append(Checkpoint(fid, max(cursors) if cursors else None, got[0][2]))
        if not cps:
            return
        for s in self.sinks:
            guard(s, "write", functools.partial(s.write, cps))
        for s in self.sinks:
            guard(s, "commit", s.commit)
        summary.batches += 1
        for counts in (summary.counts, *(summary.per_sink.setdefault(s.name, {}) for s in self.sinks)):
            counts["checkpoint"] = counts.get("checkpoint", 0) + len(cps)

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
        counts = dict(base["counts"])
        per_sink = {k: dict(v) for k, v in base["per_sink"].items()}
        media_bytes, batches = base["media_bytes"], base["batches"]
        for snap in latest.values():
            _add(counts, snap["counts"])
            for name, c in snap["per_sink"].items():
                _add(per_sink.setdefault(name, {}), c)
            media_bytes += snap["media_bytes"]
            batches += snap["batches"]
        summary.counts, summary.per_sink = counts, per_sink
        summary.media_bytes, summary.batches = media_bytes, batches


#: what a worker imports, loaded once by the fork server the workers start from
_PRELOAD = ["exporter.parallel", "exporter.logs", "exporter.registry", "exporter.connectors.catalog",
            "exporter.connectors.sql.catalog", "exporter.connectors.archive.source", "exporter.connectors.archive.sink",
            "exporter.connectors.kizeo.source", "exporter.connectors.sql.sink",
            "sqlalchemy.dialects.postgresql.psycopg", "sqlalchemy.dialects.mysql.pymysql",
            "psycopg", "pymysql"]


def _context() -> Any:
    """Where workers start from: a fork server (POSIX) that has imported what they need once (a
    worker then starts in milliseconds, not the half second of its imports), or a fresh
    interpreter each (elsewhere). Either way a worker holds nothing of the parent's: no
    connection, no thread."""
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Windows
        return multiprocessing.get_context("spawn")
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(_PRELOAD)
    return mp


def _start_fork_server() -> None:
    """Start the fork server now, so that its imports overlap the parent's own work."""
    mp = _context()
    if mp.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def run_parallel(source: Any, sinks: Sequence[Sink], ctx: RunContext, *, jobs: int,
                 rebuild: tuple[str, dict, dict, list[tuple[str, dict]]], batch_size: int | None = None,
                 progress: Progress | None = None, log_level: int = logging.WARNING, debug: bool = False) -> RunSummary:
    """``pipeline.run`` with the forms spread over ``jobs`` worker processes (see the module
    docstring). ``rebuild`` lets each worker make its own source and sinks: the source's URL, its
    options and run settings (``exporter.registry.open_source``), and each destination's URL and
    options (``exporter.registry.create_sink``)."""
    try:  # until ``run`` owns the source, a refusal here closes it
        refused = [s.name for s in sinks if not s.capabilities.parallel_writers]
        if refused:
            raise ConfigError(f"--jobs {jobs}: only destinations that take parallel writers (PostgreSQL, "
                              f"MariaDB/MySQL) can be written by several processes; not {', '.join(refused)} "
                              "(use --jobs 1)")
        check_source(source)  # as ``run`` does: the source answers before any destination opens
        state = merged_state(sinks) if ctx.mode == "cursor" else {}
        tasks = plan_tasks(source, jobs, ctx.mode)
        jobs = min(jobs, len(tasks))
        if jobs > 1:
            preflight(source, sinks, ctx.deletion_policy())  # too many deletions: refused before anything opens
    except BaseException:
        source.close()
        raise
    if jobs <= 1:
        return run(source, sinks, ctx, batch_size=batch_size, progress=progress, state=state)
    url, options, source_run, destinations = rebuild
    spec = WorkerSpec(source=url, source_options=options, source_run=source_run, destinations=list(destinations),
                      ctx=ctx, state=state, batch_size=batch_size, log_level=log_level, debug=debug)
    _start_fork_server()
    return run(_Part(source, account=True), sinks, ctx, batch_size=batch_size, progress=progress,
               state=state, before_close=_Workers(spec, tasks, jobs, sinks, progress))


#: a form is shared among the workers only when its submissions file holds at least this much
SPLIT_MIN_BYTES = 4 << 20
#: submissions per slice of a shared form (``FormPart.rows``)
SPLIT_ROWS = PART_ROWS


def plan_tasks(source: Any, jobs: int, mode: str) -> list[FormPart]:
    """The queue of work: every form whole, largest first, except that a source holding an
    immutable snapshot (an archive: it can weigh its forms) has its big forms shared among the
    workers in ``jobs`` parts, so that one big form does not leave the other workers idle. Forms
    read from the live service always go whole to one worker: a submission edited during the
    export would move in the listings the parts are cut from."""
    form_ids = list(source.form_ids())
    if not isinstance(source, WeighsForms):
        return [FormPart(fid) for fid in form_ids]
    weights = {fid: source.form_weight(fid) for fid in form_ids}
    total = sum(weights.values())
    tasks: list[FormPart] = []
    for fid in form_ids:
        # a share of more than half a worker's fair load, and worth the split
        n = jobs if mode != "unread" and weights[fid] >= SPLIT_MIN_BYTES and weights[fid] * 2 * jobs > total else 1
        tasks.extend(FormPart(fid, i, n, SPLIT_ROWS) for i in range(n))
    tasks.sort(key=lambda t: weights[t.form_id] / t.count, reverse=True)  # largest first
    return tasks
