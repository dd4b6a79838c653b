"""The files sink: a local directory holding the chosen file formats and the media.

Layout (see docs/formats.md): ``forms/<id>-<name>/`` per form with its aggregate files,
``submissions/`` pretty JSON, ``media/<submission>/`` media files, and users/groups/lists files at
the top. Per-submission files and media are written atomically as they come, and made durable at
each commit.

Aggregates (CSV, JSONL, XLSX, XML) are kept current: every submission goes into the sink's store
(``connectors.files_store``, committed with each batch), and at the end of a successful run the
aggregates of each form whose rows changed (or that an earlier run left unpublished) are built again
from the store, streamed in a stable order into temporary files and renamed into place. A full
export and any number of incremental runs over the same data give the same bytes; a run that
changes nothing rewrites no file (a file whose new bytes equal the old ones is left as it was).
With ``deltas=true`` an incremental run also writes the aggregates of just the submissions it
changed under ``runs/<run id>/``. The report writers' one-document-per-form files (DOCX, PDF)
still come from the stream.

Its incremental state (each form's cursor) is kept in the store, committed with the data.

``keep_current=False`` (the remote sink's staging, which starts empty each run) writes aggregates
straight from the stream instead (under ``runs/<run id>/`` on an incremental run) and keeps its
state in ``.exporter-state.json``, written only after a successful run.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Sequence

from exporter.connectors.catalog import FILES
from exporter.connectors.files_publish import feed, publish_current, write_forms_gone
from exporter.connectors.files_store import STORE_PATH, FormStore
from exporter.formats.base import OutputDir, get_writer_class, make_writer

from exporter.capabilities import Capabilities
from exporter.deletions import DeletionPolicy, doomed_ids
from exporter.errors import ConfigError, FormatError, SinkError, os_error_text
from exporter.fsutil import atomic_write, claim, file_digest, live_claim, release, remove_path
from exporter.model import Account, Document, Form, Media, Record, counted_bytes
from exporter.registry import FORMATS
from exporter.sinks import RunContext, SinkStats

if TYPE_CHECKING:
    from exporter.connectors.files_eraser import FilesEraser

STATE_FILE = ".exporter-state.json"

log = logging.getLogger("exporter.files")


class FilesSink:
    capabilities = Capabilities(
        max_name_length=255, max_path_length=4096, transactions=False, rename=True, streaming=True,
        checksum="sha256", tested="local temporary directories, every format read back",
    )

    def __init__(self, root: str | os.PathLike, options: dict | None = None, *, keep_current: bool = True,
                 track_published: bool = False):
        self.root = Path(root)
        #: its own options typed (a bad value is refused here, before anything is created); the
        #: writers pick theirs from the same set
        self.options = {**(options or {}), **FILES.parse_options(options or {}, strict=False)}
        self.keep_current = keep_current
        self.track_published = track_published  # a remote sink uploads what is published
        self.name = f"files {self.root}"
        self.stats = SinkStats()
        self.out: OutputDir | None = None
        self.writers: list = []  # every record of the stream (record files; aggregates too without a store)
        self.delta_writers: list = []  # aggregates of the submissions a run changed (deltas=true)
        self.store: FormStore | None = None
        self._formats: tuple[str, ...] = ()  # this run's (recorded in the store: exporter forget)
        self._aggregate_keys: list[str] = []  # formats whose aggregates are built from the store
        self._policy: DeletionPolicy | None = None  # deletions (``exporter.deletions``), from the run context
        self._hard_deleted: list[tuple[str, str]] = []  # (form id, submission id): files to remove
        self._account: Account | None = None
        self._delta_form: Form | None = None  # the form whose changed submissions the delta writers get next
        self._delta_started: str | None = None
        self._forms: dict[str, str] = {}  # form id -> name, for media paths
        self._state: dict[str, str | None] = {}
        self._media_done: set[str] = set()
        self._marker: Path | None = None
        self._created: Path | None = None  # the outermost folder this run created, if any

    def eraser(self) -> FilesEraser:
        """``exporter forget`` on this folder (``connectors.files_eraser``)."""
        from exporter.connectors.files_eraser import FilesEraser

        if not self.keep_current:
            raise ConfigError(f"{self.name}: a staging folder keeps no store to erase from")
        return FilesEraser(self)

    # ---- state -------------------------------------------------------------------------
    def load_state(self) -> dict[str, str | None]:
        if self.keep_current:
            return FormStore.cursors(self.root / STORE_PATH)
        p = self.root / STATE_FILE
        if not p.exists():
            return {}
        try:
            data = json.loads(p.read_text("utf-8"))
        except ValueError as e:
            raise SinkError(f"{p} is corrupt ({e}); delete it to start a full export") from None
        return dict(data.get("cursors") or {})

    def held_ids(self, form_id: str) -> set[str] | None:
        """The form's submissions this folder holds (``exporter.deletions.preflight``)."""
        if not self.keep_current:
            return None
        return FormStore.stored_ids(self.root / STORE_PATH, form_id)

    # ---- protocol ----------------------------------------------------------------------
    def open(self, ctx: RunContext) -> None:
        opts = self.options
        deltas = opts["deltas"]
        self._formats = tuple(opts.get("formats") or ctx.formats)  # its own formats, else the run's
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"{self.root} exists and is not a directory")
        self._created = _first_missing(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"cannot create {self.root}: {e.strerror}") from None
        incremental = ctx.mode != "full"
        try:  # removes what a killed run left here, and marks the folder as being written
            self._marker = claim(self.root)
        except OSError as e:
            raise SinkError(os_error_text(e, f"write in {self.root}")) from None
        other = live_claim(self.root, self._marker)
        if other is not None:  # two runs would fight over the store and the aggregates
            release(self._marker)
            self._marker = None
            self._remove_created()
            raise SinkError(f"another export (process {other.partition('.')[0]}) is writing into {self.root}; "
                            "run one export per folder at a time")
        try:
            self.out = OutputDir(self.root, run_id=ctx.run_id, incremental=incremental,
                                 max_name_bytes=self.capabilities.max_name_length or 255, durable_each=False,
                                 track_published=self.track_published,
                                 keep_unchanged=self.keep_current)
            if not self.keep_current:
                self._state = self.load_state()
                self.writers = [get_writer_class(key)(self.out, opts) for key in self._formats]
                return
            self.writers, self._aggregate_keys = [], []
            for key in self._formats:
                w = make_writer(key, self.out, opts, aggregates=False)
                if w is None:  # a report writer: all its files come from the stream
                    self.writers.append(get_writer_class(key)(self.out, opts))
                else:
                    self.writers.append(w)
                    self._aggregate_keys.append(key)
            if deltas and incremental:
                self.delta_writers = [make_writer(key, self.out, opts, records=False) for key in self._aggregate_keys]
            self._policy = ctx.deletion_policy()
        except BaseException:  # not opened: the pipeline will not close it
            release(self._marker)
            self._marker, self.out, self.writers, self.delta_writers = None, None, [], []
            self._remove_created()
            raise

    def _open_store(self) -> FormStore:
        """The store, opened with the first batch (a run refused before has created nothing)."""
        if self.store is None:
            self.store = FormStore(self.root / STORE_PATH)
            self.store.begin()
            # other formats or format options than the published aggregates were made with: all again
            wanted = self._fingerprint()
            if self.store.meta("aggregates") != wanted:
                self.store.mark_all_dirty()
                self.store.set_meta("aggregates", wanted)
            self.store.set_meta("settings", self._settings())  # how the files were made (exporter forget)
        return self.store

    def _settings(self) -> str:
        """The formats and format options of this run (``exporter forget`` writes files again with them)."""
        keys = {o.name for key in FORMATS.keys() for o in FORMATS.get(key).options}
        return json.dumps({"formats": list(self._formats),
                           "options": {k: v for k, v in sorted(self.options.items()) if k in keys}},
                          sort_keys=True, default=str)

    def _fingerprint(self) -> str:
        keys = sorted(self._aggregate_keys)
        opts: dict = {}
        for key in keys:  # each format's options as its writer reads them, defaults included
            opts.update(FORMATS.get(key).parse_options(self.options, strict=False))
        opts = {k: str(v) for k, v in sorted(opts.items())}
        return hashlib.sha256(json.dumps([keys, opts]).encode()).hexdigest()

    def output(self) -> OutputDir:
        """The output folder of this run (set by ``open``)."""
        if self.out is None:
            raise SinkError(f"{self.name} is not open")
        return self.out

    def write(self, batch: Sequence[Record]) -> None:
        self.output()
        store = self._open_store() if self.keep_current else None
        if store is not None:
            store.begin()
        for record in batch:
            changed = False
            # ``record.kind`` tested each time (not kept in a local): each test narrows ``record``
            if record.kind == "form":
                self._forms[record.id] = record.name
                if store is not None:
                    self._follow_rename(store.form_name(record.id), record)
                    store.put_form(record)
                    self._delta_form = record
            elif record.kind == "submission":
                self._media_done.clear()  # media paths are per submission: keep this set tiny
                if store is not None:
                    changed = store.put_submission(record)
            elif record.kind == "media":
                self._write_media(record)
            elif record.kind == "document":
                self._write_document(record)
            elif record.kind == "checkpoint":
                self._state[record.form_id] = record.cursor
                if store is not None:
                    if record.listing is not None and record.final:
                        self._deletions(store, record.form_id, record.listing)
                    store.checkpoint(record.form_id, record.cursor)
            elif record.kind == "account":
                self._account = record
                if store is not None:  # what every aggregate says of the account: all again when it changed
                    said = json.dumps([record.source, record.timezone, record.exported_at])
                    if store.meta("account") != said:
                        store.mark_all_dirty()
                        store.set_meta("account", said)
                    store.start_people()  # the people files come again from this run's users and groups
            elif (record.kind == "user" or record.kind == "group") and store is not None:
                store.put_person(record)
            if (record.kind == "form" or record.kind == "list") and store is not None:
                store.end_people()  # they come before lists and forms
            for w in self.writers:
                feed(w, record)
            if self.delta_writers and (record.kind == "account" or changed):
                self._delta(record)
            self.stats.add(record.kind)

    def _follow_rename(self, old_name: str | None, form: Form) -> None:
        """A form renamed on the service: its folder (per-submission files, media, reports) takes
        the new name, so the aggregates built for it still lead to its media, and no stale copy
        stays under the old name."""
        if old_name is None or old_name == form.name:
            return
        out = self.output()
        src, dst = self.root / out.form_dir(form.id, old_name), self.root / out.form_dir(form)
        if src == dst or not src.is_dir() or dst.exists():
            return
        try:
            os.rename(src, dst)
        except OSError as e:
            raise SinkError(os_error_text(e, f"rename {src} to {dst.name}")) from None
        log.info("form %s was renamed: %s moved to %s", form.id, src.name, dst.name)

    def _deletions(self, store: FormStore, form_id: str, listing: AbstractSet[str]) -> None:
        """The stored submissions the form's complete listing lacks leave the aggregates and go
        to ``deleted.csv``; with ``--deletions hard`` their own files go too (once the run ends
        well). More than ``--max-deletions`` refuses the run (see ``exporter.deletions``)."""
        held = list(store.ids(form_id))
        doomed = doomed_ids(held, listing)
        if not doomed:
            return
        policy = self._policy
        assert policy is not None  # set by ``open`` whenever there is a store
        policy.check(form_id, len(doomed), len(held), self.name)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        store.remove(form_id, doomed, now)
        log.warning("form %s: %d submissions are gone from the service: recorded in deleted.csv (%s)",
                    form_id, len(doomed), policy.mode)
        if policy.mode == "hard":
            self._hard_deleted.extend((form_id, sid) for sid in doomed)

    def _remove_deleted_files(self) -> None:
        """``--deletions hard``: a deleted submission's own JSON file and media folder."""
        out = self.output()
        for fid, sid in self._hard_deleted:
            d = self.root / out.form_dir(fid, self._forms.get(fid))
            safe = out.safe(sid)
            for p in (d / "submissions" / f"{safe}.json", d / "media" / safe, d / "documents" / safe):
                remove_path(p)
        self._hard_deleted = []

    def _delta(self, record: Record) -> None:
        """The delta writers get the account and each changed submission, its form first."""
        if record.kind == "submission" and self._delta_started != record.form_id:
            assert self._delta_form is not None  # a form's record comes before its submissions
            for w in self.delta_writers:
                feed(w, self._delta_form)
            self._delta_started = record.form_id
        for w in self.delta_writers:
            feed(w, record)

    def _write_media(self, m: Media) -> None:
        out = self.output()
        rel = out.media_relpath(m.ref, self._forms.get(m.ref.form_id))
        if rel in self._media_done:  # the same media referenced twice in one submission
            return
        target = out.path(rel)
        # skip an identical file already there (re-runs do not rewrite gigabytes of photos)
        if m.size is not None and target.exists() and target.stat().st_size == m.size:
            if m.sha256 is None or file_digest(target) == m.sha256:
                self._media_done.add(rel)
                return
        try:
            with out.atomic(rel) as fh, m.open() as src:
                shutil.copyfileobj(src, fh, 1 << 16)
        except OSError as e:
            raise SinkError(os_error_text(e, f"write the media file {target}")) from None
        self._media_done.add(rel)
        self.stats.bytes += counted_bytes(m.size)

    def _write_document(self, doc: Document) -> None:
        """A vendor document, alone in its folder (``OutputDir.document_dir``): a new version
        under another name replaces the old file; the same bytes under the same name are left
        as they are."""
        out = self.output()
        folder = out.document_dir(doc.ref, self._forms.get(doc.ref.form_id))
        rel = f"{folder}/{out.safe(doc.name)}"
        target = out.path(rel)
        try:
            for old in target.parent.iterdir():
                if old.name != target.name and not old.name.startswith(".") and old.is_file():
                    old.unlink()  # the document's former name
            if not (doc.size is not None and target.exists() and target.stat().st_size == doc.size
                    and (doc.sha256 is None or file_digest(target) == doc.sha256)):
                with out.atomic(rel) as fh, doc.open() as src:
                    shutil.copyfileobj(src, fh, 1 << 16)
                self.stats.bytes += counted_bytes(doc.size)
        except OSError as e:
            raise SinkError(os_error_text(e, f"write the document {target}")) from None

    def commit(self) -> None:
        """Per-submission files and media were published atomically as they came: make them
        durable in one go (one sync per batch, not one fsync per file), then commit the store
        (fsynced), so what the batch acknowledges is durable, aggregates' rows included."""
        if self.out is not None:
            self.out.sync()
        if self.store is not None:
            try:
                self.store.commit()
            except Exception as e:  # noqa: BLE001 - sqlite3 errors and disk errors alike
                raise SinkError(f"cannot commit the store: {e}", context=str(self.store.path)) from None

    def close(self, ok: bool) -> None:
        """Every writer gets its close, whatever happened; then the pending files are published
        (and the state stored) or discarded. The first error is raised; later ones (a clean-up
        failing after it) are only logged."""
        out = self.out
        if out is None:
            return
        errors: list[BaseException] = []
        published = False
        try:
            for w in [*self.writers, *self.delta_writers]:
                try:
                    w.close(ok)
                except BaseException as e:  # noqa: BLE001 - every writer must get its close
                    errors.append(e)  # (a stop signal too: the others then let go of their files)
                    ok = False
            if ok:
                try:
                    out.publish_all()
                    if self.keep_current:
                        store = self._open_store()
                        store.end_people()
                        store.commit()
                        publish_current(self.root, store, run_id=out.run_id, formats=self._aggregate_keys,
                                        options=self.options, account=self._account,
                                        max_name_bytes=self.capabilities.max_name_length or 255)
                        self._remove_deleted_files()
                        write_forms_gone(out, store, self._account)
                    else:
                        with atomic_write(self.root / STATE_FILE, "w", encoding="utf-8") as fh:
                            json.dump({"cursors": self._state}, fh, indent=1, sort_keys=True)
                except Exception as e:  # noqa: BLE001 - reported below, after the store is closed
                    errors.append(e)
                    ok = False
            published = ok
        finally:
            ok = published  # an error escaping above (a stop signal) leaves nothing pending
            try:
                if not ok:
                    try:
                        out.discard_all()
                    except Exception as e:  # noqa: BLE001
                        errors.append(e)
            finally:
                if self.store is not None:
                    self.store.close()
                    self.store = None
                if self._marker is not None:
                    release(self._marker)
                    self._marker = None
                if not ok:
                    self._remove_created()
        for later in errors[1:]:
            log.debug("%s: also, while closing: %s: %s", self.name, type(later).__name__, later)
        if errors:
            first = errors[0]
            if isinstance(first, (SinkError, FormatError, ConfigError)) or not isinstance(first, Exception):
                raise first
            if isinstance(first, OSError):
                raise SinkError(os_error_text(first, f"finish the files in {self.root}")) from None
            raise SinkError(f"{type(first).__name__}: {first}", context=self.name) from first

    def _remove_created(self) -> None:
        """After a failure: the folders this run created, if they hold no file (a refused or
        failed run leaves no empty folder; a folder that existed before is never removed)."""
        top = self._created
        if top is None or not self.root.is_dir():
            return
        for folder, _dirs, _files in sorted(os.walk(self.root), key=lambda t: -len(t[0])):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only an empty one goes
        p = self.root.absolute().parent
        while not self.root.exists() and (p == top or top in p.parents):  # the parents it made
            try:
                p.rmdir()
            except OSError:
                break
            p = p.parent
        self._created = None


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what ``mkdir -p`` creates)."""
    path = path.absolute()
    missing = None
    while not path.exists():
        missing = path
        if path.parent == path:
            break
        path = path.parent
    return missing


def path_of(url: str) -> str:
    if url.startswith("file://"):
        path = url[len("file://"):]
        if path.startswith("localhost/"):
            path = path[len("localhost"):]
        return path
    return url


def create_sink(url: str, options: dict) -> FilesSink:
    path = path_of(url)
    if not path:
        raise ConfigError(f"destination {url!r} has no path")
    return FilesSink(path, options)
