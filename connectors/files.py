"""The files sink: a local directory holding the chosen file formats and the media.

Layout (see the README): ``forms/<id>-<name>/`` per form with its aggregate files (on an
incremental run under ``runs/<run id>/``), ``submissions/`` pretty JSON, ``media/<submission>/``
media files, and users/groups/lists files at the top. Per-submission files and media are written
atomically as they come; aggregate files are built under temporary names and published when the run
succeeds, so a failed run leaves every file as it was.

Its incremental state (each form's cursor) is kept in ``.exporter-state.json`` at the root, written
only after a successful run.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Sequence

from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, FormatError, SinkError
from exporter.fsutil import atomic_write, file_digest
from exporter.model import Media, counted_bytes
from exporter.sinks import RunContext, SinkStats
from formats.base import OutputDir, get_writer_class

STATE_FILE = ".exporter-state.json"


class FilesSink:
    capabilities = Capabilities(
        max_name_length=255, max_path_length=4096, transactions=False, rename=True, streaming=True,
        checksum="sha256", tested="local temporary directories, every format read back",
    )

    def __init__(self, root: str | os.PathLike, options: dict | None = None):
        self.root = Path(root)
        self.options = dict(options or {})
        self.name = f"files {self.root}"
        self.stats = SinkStats()
        self.out: OutputDir | None = None
        self.writers: list = []
        self._forms: dict[str, str] = {}  # form id -> name, for media paths
        self._state: dict[str, str | None] = {}
        self._media_done: set[str] = set()

    # ---- state -------------------------------------------------------------------------
    def load_state(self) -> dict[str, str | None]:
        p = self.root / STATE_FILE
        if not p.exists():
            return {}
        try:
            data = json.loads(p.read_text("utf-8"))
        except ValueError as e:
            raise SinkError(f"{p} is corrupt ({e}); delete it to start a full export") from None
        return dict(data.get("cursors") or {})

    # ---- protocol ----------------------------------------------------------------------
    def open(self, ctx: RunContext) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"{self.root} exists and is not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"cannot create {self.root}: {e.strerror}") from None
        self._state = self.load_state()
        self.out = OutputDir(self.root, run_id=ctx.run_id, incremental=ctx.mode != "full",
                             max_name_bytes=self.capabilities.max_name_length or 255, durable_each=False,
                             track_published=bool(self.options.get("track_published")))
        opts = {**ctx.options, **self.options}
        self.writers = [get_writer_class(key)(self.out, opts) for key in ctx.formats]

    def write(self, batch: Sequence) -> None:
        assert self.out is not None
        for record in batch:
            kind = record.kind
            if kind == "form":
                self._forms[record.id] = record.name
            elif kind == "submission":
                self._media_done.clear()  # media paths are per submission: keep this set tiny
            elif kind == "media":
                self._write_media(record)
            elif kind == "checkpoint":
                self._state[record.form_id] = record.cursor
            for w in self.writers:
                try:
                    w.write(record)
                except (SinkError, FormatError, ConfigError):
                    raise
                except OSError as e:
                    raise SinkError(f"{e.strerror or e}", context=f"{w.key} writer, {getattr(e, 'filename', '')}") from None
            self.stats.add(kind)

    def _write_media(self, m: Media) -> None:
        rel = self.out.media_relpath(m.ref, self._forms.get(m.ref.form_id))
        if rel in self._media_done:  # the same media referenced twice in one submission
            return
        target = self.out.path(rel)
        # skip an identical file already there (re-runs do not rewrite gigabytes of photos)
        if m.size is not None and target.exists() and target.stat().st_size == m.size:
            if m.sha256 is None or file_digest(target) == m.sha256:
                self._media_done.add(rel)
                return
        try:
            with self.out.atomic(rel) as fh, m.open() as src:
                shutil.copyfileobj(src, fh, 1 << 16)
        except OSError as e:
            raise SinkError(f"cannot write media: {e.strerror or e}", context=rel) from None
        self._media_done.add(rel)
        self.stats.bytes += counted_bytes(m.size)

    def commit(self) -> None:
        """Per-submission files and media were published atomically as they came; make them
        durable in one go (one sync per batch, not one fsync per file). Aggregates are published
        at the end of a successful run."""
        if self.out is not None:
            self.out.sync()

    def close(self, ok: bool) -> None:
        if self.out is None:
            return
        errors = []
        for w in self.writers:
            try:
                w.close(ok)
            except Exception as e:  # noqa: BLE001 - every writer must get its close
                errors.append(e)
                ok = False
        if ok:
            self.out.publish_all()
            with atomic_write(self.root / STATE_FILE, "w", encoding="utf-8") as fh:
                json.dump({"cursors": self._state}, fh, indent=1, sort_keys=True)
        else:
            self.out.discard_all()
        if errors:
            e = errors[0]
            if isinstance(e, (SinkError, FormatError, ConfigError)):
                raise e
            raise SinkError(f"{type(e).__name__}: {e}", context=self.name) from e


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
