"""What every file writer shares: the output directory, the layout of paths, the writer protocol.

The files sink (``connectors.files``) owns an ``OutputDir`` and feeds every record of the stream,
in stream order, to each selected writer. A writer creates its files through the ``OutputDir``:
``pending()`` for a file built over the whole run (published at the end, discarded on failure) or
``atomic()`` for a file written in one go. Nothing is ever visible under its final name before it
is complete, and nothing can be written outside the directory.

Remote sinks reuse the same writers: they write into a local staging ``OutputDir`` and upload
what it published (``OutputDir.published``).
"""
from __future__ import annotations

import abc
import contextlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar, Protocol, runtime_checkable

from exporter.errors import ConfigError, FormatError
from exporter.fsutil import PendingFile, atomic_write, remove_temp_files, sync_all
from exporter.model import FORM_PICTURE, PDF, Account, DocumentRef, ExternalList, Form, Group, MediaRef, Record, Submission, User
from exporter.naming import safe_filename, safe_join


@dataclass(frozen=True)
class FormatLimits:
    """A format's limits, declared as data (read by writers and the README)."""

    max_cell_chars: int | None = None
    max_rows_per_sheet: int | None = None
    max_sheet_name: int | None = None
    holds_whole_document: bool = False  # True when a writer must keep a document open per form
    per_submission_files: bool = False


