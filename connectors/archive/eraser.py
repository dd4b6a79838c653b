"""Erasing a person or submissions from an account archive destination (``archive://``, ``exporter
forget``).

An archive is a snapshot whose manifest hashes every file, so it is not edited in place: it is
written again without the request's data, by the same code that rewrites a backup
(``exporter.privacy.archive_erase``: the archive replayed by its own source, filtered, written by
its own sink, streamed), next to it, then verified (every file re-hashed, the counts recounted) and
swapped in. In order:

1. ``plan``: the archive is verified (one that does not is refused: its damage would be hashed
   again into a clean-looking copy) and what the request takes out of it counted;
2. the job (request, counts, audit line, zip or folder, the manifest digest of the archive it
   starts from) is written to ``.<name>.forget.json`` next to the archive;
3. the new archive is written as ``.<name>.e<erasure id>.new`` (the sink assembles it under a
   temporary ``.partial`` name and renames it there once complete), verified, and its manifest
   digest added to the job;
4. the swap: a zip replaces the old one in one rename; a folder is renamed aside
   (``.<name>.e<erasure id>.old``), the new one renamed into its place, the old one removed;
5. what a killed export left beside the archive (``.<name>.*.partial``, ``.<name>.*.old``) is
   removed, the audit line appended (once) to ``<name>.erasures.jsonl`` next to the archive, and
   the job file removed.

A forget stopped anywhere (SIGKILL too) leaves the old archive or the new one whole (between the
two renames of a folder, under the names the job gives), and the next ``forget --apply`` into the
archive finishes the job first: a new archive not yet verified is written again, a verified one is
swapped in, a swapped one only has its audit line written. An export into the same archive at the
same time would replace it under the forget: do not run both at once.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.errors import ArchiveError, SinkError, os_error_text
from exporter.fsutil import atomic_write, fsync_dir, remove_path
from exporter.privacy.archive_erase import count_erasure, rewrite_archive
from exporter.privacy.forget import Request, append_lines, journaled

from .layout import MANIFEST
from .reader import ArchiveReader
from .verify import verify

if TYPE_CHECKING:
    from .sink import ArchiveSink

log = logging.getLogger("exporter.archive")


def manifest_digest(path: Path) -> str:
    """The sha256 of an archive's manifest, which hashes every other file: the archive's identity."""
    reader = ArchiveReader(path)
    try:
        h = hashlib.sha256()
        with reader.open(MANIFEST) as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()
    finally:
        reader.close()


class ArchiveEraser:
    """The ``Eraser`` of an archive destination (see ``exporter.privacy.forget`` and above)."""

    def __init__(self, sink: ArchiveSink):
        # an archive reached through a symbolic link is erased where it is: replacing the link
        # would leave the archive, the person in it, at the link's target
        self.target = Path(sink.target).resolve()
        self.name = sink.name
        self.journal = self.target.parent / f".{self.target.name}.forget.json"
        self.audit = self.target.parent / f"{self.target.name}.erasures.jsonl"
        self._planned: tuple[dict, tuple[int, int], dict[str, int]] | None = None

    # ---- the protocol ----------------------------------------------------------------------
    def plan(self, request: Request) -> dict[str, int]:
        current = self._current()
        problems = verify(current)
        if problems:
            raise ArchiveError(f"{self.name} does not verify ({'; '.join(problems[:3])}): restore it from a copy "
                               "or export it again before forget")
        counts = count_erasure(current, request)
        self._planned = (request.as_doc(), self._identity(current), counts)
        return counts

    def erase(self, request: Request, audit_line: Callable[[dict[str, int]], str]) -> list[str]:
        return journaled(self.name, request, audit_line, self._pending(), self._job, self._save, self._run)

    # ---- the job ---------------------------------------------------------------------------
    def _current(self) -> Path:
        """The archive as it stands: its path, or, when a stopped forget left a folder between its
        two renames, the new archive beside it (which the next ``--apply`` puts in its place)."""
        if not self.target.exists():
            job = self._pending()
            if job is not None and "new" in job and self._names(job)[0].exists():
                return self._names(job)[0]
        return self.target

    @staticmethod
    def _identity(path: Path) -> tuple[int, int]:
        """Which archive is at ``path`` (an export or an erasure puts a new file or folder there)."""
        st = path.stat()
        return st.st_dev, st.st_ino

    def _job(self, request: Request) -> dict:
        planned = self._planned
        if planned is not None and planned[0] == request.as_doc() and planned[1] == self._identity(self.target):
            counts = planned[2]
        else:  # (an erasure a stopped forget left was finished since the plan)
            counts = count_erasure(self.target, request)
        return {"request": request.as_doc(), "counts": counts, "zip": self.target.is_file(),
                "old": manifest_digest(self.target)}

    def _pending(self) -> dict | None:
        if not self.journal.is_file():
            return None
        try:
            return json.loads(self.journal.read_text("utf-8"))
        except ValueError as e:
            raise SinkError(f"{self.journal} is unreadable ({e}); remove it and run forget again") from None

    def _save(self, job: dict) -> None:
        try:
            with atomic_write(self.journal, "w", encoding="utf-8") as fh:
                json.dump(job, fh, sort_keys=True)
        except OSError as e:
            raise SinkError(os_error_text(e, f"write {self.journal}")) from None

    def _names(self, job: dict) -> tuple[Path, Path]:
        """Where the job writes the new archive, and where a folder's old one waits to be removed."""
        erasure_id = json.loads(job["line"])["erasure_id"]
        base = self.target.parent / f".{self.target.name}.e{erasure_id}"
        return base.with_name(base.name + ".new"), base.with_name(base.name + ".old")

    # ---- doing it --------------------------------------------------------------------------
    def _run(self, job: dict) -> str:
        try:
            if job["counts"]:  # (an archive without the request's data is left as it is)
                self._rewrite_and_swap(job)
            # what a killed export left beside the archive (the sink's ``.<name>.<8 random>.partial``
            # copy being written, a folder's ``.<name>.<8 random>.old`` being replaced) holds the
            # person too; the exact form, so that another archive's (``<name>.zip``) is left alone
            debris = re.compile(re.escape(f".{self.target.name}.") + r"[a-z0-9_]{8}\.(?:partial|old)")
            for p in self.target.parent.iterdir():
                if debris.fullmatch(p.name):
                    remove_path(p)
        except OSError as e:
            raise SinkError(os_error_text(e, f"write the archive {self.target}")) from None
        self._record(job["line"])
        try:
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()
            for p in self.target.parent.glob(f".{self.journal.name}.*.partial"):  # a save a kill cut short
                remove_path(p)
        except OSError as e:
            raise SinkError(os_error_text(e, f"remove the finished job {self.journal}")) from None
        return job["line"]

    def _rewrite_and_swap(self, job: dict) -> None:
        new, old = self._names(job)
        current = manifest_digest(self.target) if self.target.exists() else None
        if current is not None and current == job.get("new"):  # swapped already
            remove_path(old)
            return
        if current is None and not (new.exists() and old.exists() and "new" in job):
            raise SinkError(f"{self.name}: the archive is gone (the stopped forget's job {self.journal} cannot "
                            "be finished): put the archive back, remove the job file and run forget again")
        if current is not None and (current != job["old"] or "new" not in job or not new.exists()):
            # not written yet, not verified yet, or the archive changed since: written (again)
            remove_path(new)
            for p in self.target.parent.glob(f".{new.name}.*.partial"):  # the sink's, from a stopped run
                remove_path(p)
            asked = job["request"]
            request = Request(user_id=asked["user_id"], submission_ids=tuple(asked["submission_ids"]),
                              only_personal=asked["only_personal"])
            rewrite_archive(self.target, new, request, zip_output=job["zip"])
            shutil.copymode(self.target, new)  # a zip kept 0600 (it holds people) does not become 0644
            job.update(old=current, new=manifest_digest(new))
            self._save(job)
        if job["zip"]:
            os.replace(new, self.target)
        else:
            if self.target.exists():
                # what a stopped forget set aside before an export wrote the archive again: the
                # archive before the erasure, stale, and in the way of this rename
                remove_path(old)
                os.rename(self.target, old)
            os.rename(new, self.target)
        fsync_dir(self.target.parent)
        remove_path(old)
        log.info("%s written again without the erased data", self.name)

    def _record(self, line: str) -> None:
        """The audit line, appended once to the archive's own record."""
        erasure_id = json.loads(line)["erasure_id"]
        if self.audit.is_file():
            with open(self.audit, encoding="utf-8") as fh:
                for old in fh:
                    with contextlib.suppress(ValueError):
                        if json.loads(old).get("erasure_id") == erasure_id:
                            return
        append_lines(self.audit, [line])
