"""Check an account archive: every file re-hashed against the manifest, and the counts.

Memory does not grow with the archive: the manifest's file list and the archive's files are read
as streams, side by side. The names a check has to remember go to a table of a private temporary
SQLite database (on disk): the distinct media and document paths it counts, and the manifest's
names when the archive's files do not come in the manifest's order (a folder, a zip made by
another tool), to find the files it does not list. The zips this tool writes hold the files in
the manifest's order, so for them that list is not made at all.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .layout import MANIFEST
from .reader import ArchiveReader

_BATCH = 500
_END: Any = object()


class _Names:
    """A set of names in a private temporary SQLite database (on disk once past its cache)."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("CREATE TABLE s (name TEXT PRIMARY KEY) WITHOUT ROWID")
        self._batch: list[tuple[str]] = []

    def add(self, name: str) -> None:
        self._batch.append((name,))
        if len(self._batch) >= 4 * _BATCH:
            self._flush()

    def _flush(self) -> None:
        self._db.executemany("INSERT OR IGNORE INTO s VALUES (?)", self._batch)
        self._batch.clear()

    def __len__(self) -> int:
        self._flush()
        return self._db.execute("SELECT count(*) FROM s").fetchone()[0]

    def absent(self, names: Iterable[Any]) -> Iterator[Any]:
        """Those of ``names`` not in the set (what is not text is in no set)."""
        self._flush()
        chunk: list[str] = []
        for name in itertools.chain(names, [_END]):
            if isinstance(name, str):
                chunk.append(name)
            elif name is not _END:
                yield name
            if chunk and (name is _END or len(chunk) >= _BATCH):
                found = {n for (n,) in self._db.execute(
                    f"SELECT name FROM s WHERE name IN ({','.join('?' * len(chunk))})", chunk)}
                yield from (n for n in chunk if n not in found)
                chunk = []

    def close(self) -> None:
        self._db.close()


def verify(path: str | os.PathLike) -> list[str]:
    """Re-hash every file and check the counts. Returns the list of differences (empty = OK)."""
    return check(path)[0]


def check(path: str | os.PathLike) -> tuple[list[str], int, dict]:
    """``verify``, with what was checked: (differences, the number of files the manifest lists,
    the manifest's counts)."""
    reader = ArchiveReader(path)
    problems: list[str] = []
    listed: _Names | None = None
    try:
        files, in_order = _rehash(reader, problems)
        if not in_order:  # the manifest's names, to find the files it does not list
            listed = _Names()
            for rel, _want in reader.iter_files():
                listed.add(rel)
            files = len(listed)
            unlisted = listed.absent(rel for rel in reader.file_list() if rel != MANIFEST)
            problems += [f"file not in manifest: {rel}" for rel in sorted(unlisted) if not Path(rel).name.startswith(".")]
        problems += _unlisted_documents(reader, listed)
        if not problems:
            counts = _count(reader)
            for key, want in (reader.manifest.get("counts") or {}).items():
                if counts.get(key) != want:
                    problems.append(f"count mismatch: {key} is {counts.get(key)}, manifest says {want}")
        return problems, files, dict(reader.manifest.get("counts") or {})
    finally:
        if listed is not None:
            listed.close()
        reader.close()


def _rehash(reader: ArchiveReader, problems: list[str]) -> tuple[int, bool]:
    """Re-hash every file the manifest lists, noting the differences: (the number of entries,
    whether the archive's files are exactly those, in the manifest's order)."""
    present = (rel for rel in reader.file_list() if rel != MANIFEST)
    in_order = True
    entries = 0
    for rel, want in reader.iter_files():
        entries += 1
        if in_order and next(present, None) != rel:
            in_order = False
        if rel == MANIFEST or not reader.exists(rel):  # (a manifest cannot list its own hash)
            problems.append(f"missing file: {rel}")
            continue
        h = hashlib.sha256()
        size = 0
        with reader.open(rel) as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        if size != want.get("size"):
            problems.append(f"size mismatch: {rel} is {size} bytes, manifest says {want.get('size')}")
        if h.hexdigest() != want.get("sha256"):
            problems.append(f"checksum mismatch: {rel}")
    return entries, in_order and next(present, None) is None


def _count(reader: ArchiveReader) -> dict[str, int]:
    counts = {"users": sum(1 for _ in reader.users_raw()), "groups": sum(1 for _ in reader.groups_raw()),
              "lists": sum(1 for _ in reader.lists_raw())}
    forms = [str(f["id"]) for f in reader.forms_index()]
    counts["forms"] = len(forms)
    counts["submissions"] = sum(sum(1 for _ in reader.submissions_raw(f)) for f in forms)
    counts["media"] = _distinct(m["path"] for f in forms for m in reader.media_index(f))
    if "documents" in (reader.manifest.get("counts") or {}):  # format version 2
        counts["documents"] = _distinct(d["path"] for f in forms for d in reader.documents_index(f))
        counts["deleted"] = sum(sum(1 for _ in reader.deleted_ids(f)) for f in forms)
    return counts


def _distinct(paths: Iterable[str]) -> int:
    names = _Names()
    try:
        for p in paths:
            names.add(p)
        return len(names)
    finally:
        names.close()


def _unlisted_documents(reader: ArchiveReader, listed: _Names | None) -> list[str]:
    """Index lines of ``documents.jsonl`` whose file the manifest does not list (``listed``: the
    manifest's names; None when the archive's files are exactly those)."""
    out = []
    for f in reader.forms_index():
        fid = str(f["id"])
        paths = (d.get("path") if isinstance(d, dict) else None for d in reader.documents_index(fid))
        if listed is None:
            absent: Iterable = (p for p in paths if not isinstance(p, str) or p == MANIFEST or not reader.exists(p))
        else:
            absent = listed.absent(paths)
        out += [f"document in forms/{fid}/documents.jsonl without its file: {p}" for p in absent]
    return out
