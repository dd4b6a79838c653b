"""The SQL sink's ``media`` rows: one per media file, with its bytes beside the database
(``media_dir``), in it (``media_in_db``, stored the dialect's way) or only its index."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import sqlalchemy as sa

from exporter.errors import SinkError
from exporter.fsutil import atomic_write
from exporter.model import Media
from exporter.naming import safe_filename, safe_join

from .dialects.base import Dialect, Loader
from .rows import media_row


class MediaWrites:
    """Mixed into ``SqlSink``: the media of a batch."""

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

    def _write_media(self, media: list[Media]) -> None:
        rows = []
        by_key: dict[str, Media] = {}
        media_dir, in_db = self.media_dir, self.media_in_db
        for m in media:
            size, sha, path = m.size, m.sha256, None
            if media_dir is not None:
                r = m.ref
                path, size, sha = self._media_file(m, f"form {r.form_id} submission {r.submission_id} media {r.name}")
            elif in_db and (size is None or sha is None):
                size, sha = self._measure(m)
            row = media_row(m, size, sha, path)
            rows.append(row)
            by_key[row["media_key"]] = m
        table = self._fixed["media"]
        with self._op("table media"):
            self._loader.upsert_step(table, "media_key", rows)
        if self.media_in_db:
            sizes = {r["media_key"]: r["size"] for r in rows}
            for k, m in by_key.items():
                with self._op(f"table media ({m.ref.name})"):
                    self._store_content(table, k, m, sizes[k])
        self._count("media", len(rows))

    @staticmethod
    def _measure(m: Media) -> tuple[int, str]:
        h, n = hashlib.sha256(), 0
        for chunk in m.iter_bytes():
            h.update(chunk)
            n += len(chunk)
        return n, h.hexdigest()

    def _media_file(self, m: Media, ctx: str) -> tuple[str, int, str]:
        r = m.ref
        parts = [safe_filename(r.form_id), safe_filename(r.submission_id)]
        if r.subform:
            parts.append(safe_filename(f"{r.subform}-{r.row}"))
        parts.append(safe_filename(r.name))
        dest = safe_join(self.media_dir, *parts)
        h, n = hashlib.sha256(), 0
        try:
            with atomic_write(dest) as fh:
                for chunk in m.iter_bytes():
                    h.update(chunk)
                    n += len(chunk)
                    fh.write(chunk)
        except OSError as e:
            raise SinkError(f"cannot write media file {dest}: {e.strerror or e}", context=ctx) from None
        return "/".join(parts), n, h.hexdigest()

    def _store_content(self, table: sa.Table, key: str, m: Media, size: int) -> None:
        self.dialect.store_content(self._conn, table, key, m, size, self.media_max_bytes, self.schema)