class OutputDir:
    """A local directory the run writes into, with safe paths and atomic publication."""

    def __init__(self, root: str | os.PathLike, *, run_id: str = "", incremental: bool = False,
                 max_name_bytes: int = 255, forbidden: str = "", durable_each: bool = True,
                 track_published: bool = True, keep_unchanged: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.incremental = incremental
        self.max_name_bytes = max_name_bytes
        self.forbidden = forbidden
        self._root_resolved = self.root.resolve()
        self._dirs: dict[str, Path] = {}
        #: per-file fsync (True) or one sync per batch by the sink (False, see ``sync``)
        self.durable_each = durable_each
        self._pending: dict[Path, PendingFile] = {}
        #: relative paths made visible since the consumer last took them (a remote sink uploads
        #: and clears them); not kept at all when nobody reads them, so memory stays flat
        self.published: list[Path] = []
        self.track_published = track_published
        #: a file whose new bytes equal the ones already there is not rewritten (its mtime stays),
        #: so a run that changes nothing writes nothing
        self.keep_unchanged = keep_unchanged

    # ---- names -------------------------------------------------------------------------
    def safe(self, name: str) -> str:
        return safe_filename(name, max_bytes=self.max_name_bytes, forbidden=self.forbidden)

    def form_dir(self, form: Form | str, form_name: str | None = None) -> str:
        """``forms/<id>-<name>``: the id keeps it stable and unique, the name keeps it readable."""
        fid = form.id if isinstance(form, Form) else form
        name = form.name if isinstance(form, Form) else (form_name or "")
        return "forms/" + self.safe(f"{fid}-{name}" if name else fid)

    def aggregate_dir(self, form: Form) -> str:
        """Where per-form aggregate files (CSV, JSONL, XLSX, XML, whole-form PDF) go: the form
        folder on a full run, ``runs/<run_id>`` below it on an incremental run, so an incremental
        run never overwrites a complete snapshot with a partial one."""
        d = self.form_dir(form)
        return f"{d}/runs/{self.safe(self.run_id)}" if self.incremental else d

    def media_relpath(self, ref: MediaRef, form_name: str | None = None) -> str:
        """``forms/<form>/media/<submission id>/<media name>``, every part made safe."""
        return "/".join([self.form_dir(ref.form_id, form_name), "media", self.safe(ref.submission_id),
                         self.safe(ref.name)])

    def document_dir(self, ref: DocumentRef, form_name: str | None = None) -> str:
        """The folder that holds one vendor document, alone: under its submission,
        ``forms/<form>/documents/<submission id>/pdf`` or ``.../export-<export id>``; a form's
        layout picture ``forms/<form>/form_pictures/<field>``. Every part made safe."""
        base = self.form_dir(ref.form_id, form_name)
        if ref.doc_kind == FORM_PICTURE:
            return "/".join([base, "form_pictures", self.safe(ref.key)])
        kind = "pdf" if ref.doc_kind == PDF else self.safe(f"{ref.doc_kind}-{ref.key}")
        return "/".join([base, "documents", self.safe(ref.submission_id or ""), kind])

    def path(self, relpath: str) -> Path:
        """The absolute path of ``relpath``, its folder created. Components are checked (no
        ``..``, separators or NUL) and each new folder is resolved once and proven to be inside
        the root (so a planted symlink cannot lead outside either)."""
        parts = [p for p in relpath.split("/") if p]
        for p in parts:
            if p in (".", "..") or "\\" in p or "\x00" in p:
                raise ConfigError(f"unsafe path component {p!r} in {relpath!r}")
        if not parts:
            raise ConfigError("empty path")
        parent = "/".join(parts[:-1])
        if parent not in self._dirs:
            if len(self._dirs) >= 4096:  # one folder per submission: keep the cache bounded
                self._dirs.clear()
            d = safe_join(self._root_resolved, *parts[:-1])
            d.mkdir(parents=True, exist_ok=True)
            safe_join(self._root_resolved, *parts[:-1])  # again, now that it exists
            self._dirs[parent] = d
        return self._dirs[parent] / parts[-1]

    def _rel(self, p: Path) -> Path:
        return p.relative_to(self._root_resolved)

    def _published(self, p: Path) -> None:
        if self.track_published:
            self.published.append(self._rel(p))

    # ---- writing -----------------------------------------------------------------------
    def pending(self, relpath: str, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = "") -> IO:
        """Open a file published at the end of the run (``publish_all``), discarded on failure."""
        p = self.path(relpath)
        if p in self._pending:
            raise ConfigError(f"{relpath} is already being written")
        pf = PendingFile(p, mode, encoding, newline)
        self._pending[p] = pf
        return pf.fh

    def pending_path(self, relpath: str) -> Path:
        """For libraries that write to a path themselves (openpyxl, python-docx, reportlab):
        returns a temporary path, renamed to ``relpath`` by ``publish_all``."""
        self.pending(relpath, "wb")
        return Path(self._pending[self.path(relpath)].tmp)  # fdopen'd handles are named by fd

    @contextlib.contextmanager
    def atomic(self, relpath: str, mode: str = "wb", encoding: str | None = None,
               newline: str | None = None) -> Iterator[IO]:
        p = self.path(relpath)
        with atomic_write(p, mode, encoding, newline, durable=self.durable_each, make_parents=False,
                          keep_same=self.keep_unchanged) as fh:
            yield fh
        self._published(p)

    def finish(self, relpath: str) -> None:
        """Close a pending file that is complete (frees its descriptor); it is still published
        by ``publish_all`` / discarded by ``discard_all`` like any pending file."""
        self._pending[self.path(relpath)].finish()

    def publish(self, relpath: str) -> None:
        p = self.path(relpath)
        pf = self._pending.pop(p)
        if pf.publish(self.keep_unchanged):
            self._published(p)

    def pending_relpaths(self) -> list[Path]:
        """The files ``publish_all`` would publish, relative to the root."""
        return [self._rel(p) for p in self._pending]

    def publish_all(self) -> None:
        for p in list(self._pending):
            pf = self._pending[p]
            published = pf.publish(self.keep_unchanged)  # on failure it stays pending: ``discard_all`` removes it
            del self._pending[p]
            if published:
                self._published(p)

    def sync(self) -> None:
        """Make every file written so far durable (when files are not fsynced one by one)."""
        if not self.durable_each:
            sync_all()

    def discard_all(self) -> None:
        """Remove every unfinished file: the pending ones, and any temporary file of this process
        left below the root (a signal that arrived between a temporary file's creation and its
        registration here)."""
        for pf in self._pending.values():
            pf.discard()
        self._pending.clear()
        remove_temp_files(self.root)


@runtime_checkable
class FormatWriter(Protocol):
    """A file format. Constructed once per run with the output directory and its options, then
    given every record of the stream in order. ``close(ok=True)`` finishes its documents (the
    files sink then publishes every pending file); ``close(ok=False)`` abandons them."""

    key: ClassVar[str]
    description: ClassVar[str]
    limits: ClassVar[FormatLimits]

    def write(self, record) -> None: ...

    def close(self, ok: bool) -> None: ...


def submission_form(form: Form | None, sub: Submission) -> Form:
    """The form a submission belongs to: the one being written, else a FormatError (the stream
    must give a form's definition before its submissions)."""
    if form is None or sub.form_id != form.id:
        raise FormatError("submission arrived before its form definition",
                          context=f"form {sub.form_id} submission {sub.id}")
    return form


class FormStreamWriter:
    """The record dispatch shared by the writers that keep one form's files open at a time
    (CSV, JSON, XLSX, XML). Subclasses implement ``_start_form(form)``, ``_finish_form()`` (also
    called when no form is open) and ``_write_submission(sub)``.

    ``write`` routes every record of the stream: ``_on_account`` (by default: remember that the
    account was seen, so people files exist even when it has no users), ``_on_user``,
    ``_on_group``, ``_on_list`` (nothing by default); a Form finishes the previous form
    (``_finish_form``) and starts its own (``_start_form``); a Submission goes to
    ``_write_submission``; the final Checkpoint of the form being written finishes it (one at a
    page boundary, ``final=False``, does not).
    ``close(ok=True)`` finishes the form, then ``_finish_account()``; ``close(ok=False)`` (and a
    failing ``close(ok=True)``) calls ``_abandon()``, which lets go of whatever is open (file
    handles, library streams) at once, and leaves the pending files to the sink, which discards
    them.
    """

    _form: Form | None = None
    _account_seen: bool = False
    #: which files this instance writes: ``records``, what single records make (form definitions,
    #: a submission's own files, people, lists), and ``aggregates``, each form's tables built from
    #: its submissions in stream order. Both by default; the files sink builds them apart
    #: (``make_writer``): records as the stream comes, aggregates from its store of each form.
    records: bool = True
    aggregates: bool = True

    def write(self, record: Record) -> None:
        # ``record.kind`` tested each time (not kept in a local): each test narrows ``record``
        if record.kind == "account":
            self._on_account(record)
        elif record.kind == "user" and self.records:  # people and lists are record files
            self._on_user(record)
        elif record.kind == "group" and self.records:
            self._on_group(record)
        elif record.kind == "list" and self.records:
            self._on_list(record)
        elif record.kind == "form":
            self._finish_form()
            self._start_form(record)
        elif record.kind == "submission":
            self._write_submission(record)
        elif record.kind == "checkpoint" and record.final and self._form is not None and record.form_id == self._form.id:
            self._finish_form()

    def close(self, ok: bool) -> None:
        if not ok:
            self._abandon()
            return  # pending files are discarded by the sink
        try:
            self._finish_form()
            if self.records:
                self._finish_account()
        except BaseException:
            self._abandon()  # what is still open is let go now, not by the garbage collector
            raise

    # ---- hooks -----------------------------------------------------------------------------
    # the three a subclass must implement (abstract for the type checker, which refuses a subclass
    # without them; the others are defaults a subclass may replace)
    @abc.abstractmethod
    def _start_form(self, form: Form) -> None: ...

    @abc.abstractmethod
    def _finish_form(self) -> None: ...

    @abc.abstractmethod
    def _write_submission(self, sub: Submission) -> None: ...

    def _on_account(self, account: Account) -> None:
        self._account_seen = True

    def _on_user(self, user: User) -> None:
        pass

    def _on_group(self, group: Group) -> None:
        pass

    def _on_list(self, lst: ExternalList) -> None:
        pass

    def _finish_account(self) -> None:
        pass

    def _abandon(self) -> None:
        pass


def known_formats() -> list[str]:
    """The formats registered (entry point group ``exporter.formats``) whose writer can be imported."""
    from exporter.registry import FORMATS

    out = []
    for key in FORMATS.ordered_keys():
        module = FORMATS.get(key).target.partition(":")[0]
        if importlib.util.find_spec(module) is not None:
            out.append(key)
    return out


def make_writer(key: str, out: OutputDir, options: dict, *, records: bool = True,
                aggregates: bool = True):
    """The writer of format ``key``, writing only its ``records`` part, only its ``aggregates``
    part, or both (see ``FormStreamWriter``); None when a part is asked of a writer that does not
    divide its files so (the report writers), whose files then all come from the stream."""
    cls = get_writer_class(key)
    if not (records and aggregates) and not issubclass(cls, FormStreamWriter):
        return None
    w = cls(out, options)
    w.records, w.aggregates = records, aggregates
    return w


def get_writer_class(key: str) -> type:
    """The writer class of format ``key`` (see ``exporter.registry.writer_class``)."""
    from exporter.registry import writer_class

    return writer_class(key)
