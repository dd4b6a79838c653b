"""A person taken out of an account archive's record stream (an ``archive://`` destination or a
backup rewritten by ``exporter forget``): the archive is replayed by its own source (``ArchiveSource``), each record goes through
``ArchiveErasure.apply`` and what is left is written by the archive sink, so the new archive has
the layout, hashes and manifest of any other, streamed (one record, one media at a time).

What goes is what goes from every destination (``exporter.privacy.forget``): the user's record,
their group memberships, the submissions they made or received (with their sub-form rows, media
and the service's documents of them), or the submissions asked for by id; in the submissions the
user only edited (every one naming them, with ``only_personal``), the metadata naming them is
emptied in the served payload the archive keeps, and the service's documents of them, which show
it and cannot be changed, go. With ``only_personal`` the user's record keeps its row without its
personal columns. The counts use the kinds of ``exporter.privacy.forget.KINDS``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

from exporter.errors import ArchiveError
from exporter.fsutil import remove_path
from exporter.model import Record, Submission

from . import personal
from .erase_records import blank_roles, blank_user, without_member
from .forget import Request, add


def blank_served_roles(payload: dict, roles: list[str]) -> dict:
    """A served submission (either shape) without the metadata naming the user in ``roles``
    (``personal.ROLES``): the names emptied, the reference keys removed."""
    flat = "fields" not in payload and ("_id" in payload or "id" not in payload)
    out = dict(payload)
    for role in roles:
        keys, prefix = personal.ROLES[role]
        for k in keys:
            sk = personal.served_key(k, flat)
            if out.get(sk) not in (None, ""):
                out[sk] = None
        for sk in list(out):
            bare = sk[1:] if flat and sk.startswith("_") else None if flat else sk
            if bare is not None and personal.is_submission_ref(bare, prefix):
                del out[sk]
    return out


class ArchiveErasure:
    """Filters an archive's records for one request; ``counts`` says what went."""

    def __init__(self, request: Request):
        self.request = request
        self.counts: dict[str, int] = {}
        self._gone: set[tuple[str, str]] = set()  # (form, submission) left out, with their media and documents
        self._changed: set[tuple[str, str]] = set()  # kept with the user's name emptied: their documents go

    def apply(self, records: Iterable[Record]) -> Iterator[Record]:
        for r in records:
            out = self._one(r)
            if out is not None:
                yield out

    def _one(self, r: Record) -> Record | None:
        uid, counts = self.request.user_id, self.counts
        if r.kind == "user":
            if uid is None or r.id != uid:
                return r
            if not self.request.only_personal:
                add(counts, "users", 1)
                return None
            blanked, n = blank_user(r)
            add(counts, "user_personal_values", n)
            return blanked
        if r.kind == "group":
            if uid is None or self.request.only_personal:
                return r
            kept, n = without_member(r, uid)
            add(counts, "group_memberships", n)
            return kept
        if r.kind == "submission":
            return self._submission(r)
        if r.kind == "media":
            key = (r.ref.form_id, r.ref.submission_id)
            if key in self._gone:
                add(counts, "media", 1)
                return None
            return r
        if r.kind == "document":
            key = (r.ref.form_id, str(r.ref.submission_id))
            if r.ref.submission_id is not None and (key in self._gone or key in self._changed):
                add(counts, "documents", 1)
                return None
            return r
        return r

    def _submission(self, sub: Submission) -> Submission | None:
        uid, counts = self.request.user_id, self.counts
        key = (sub.form_id, sub.id)
        if uid is None:
            if sub.id not in self.request.submission_ids:
                return sub
            roles: list[str] = []
        else:
            roles = personal.roles_of(sub.meta, uid)
            if not roles:
                return sub
        if uid is None or (not self.request.only_personal and ("user_id" in roles or "recipient_id" in roles)):
            self._gone.add(key)
            add(counts, "submissions", 1)
            add(counts, "subform_rows", sum(len(rows) for rows in sub.subforms.values()))
            return None
        self._changed.add(key)
        blanked, n = blank_roles(sub, roles)
        add(counts, "submission_personal_values", n)
        return dataclasses.replace(blanked, raw=blank_served_roles(sub.raw, roles))


def _records(plain: Path, erasure: ArchiveErasure) -> Iterator[list]:
    """The archive's records without the request's, in batches (every document kind replayed)."""
    from exporter.connectors.archive.source import ArchiveSource
    from exporter.pipeline import batches

    source = ArchiveSource(plain, vendor_pdf=True, vendor_exports=True)
    try:
        yield from batches(erasure.apply(source.records({})), 500, 64 << 20)
    finally:
        source.close()


def count_erasure(plain: Path, request: Request) -> dict[str, int]:
    """What the request takes out of the archive ``plain``, per kind; nothing is written."""
    erasure = ArchiveErasure(request)
    for _batch in _records(plain, erasure):
        pass
    return erasure.counts


def rewrite_archive(plain: Path, out: Path, request: Request, *, zip_output: bool = True) -> dict[str, int]:
    """Write the archive ``plain`` again at ``out`` (a zip, or a folder) without the request's
    data, keeping its snapshot time, then verify it (every file re-hashed, the counts recounted);
    the counts of what went. Nothing is at ``out`` unless it verifies."""
    from exporter.connectors.archive.reader import ArchiveReader
    from exporter.connectors.archive.sink import ArchiveSink
    from exporter.connectors.archive.verify import verify as verify_archive
    from exporter.sinks import RunContext

    reader = ArchiveReader(plain)
    try:
        exported_at = reader.manifest.get("exported_at")
    finally:
        reader.close()
    erasure = ArchiveErasure(request)
    sink = ArchiveSink(out, zip_output=zip_output, exported_at=exported_at)
    sink.open(RunContext(run_id="forget", source=f"archive {plain.name}"))
    ok = False
    try:
        for batch in _records(plain, erasure):
            sink.write(batch)
        ok = True
    finally:
        sink.close(ok)
    problems = verify_archive(out)
    if problems:
        remove_path(out)
        raise ArchiveError(f"the rewritten archive does not verify ({len(problems)} problem(s)): "
                           f"{'; '.join(problems[:3])}")
    return erasure.counts
