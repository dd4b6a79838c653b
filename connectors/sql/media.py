"""The SQL sink's ``media`` and ``documents`` rows: one per media file or vendor document, with its
bytes beside the database (``media_dir``), in it (``media_in_db``, stored the dialect's way) or
only its index."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import sqlalchemy as sa

from exporter.errors import SinkError
from exporter.fsutil import atomic_write
from exporter.model import FORM_PICTURE, PDF, Blob, Document, Media
from exporter.naming import safe_filename, safe_join

from .dialects.base import Dialect, Loader, blob_context, blob_name
from .rows import DOCUMENT_COLUMNS, MEDIA_COLUMNS, document_row, media_row


class MediaWrites:
    """Mixed into ``SqlSink``: the media and vendor documents of a batch."""

    name: str
    schema: str | None
    dialect: Dialect
    media_dir: Path | None
    media_in_db: bool
    media_max_bytes: int
    _conn: sa.Connection
    _loader: Loader
    _fixed: dict[str, sa.Table]
    _op: Callable[[str], AbstractContextManager[None]]
    _count: Callable[..., None]

    def _write_media(self, media: list[Media], rows: list[tuple] | None = None) -> None:
        """``rows``: their index rows, made ahead by ``_media_rows``."""
        self._write_blobs(media, "media", "media_key", MEDIA_COLUMNS, media_row, _media_parts, rows)

    def _media_rows(self, media: list[Media]) -> list[tuple] | None:
        """The index rows of ``media`` when the records alone make them (their bytes neither go to
        ``media_dir`` nor into the database, which would read them first); else None."""
        if self.media_dir is not None or self.media_in_db:
            return None
        return [media_row(m, m.size, m.sha256, None) for m in media]

    def _write_documents(self, docs: list[Document]) -> None:
        """Vendor documents (``documents`` table): upserted by their natural key, so a document
        fetched again (an edited submission) replaces its row; bytes like a media's."""
        self._write_blobs(docs, "documents", "document_key", DOCUMENT_COLUMNS, document_row, _document_parts)

    def _write_blobs(self, blobs: Sequence[Blob], table_name: str, key: str, columns: tuple[str, ...], row_of,
                     parts_of, made: list[tuple] | None = None) -> None:
        """The rows of media or documents (``row_of``; ``made``: made already), their bytes in
        files under ``media_dir`` (at ``parts_of``) or, with ``media_in_db``, in the row's ``content``."""
        rows = made
        by_key: dict[str, Blob] = {}
        if rows is None:
            rows = []
            media_dir, in_db = self.media_dir, self.media_in_db
            for b in blobs:
                size, sha, path = b.size, b.sha256, None
                if media_dir is not None:
                    path, size, sha = self._blob_file(b, media_dir, parts_of(b))
                elif in_db and (type(size) is not int or sha is None):
                    size, sha = self._measure(b)
                row = row_of(b, size, sha, path)
                rows.append(row)
                by_key[row[0]] = b
        table = self._fixed[table_name]
        with self._op(f"table {table_name}"):
            self._loader.upsert_step(table, key, columns, rows)
        if self.media_in_db:
            size_at = columns.index("size")
            sizes = {r[0]: r[size_at] for r in rows}
            for k, b in by_key.items():
                with self._op(f"table {table_name} ({blob_name(b)})"):
                    self.dialect.store_content(self._conn, table, k, b, sizes[k], self.media_max_bytes, self.schema)
        self._count(blobs[0].kind, len(rows))

    @staticmethod
    def _measure(m: Blob) -> tuple[int, str]:
        h, n = hashlib.sha256(), 0
        for chunk in m.iter_bytes():
            h.update(chunk)
            n += len(chunk)
        return n, h.hexdigest()

    @staticmethod
    def _blob_file(b: Blob, media_dir: Path, parts: list[str]) -> tuple[str, int, str]:
        dest = safe_join(media_dir, *parts)
        h, n = hashlib.sha256(), 0
        try:
            with atomic_write(dest) as fh:
                for chunk in b.iter_bytes():
                    h.update(chunk)
                    n += len(chunk)
                    fh.write(chunk)
        except OSError as e:
            raise SinkError(f"cannot write {b.kind} file {dest}: {e.strerror or e}", context=blob_context(b)) from None
        return "/".join(parts), n, h.hexdigest()


def _media_parts(m: Media) -> list[str]:
    """``<form>/<submission>[/<sub-form>-<row>]/<name>`` under ``media_dir``."""
    r = m.ref
    parts = [safe_filename(r.form_id), safe_filename(r.submission_id)]
    if r.subform:
        parts.append(safe_filename(f"{r.subform}-{r.row}"))
    return [*parts, safe_filename(r.name)]


def _document_parts(d: Document) -> list[str]:
    """``documents/<form>/<submission>/pdf|export-<id>/<name>`` under ``media_dir``; a layout
    picture ``documents/<form>/form_pictures/<field>/<name>``."""
    r = d.ref
    if r.doc_kind == FORM_PICTURE:
        where = ["form_pictures", safe_filename(r.key)]
    else:
        where = [safe_filename(r.submission_id or ""), "pdf" if r.doc_kind == PDF else safe_filename(f"{r.doc_kind}-{r.key}")]
    return ["documents", safe_filename(r.form_id), *where, safe_filename(d.name)]
