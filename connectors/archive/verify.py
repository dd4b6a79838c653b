"""Check an account archive: every file re-hashed against the manifest, and the counts."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .layout import MANIFEST
from .reader import ArchiveReader


def verify(path: str | os.PathLike) -> list[str]:
    """Re-hash every file and check the counts. Returns the list of differences (empty = OK)."""
    return check(path)[0]


def check(path: str | os.PathLike) -> tuple[list[str], int, dict]:
    """``verify``, with what was checked: (differences, the number of files the manifest lists,
    the manifest's counts)."""
    reader = ArchiveReader(path)
    problems: list[str] = []
    try:
        present = set(reader.file_list())
        present.discard(MANIFEST)  # in place, not a second set of every name
        listed: set[str] = set()
        for rel, want in reader.iter_files():
            listed.add(rel)
            if rel not in present:
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
        for rel in sorted(present - listed):
            if not Path(rel).name.startswith("."):
                problems.append(f"file not in manifest: {rel}")
        problems += _unlisted_documents(reader, listed)
        if not problems:
            counts = _count(reader)
            for key, want in (reader.manifest.get("counts") or {}).items():
                if counts.get(key) != want:
                    problems.append(f"count mismatch: {key} is {counts.get(key)}, manifest says {want}")
        return problems, len(listed), dict(reader.manifest.get("counts") or {})
    finally:
        reader.close()


def _count(reader: ArchiveReader) -> dict[str, int]:
    counts = {"users": sum(1 for _ in reader.users_raw()), "groups": sum(1 for _ in reader.groups_raw()),
              "lists": sum(1 for _ in reader.lists_raw())}
    forms = [str(f["id"]) for f in reader.forms_index()]
    counts["forms"] = len(forms)
    counts["submissions"] = sum(sum(1 for _ in reader.submissions_raw(f)) for f in forms)
    counts["media"] = len({m["path"] for f in forms for m in reader.media_index(f)})
    if "documents" in (reader.manifest.get("counts") or {}):  # format version 2
        counts["documents"] = len({d["path"] for f in forms for d in reader.documents_index(f)})
        counts["deleted"] = sum(sum(1 for _ in reader.deleted_ids(f)) for f in forms)
    return counts


def _unlisted_documents(reader: ArchiveReader, listed: set[str]) -> list[str]:
    """Index lines of ``documents.jsonl`` whose file the manifest does not list."""
    out = []
    for f in reader.forms_index():
        fid = str(f["id"])
        for d in reader.documents_index(fid):
            path = d.get("path") if isinstance(d, dict) else None
            if path not in listed:
                out.append(f"document in forms/{fid}/documents.jsonl without its file: {path}")
    return out
