"""Read an account archive (directory or zip), streaming its files (layout: ``archive.layout``)."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import IO, Any, Iterator

from exporter import fastjson
from exporter.errors import ArchiveError, NotFoundError

from .layout import FORMAT, FORMAT_VERSION, MANIFEST, form_dir
from .zipindex import ZipIndex


class ArchiveReader:
    """Read an archive directory or zip. Files are streamed; nothing is loaded whole except the
    manifest and one form definition at a time, and a zip's list of members stays on disk
    (``zipindex``): memory does not grow with the archive."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._zip: ZipIndex | None = None
        if self.path.is_file():
            self._zip = ZipIndex(self.path)
            # a zip may hold the archive at its root or inside one top folder
            self._prefix = ""
            if self._zip.get(MANIFEST) is None:
                tops = sorted(n for n in self._zip.ending_with("/" + MANIFEST) if n.count("/") == 1)
                if tops:
                    self._prefix = tops[0][: -len(MANIFEST)]
        elif self.path.is_dir():
            self._prefix = ""
        else:
            raise ArchiveError(f"no account archive at {self.path}")
        try:
            self._check()
        except BaseException:
            self.close()  # (its zip's file and index)
            raise

    def _check(self) -> None:
        if not self.exists(MANIFEST):
            raise ArchiveError(f"{self.path} has no {MANIFEST}: not an account archive")
        self.manifest = self._manifest_head()
        if self.manifest.get("format") != FORMAT:
            raise ArchiveError(f"{self.path}: not an {FORMAT} (format={self.manifest.get('format')!r})")
        if int(self.manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise ArchiveError(f"{self.path}: format version {self.manifest.get('format_version')} is newer "
                               f"than this exporter understands ({FORMAT_VERSION})")

    def close(self) -> None:
        if self._zip:
            self._zip.close()

    # ---- manifest --------------------------------------------------------------------------
    def _manifest_lines(self) -> Iterator[str]:
        with self.open(MANIFEST) as fh:
            yield from io.TextIOWrapper(fh, encoding="utf-8")

    def _manifest_head(self) -> dict:
        """Everything in the manifest but ``files`` (which can hold hundreds of thousands of
        entries): read up to the ``"files"`` line this module writes last. A manifest laid out
        otherwise (edited by hand, another tool) is parsed whole instead."""
        head: list[str] = []
        for line in self._manifest_lines():
            if line.strip() == '"files": {':
                try:
                    parsed = json.loads("".join(head).rstrip().rstrip(",") + "}")
                except ValueError:
                    break
                if isinstance(parsed, dict) and "format" in parsed:  # written by us: files come last
                    return parsed
                break
            head.append(line)
        try:
            whole = json.loads(self.read_bytes(MANIFEST))
        except ValueError as e:
            raise ArchiveError(f"{MANIFEST} is not valid JSON: {e}") from None
        if not isinstance(whole, dict):
            raise ArchiveError(f"{MANIFEST} is not a JSON object")
        whole.pop("files", None)
        return whole

    def iter_files(self) -> Iterator[tuple[str, dict]]:
        """``(path, {sha256, size})`` for every file the manifest lists, streamed line by line
        from the layout this module writes (one entry per line); any other layout is parsed whole."""
        lines = self._manifest_lines()
        for line in lines:
            if line.strip() == '"files": {':
                break
        else:
            yield from self._whole_files()
            return
        first = True
        for line in lines:
            s = line.strip()
            if s == "}":  # the end of the file list
                return
            try:
                rel, entry = next(iter(json.loads("{" + s.rstrip(",") + "}").items()))
            except (ValueError, StopIteration):
                if first:  # not our layout at all
                    yield from self._whole_files()
                    return
                raise ArchiveError(f"{MANIFEST}: malformed file entry {s[:80]!r}") from None
            first = False
            yield rel, entry
        raise ArchiveError(f"{MANIFEST} ends inside its file list")

    def _whole_files(self) -> Iterator[tuple[str, dict]]:
        try:
            whole = json.loads(self.read_bytes(MANIFEST))
        except ValueError as e:
            raise ArchiveError(f"{MANIFEST} is not valid JSON: {e}") from None
        yield from (whole.get("files") or {}).items()

    def files(self) -> dict[str, dict]:
        """The whole file list as a dict (tests and small archives; prefer ``iter_files``)."""
        return dict(self.iter_files())

    # ---- files ---------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        if self._zip:
            return self._zip.get(self._prefix + rel) is not None
        return (self.path / rel).is_file()

    def open(self, rel: str) -> IO[bytes]:
        if ".." in rel.split("/"):
            raise ArchiveError(f"unsafe path in archive: {rel}")
        if self._zip:
            member = self._zip.get(self._prefix + rel)
            if member is None:
                raise ArchiveError(f"{rel} is missing from the archive")
            return self._zip.open(member)
        try:
            return open(self.path / rel, "rb")
        except FileNotFoundError:
            raise ArchiveError(f"{rel} is missing from the archive") from None

    def size(self, rel: str) -> int | None:
        """Stored size of one file in bytes (None when absent)."""
        if self._zip:
            member = self._zip.get(self._prefix + rel)
            return None if member is None else member.size
        try:
            return (self.path / rel).stat().st_size
        except OSError:
            return None

    def read_bytes(self, rel: str) -> bytes:
        with self.open(rel) as fh:
            return fh.read()

    def file_list(self) -> Iterator[str]:
        """Every file in the archive (relative paths), manifest included."""
        if self._zip:
            for n in self._zip.names():
                if n.startswith(self._prefix) and not n.endswith("/"):
                    yield n[len(self._prefix):]
        else:
            yield from _walk(self.path, "")

    def jsonl(self, rel: str) -> Iterator[dict]:
        return (doc for _line, doc in self.jsonl_lines(rel))

    def jsonl_lines(self, rel: str) -> Iterator[tuple[bytes, Any]]:
        """Each JSON line of ``rel`` as ``(its bytes, the decoded document)``."""
        if not self.exists(rel):
            return
        with self.open(rel) as fh:
            for n, line in enumerate(fh, 1):
                if line.isspace():  # blank (``strip()`` would copy every line)
                    continue
                try:
                    yield line, fastjson.loads(line)
                except ValueError as e:  # UnicodeDecodeError included
                    raise ArchiveError(f"{rel} line {n} is not valid JSON: {e}") from None

    def json(self, rel: str) -> Any:
        try:
            return json.loads(self.read_bytes(rel))
        except ValueError as e:
            raise ArchiveError(f"{rel} is not valid JSON: {e}") from None

    # ---- entities ------------------------------------------------------------------------
    def account(self) -> dict:
        return dict(self.manifest.get("account") or {})

    def forms_index(self) -> Iterator[dict]:
        return self.jsonl("forms.jsonl")

    def has_form(self, form_id: str) -> bool:
        return self.exists(f"{form_dir(form_id)}/form.json")

    def form_raw(self, form_id: str) -> dict:
        if not self.has_form(form_id):
            raise NotFoundError(f"unknown form id {form_id!r}")
        return self.json(f"{form_dir(form_id)}/form.json")

    def submissions_raw(self, form_id: str) -> Iterator[dict]:
        return self.jsonl(f"{form_dir(form_id)}/submissions.jsonl")

    def submissions_lines(self, form_id: str) -> Iterator[tuple[bytes, Any]]:
        """The form's submissions as ``(line bytes, decoded payload)``."""
        return self.jsonl_lines(f"{form_dir(form_id)}/submissions.jsonl")

    def media_index(self, form_id: str) -> Iterator[dict]:
        return self.jsonl(f"{form_dir(form_id)}/media.jsonl")

    def documents_index(self, form_id: str) -> Iterator[dict]:
        """The form's vendor documents (none in a version 1 archive)."""
        return self.jsonl(f"{form_dir(form_id)}/documents.jsonl")

    def deleted_ids(self, form_id: str) -> Iterator[str]:
        """The submissions of the form the export saw deleted (none in a version 1 archive)."""
        return (str(x.get("submission_id")) for x in self.jsonl(f"{form_dir(form_id)}/deleted.jsonl")
                if isinstance(x, dict))

    def users_raw(self) -> Iterator[dict]:
        return self.jsonl("users.jsonl")

    def groups_raw(self) -> Iterator[dict]:
        return self.jsonl("groups.jsonl")

    def lists_raw(self) -> Iterator[dict]:
        return self.jsonl("lists.jsonl")


def _walk(folder: Path, prefix: str) -> Iterator[str]:
    """The files under ``folder``, sorted folder by folder (only one folder's names in memory at a
    time, not the whole tree's)."""
    with os.scandir(folder) as it:
        entries = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_file()) for e in it)
    for name, is_dir, is_file in entries:
        if is_dir:
            yield from _walk(folder / name, f"{prefix}{name}/")
        elif is_file:
            yield prefix + name
