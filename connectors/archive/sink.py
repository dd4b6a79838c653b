"""Write an account archive (the ``archive://`` destination): a full snapshot, moved into place
only when complete, manifest last."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Sequence

from exporter.capabilities import Capabilities
from exporter.errors import ArchiveError, ConfigError, SinkError, os_error_text
from exporter.fsutil import FILE_MODE
from exporter.model import Checkpoint, Document, Form, Media, Record
from exporter.sinks import RunContext

from .layout import FORMAT, FORMAT_VERSION, MANIFEST, document_path, dumps, entry_line, form_dir, media_path
from .zipwriter import MemberWriter, ZipWriter, method_for

if TYPE_CHECKING:
    from .eraser import ArchiveEraser


class _HashingWriter:
    def __init__(self, fh: IO[bytes] | MemberWriter):
        self.fh = fh
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.fh.write(data)


class ArchiveSink:
    """Write a full account snapshot. The archive is assembled under a temporary name and moved
    into place only when complete (manifest written last); a failed run leaves nothing."""

    capabilities = Capabilities(transactions=False, rename=True, streaming=True, checksum="sha256", as_served=True,
                                tested="archive round trip, verify, replay as a source")

    def __init__(self, path: str | os.PathLike, *, zip_output: bool | None = None, exported_at: str | None = None):
        self.target = Path(path)
        #: the snapshot's time in the manifest: now, or the one given (an archive written again
        #: from another, as ``exporter forget`` rewrites a backup, keeps its time)
        self._snapshot_time = exported_at
        self.zip = zip_output if zip_output is not None else self.target.suffix.lower() == ".zip"
        self.name = f"archive {self.target}"
        # every file's {sha256, size} goes to a temporary file as it is written, not to memory:
        # a 200k-submission account has ~400k files. Only the few non-media paths are remembered
        # (to catch a file written twice), and the media of the current submission (de-duplication).
        self._entries: IO[str] | None = None
        self._tmp: str | None = None  # the archive (zip file or folder) being written, until it is complete
        self._seen: set[str] = set()
        self._sub_media: dict[str, dict] = {}
        self._docs_written: set[str] = set()  # paths of the current submission's documents and the form's pictures
        self.counts = {"forms": 0, "submissions": 0, "media": 0, "users": 0, "groups": 0, "lists": 0,
                       "documents": 0, "deleted": 0}
        self._streams: dict[str, tuple[IO, _HashingWriter]] = {}
        self._forms: dict[str, Form] = {}
        self._account: dict = {}
        self._exported_at: str | None = None

    def eraser(self) -> ArchiveEraser:
        """What ``exporter forget`` erases this archive with (``exporter.privacy.forget``)."""
        from .eraser import ArchiveEraser

        return ArchiveEraser(self)

    # ---- low level -------------------------------------------------------------------------
    def open(self, ctx: RunContext) -> None:
        try:
            self._open_files()
        except OSError as e:
            if self._tmp is not None:
                self._abort()
            raise SinkError(os_error_text(e, f"write the archive {self.target}")) from None

    def _open_files(self) -> None:
        self._tmp = None
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self.zip:
            fd, self._tmp = tempfile.mkstemp(prefix="." + self.target.name + ".", suffix=".partial",
                                             dir=self.target.parent)
            os.fchmod(fd, FILE_MODE)
            self._zfh = os.fdopen(fd, "wb")
            # the central directory waits on disk (zipwriter): memory does not grow with the files
            self._zw = ZipWriter(self._zfh, spool_dir=str(self.target.parent))
        else:
            self._tmp = tempfile.mkdtemp(prefix="." + self.target.name + ".", suffix=".partial",
                                         dir=self.target.parent)
        self._exported_at = self._snapshot_time or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._entries = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.target.parent)

    def _work(self) -> tuple[str, IO[str]]:
        """The temporary archive and the entries file of the open run."""
        if self._tmp is None or self._entries is None:
            raise SinkError(f"{self.name} is not open")
        return self._tmp, self._entries

    def _record(self, rel: str, sha256: str, size: int, *, media: bool = False) -> None:
        if not media:
            self._seen.add(rel)
        self._work()[1].write(entry_line(rel, {"sha256": sha256, "size": size}) + "\n")

    def _open_file(self, rel: str) -> IO[bytes] | MemberWriter:
        if self.zip:
            return self._zw.open(rel, method_for(rel))
        return self._open_path(rel)

    def _open_path(self, rel: str) -> IO[bytes]:
        p = Path(self._work()[0]) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return open(p, "wb")

    def _stream(self, rel: str) -> _HashingWriter:
        """A JSONL file kept open while its entity streams in. In a zip, members cannot be
        written side by side, so a growing JSONL goes to a temporary file on disk and is copied
        into the zip when it ends (bounded by disk, never by memory)."""
        if rel not in self._streams:
            if rel in self._seen:
                raise ArchiveError(f"{rel} written twice: records out of order")
            fh: IO[bytes]
            if self.zip:
                fh = tempfile.TemporaryFile(dir=self.target.parent)
            else:
                fh = self._open_path(rel)
            self._streams[rel] = (fh, _HashingWriter(fh))
        return self._streams[rel][1]

    def _end_stream(self, rel: str) -> None:
        fh, hw = self._streams.pop(rel)
        if self.zip:
            fh.seek(0)
            with self._zw.open(rel, method_for(rel)) as dst:
                shutil.copyfileobj(fh, dst, 1 << 20)
        fh.close()
        self._record(rel, hw.h.hexdigest(), hw.size)

    def _end_form_streams(self) -> None:
        for rel in list(self._streams):
            if rel.startswith("forms/"):
                self._end_stream(rel)

    def _line(self, rel: str, obj: Any) -> None:
        self._stream(rel).write((dumps(obj) + "\n").encode("utf-8"))

    def _whole(self, rel: str, data: bytes) -> None:
        with self._open_file(rel) as fh:
            fh.write(data)
        self._record(rel, hashlib.sha256(data).hexdigest(), len(data))

    # ---- protocol --------------------------------------------------------------------------
    def write(self, batch: Sequence[Record]) -> None:
        for r in batch:
            # ``r.kind`` tested each time (not kept in a local): each test narrows ``r``
            if r.kind == "account":
                self._account = dict(r.raw) if r.raw else {"source": r.source, "timezone": r.timezone}
            elif r.kind == "user":
                self._line("users.jsonl", r.raw)
                self.counts["users"] += 1
            elif r.kind == "group":
                self._line("groups.jsonl", r.raw)
                self.counts["groups"] += 1
            elif r.kind == "list":
                self._line("lists.jsonl", r.raw)
                self.counts["lists"] += 1
            elif r.kind == "form":
                self._end_form_streams()
                self._docs_written.clear()
                summary = {key: r.raw[key] for key in ("id", "name", "class", "update_time") if key in r.raw}
                self._line("forms.jsonl", summary or {"id": r.id, "name": r.name})
                self._whole(f"{form_dir(r.id)}/form.json", (dumps(r.raw) + "\n").encode("utf-8"))
                self.counts["forms"] += 1
            elif r.kind == "submission":
                self._line(f"{form_dir(r.form_id)}/submissions.jsonl", r.raw)
                self.counts["submissions"] += 1
                self._docs_written = {p for p in self._docs_written if "/form_pictures/" in p}
            elif r.kind == "media":
                self._write_media(r)
            elif r.kind == "document":
                self._write_document(r)
            elif r.kind == "checkpoint":
                self._write_deleted(r)
            # an archive is a full snapshot: it keeps no incremental state (cursors)

    def _write_media(self, m: Media) -> None:
        ref = m.ref
        rel = media_path(ref.form_id, ref.submission_id, ref.name)
        if self._sub_media and not next(iter(self._sub_media)).startswith(rel.rsplit("/", 1)[0] + "/"):
            self._sub_media.clear()  # a new submission: media paths never repeat across submissions
        if rel in self._sub_media:  # the same media used by two fields of a submission: stored once
            entry = self._sub_media[rel]
        else:
            with self._open_file(rel) as fh:
                hw = _HashingWriter(fh)
                with m.open() as src:
                    while chunk := src.read(1 << 16):
                        hw.write(chunk)
            entry = {"sha256": hw.h.hexdigest(), "size": hw.size}
            self._sub_media[rel] = entry
            self._record(rel, entry["sha256"], entry["size"], media=True)
            self.counts["media"] += 1
        self._line(f"{form_dir(ref.form_id)}/media.jsonl", {
            "submission_id": ref.submission_id, "field": ref.field, "subform": ref.subform,
            "row": ref.row, "name": ref.name, "path": rel, "content_type": m.content_type,
            "size": entry["size"], "sha256": entry["sha256"],
        })

    def _write_document(self, d: Document) -> None:
        """A vendor document's bytes, and its line in the form's ``documents.jsonl`` (the same
        document given twice is stored once)."""
        ref = d.ref
        rel = document_path(ref, d.name)
        if rel in self._docs_written:
            return
        with self._open_file(rel) as fh:
            hw = _HashingWriter(fh)
            with d.open() as src:
                while chunk := src.read(1 << 16):
                    hw.write(chunk)
        self._docs_written.add(rel)
        self._record(rel, hw.h.hexdigest(), hw.size, media=True)
        self.counts["documents"] += 1
        self._line(f"{form_dir(ref.form_id)}/documents.jsonl", {
            "submission_id": ref.submission_id, "kind": ref.doc_kind, "key": ref.key, "name": d.name,
            "path": rel, "content_type": d.content_type, "size": hw.size, "sha256": hw.h.hexdigest(),
        })

    def _write_deleted(self, c: Checkpoint) -> None:
        """The submissions the source saw deleted during its read (``deleted.jsonl``)."""
        if not c.gone:
            return
        for sid in sorted(c.gone):
            self._line(f"{form_dir(c.form_id)}/deleted.jsonl", {"submission_id": sid})
        self.counts["deleted"] += len(c.gone)

    def commit(self) -> None:
        """A snapshot is only complete at the end; nothing to make durable per batch."""

    def close(self, ok: bool) -> None:
        if not ok:
            self._abort()
            return
        for rel in list(self._streams):
            self._end_stream(rel)
        head = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "account": self._account,
            "exported_at": self._exported_at,
            "counts": self.counts,
        }
        tmp = self._work()[0]
        if self.zip:
            with self._zw.open(MANIFEST, method_for(MANIFEST)) as fh:
                self._write_manifest(head, fh)
            self._zw.close()
            self._zfh.flush()
            os.fsync(self._zfh.fileno())
            self._zfh.close()
            os.replace(tmp, self.target)
        else:
            with open(Path(tmp) / MANIFEST, "wb") as fh:
                self._write_manifest(head, fh)
            os.sync()  # every file of the archive is durable before it appears under its name
            if self.target.exists():
                old = Path(tempfile.mkdtemp(prefix="." + self.target.name + ".", suffix=".old",
                                            dir=self.target.parent))
                os.rename(self.target, old / "x")
                os.rename(tmp, self.target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, self.target)

    def _write_manifest(self, head: dict, out: IO[bytes] | MemberWriter) -> None:
        """The manifest, streamed: the head as indented JSON, then ``"files"`` last with one entry
        per line (in the order the files were written), so a reader can take the head without
        loading hundreds of thousands of entries, and ``verify`` can stream them."""
        text = json.dumps(head, ensure_ascii=False, indent=1)
        out.write((text[: text.rstrip().rfind("}")].rstrip() + ',\n "files": {\n').encode("utf-8"))
        entries = self._work()[1]
        entries.seek(0)
        first = True
        for line in entries:
            out.write((("  " if first else ",\n  ") + line.rstrip("\n")).encode("utf-8"))
            first = False
        out.write((b"\n" if not first else b"") + b" }\n}\n")
        entries.close()

    def _abort(self) -> None:
        if self._entries is not None:
            self._entries.close()
        for fh, _ in self._streams.values():
            with contextlib.suppress(Exception):
                fh.close()
        self._streams.clear()
        if self._tmp is None:  # never opened
            return
        if self.zip:
            with contextlib.suppress(Exception):
                self._zw.abort()
            with contextlib.suppress(Exception):
                self._zfh.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
        else:
            shutil.rmtree(self._tmp, ignore_errors=True)


def create_sink(url: str, options: dict) -> ArchiveSink:
    path = url.split("://", 1)[1] if "://" in url else url
    if not path:
        raise ConfigError("archive:// needs a path, e.g. archive:///backups/account.zip")
    return ArchiveSink(path, zip_output=options.get("zip"))
