"""Replay an account archive as a source: the same records the live service would give."""
from __future__ import annotations

import datetime as dt
import functools
import os
from typing import IO, Any, Iterable, Iterator, Sequence

from exporter.errors import ArchiveError, BadAnswerError, ConfigError, NotFoundError
from exporter.idset import IdSet
from exporter.model import (
    EXPORT,
    FORM_PICTURE,
    PDF,
    Account,
    Checkpoint,
    Document,
    DocumentRef,
    Form,
    FormPart,
    Media,
    MediaRef,
    Record,
    Submission,
)
from exporter.records import parse_form, parse_group, parse_list, parse_submission, parse_user, submission_id

from .layout import form_dir
from .reader import ArchiveReader


def _media_sid(entry: Any, rel: str = "media.jsonl", n: int | None = None) -> str:
    """The submission a media index entry belongs to, as text (``str()`` of its value)."""
    if not isinstance(entry, dict):
        where = f" line {n}" if n is not None else ""
        raise ArchiveError(f"{rel}{where} is not a JSON object")
    return str(entry.get("submission_id"))


class _Documents:
    """A form's ``documents.jsonl``, streamed alongside its submissions (the same order): the
    lines of each submission, and the form's own (layout pictures, ``submission_id`` null), which
    go with the first submission replayed."""

    def __init__(self, lines: Iterator[dict], rel: str, kinds: frozenset[str]):
        self._lines, self._rel, self.kinds = lines, rel, kinds
        self._next: dict | None = next(lines, None)
        self.form_level: list[dict] = []

    def take(self, sid: str) -> list[dict]:
        """The lines of submission ``sid`` (those of the form met on the way are kept aside)."""
        out: list[dict] = []
        while self._next is not None:
            line = self._next
            owner = line.get("submission_id") if isinstance(line, dict) else _media_sid(line, self._rel)
            if owner is not None and str(owner) != sid:
                break
            (out if owner is not None else self.form_level).append(line)
            self._next = next(self._lines, None)
        return [x for x in out if x.get("kind") in self.kinds]


class _ArchivedMedia(Media):
    """A media file of the archive, opened from it when read. (Its reader and path are kept on the
    record itself rather than in an opener closure: a replay makes one per media file, and every
    object a batch holds is one more for the cycle collector to walk.)"""

    def __init__(self, ref: MediaRef, content_type: str, reader: ArchiveReader, rel: str, size: Any, sha256: Any):
        # Blob's fields set here: its opener would be the very object this saves
        self.ref, self.content_type, self.size, self.sha256 = ref, content_type, size, sha256
        self._reader, self._rel = reader, rel

    def open(self) -> IO[bytes]:
        return self._reader.open(self._rel)


def minus_overlap(cursor: str, overlap_seconds: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` minus the overlap window (text in, text out)."""
    try:
        t = dt.datetime.strptime(cursor[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return cursor
    return (t - dt.timedelta(seconds=overlap_seconds)).strftime("%Y-%m-%d %H:%M:%S")


class ArchiveSource:
    """Replay an archive as if it were the live service (offline, after the contract ended)."""

    def __init__(self, path: str | os.PathLike, *, forms: Sequence[str] | None = None,
                 mode: str = "full", overlap_seconds: int = 300, check_deletions: bool = False,
                 vendor_pdf: bool = False, vendor_exports: bool = False, **_ignored: Any):
        if mode == "unread":
            raise ConfigError("an archive has no server read markers: use --incremental cursor or full")
        self.reader = ArchiveReader(path)
        self.forms = list(forms) if forms else None
        self.mode = mode
        self.overlap = overlap_seconds
        #: the archive's ids are a form's complete listing: given to sinks in full mode, or with
        #: ``check_deletions`` (``exporter.deletions``)
        self.check_deletions = check_deletions
        #: the vendor documents replayed: as a live run asks for them (``--vendor-pdf``,
        #: ``--vendor-exports``); layout pictures always
        self.document_kinds = frozenset([FORM_PICTURE] + [PDF] * vendor_pdf + [EXPORT] * vendor_exports)
        self.description = f"archive {self.reader.path}"
        if self.forms:
            for fid in self.forms:
                if not self.reader.has_form(fid):
                    raise NotFoundError(f"unknown form id {fid!r} (not in archive {self.reader.path})")

    @property
    def whole(self) -> bool:
        """Whether a run replays the whole archive (every form, full mode): a backup then copies
        the archive as it is (``zipcopy``) instead of replaying it."""
        return not self.forms and self.mode == "full"

    @property
    def expected_submissions(self) -> int | None:
        """How many submissions a full replay yields (for progress bars), when the manifest says."""
        if self.forms or self.mode != "full":
            return None
        return (self.reader.manifest.get("counts") or {}).get("submissions")

    def form_ids(self) -> list[str]:
        if self.forms:
            return self.forms
        return [str(f["id"]) for f in self.reader.forms_index()]

    @property
    def lists_ids(self) -> bool:
        """Whether this run gives sinks each form's complete id listing (``exporter.deletions``)."""
        return self.mode == "full" or self.check_deletions

    def listing(self, form_id: str) -> IdSet:
        """A form's ids (the archive's are its complete listing), for the deletions check made
        before anything is written."""
        ids = (submission_id(raw) for raw in self.reader.submissions_raw(form_id))
        return IdSet(sid for sid in ids if sid is not None)

    def form_weight(self, form_id: str) -> int:
        """A size hint for scheduling forms on parallel workers: the submissions file's size."""
        return self.reader.size(f"{form_dir(form_id)}/submissions.jsonl") or 0

    def records(self, state: dict[str, str | None] | None = None, *, account: bool = True,
                forms: Iterable[str] | None = None) -> Iterator:
        """The account's records in order. ``account=False`` leaves out the account, users, groups
        and lists; ``forms`` replaces the form ids (parallel workers pull theirs from a queue)."""
        state = state or {}
        if account:
            acc = self.reader.account()
            yield Account(source=self.description, timezone=acc.get("timezone"),
                          exported_at=self.reader.manifest.get("exported_at"), raw=acc,
                          form_ids=None if self.forms else tuple(self.form_ids()))
            for u in self.reader.users_raw():
                yield parse_user(u)
            for g in self.reader.groups_raw():
                yield parse_group(g)
            for lst in self.reader.lists_raw():
                yield parse_list(lst)
        for f in self.form_ids() if forms is None else forms:
            part = f if isinstance(f, FormPart) else FormPart(f)
            yield from self._form_records(part.form_id, state.get(part.form_id), part)

    def _form_records(self, fid: str, cursor: str | None, part: FormPart | None = None) -> Iterator:
        form = parse_form(self.reader.form_raw(fid))
        yield form
        since = minus_overlap(cursor, self.overlap) if (cursor and self.mode == "cursor") else None
        # media index, grouped per submission; streamed alongside submissions (same order)
        media_rel = f"{form_dir(fid)}/media.jsonl"
        media_iter = self.reader.media_index(fid)
        pending_media: dict | None = next(media_iter, None)
        max_time = cursor
        # a share of a form (parallel workers) does not see the whole form: no listing then
        listed = (IdSet.Builder() if (self.mode == "full" or self.check_deletions)
                  and (part is None or part.count <= 1) else None)
        docs = _Documents(self.reader.documents_index(fid), f"{form_dir(fid)}/documents.jsonl", self.document_kinds)
        pictures = True  # the form's layout pictures: with the first submission replayed
        for position, (served, raw) in enumerate(self.reader.submissions_lines(fid)):
            if part is not None and not part.takes(position):  # another worker's share
                sid = submission_id(raw)
                while pending_media is not None and _media_sid(pending_media, media_rel) == sid:
                    pending_media = next(media_iter, None)
                docs.take(str(sid))
                continue
            sub = self._parse(form, raw, served)
            sid, ut = sub.id, sub.update_time
            if listed is not None:
                listed.add(sid)
            medias = None
            while pending_media is not None and _media_sid(pending_media, media_rel) == sid:
                if medias is None:
                    medias = []
                medias.append(pending_media)
                pending_media = next(media_iter, None)
            own = docs.take(sid)
            if since and ut and ut < since:
                continue
            if ut and (max_time is None or ut > max_time):
                max_time = ut
            yield from self._submission_records(sub, medias)
            for line in own:
                yield self._document(form.id, line)
            if pictures and docs.form_level:
                pictures = False
                for line in docs.form_level:
                    yield self._document(form.id, line)
        yield Checkpoint(form.id, max_time, self.mode, listing=None if listed is None else listed.done(),
                         gone=frozenset(self.reader.deleted_ids(fid)))

    @staticmethod
    def _parse(form: Form, raw: Any, served: bytes) -> Submission:
        try:
            return parse_submission(form, raw, served=served)
        except BadAnswerError as e:
            raise ArchiveError(e.message, context=e.context) from None

    def _submission_records(self, sub: Submission, medias: list | None) -> Iterator[Submission | Media]:
        """A submission and the ``Media`` of each reference it makes that its index entries
        (``medias``) hold, in the order of its references."""
        yield sub
        if not medias:
            return
        by_name = {}
        for m in medias:
            try:
                by_name[(m.get("subform"), m.get("row"), m.get("field"), m.get("name"))] = m
            except TypeError:  # a list or an object where a name or a row belongs: no reference names it
                continue
        for ref in sub.media:
            m = by_name.get((ref.subform, ref.row, ref.field, ref.name))
            if m is None:
                continue  # referenced by the submission but never downloaded (missing on the server)
            yield _ArchivedMedia(ref, m.get("content_type") or "application/octet-stream", self.reader, m["path"],
                                 m.get("size"), m.get("sha256"))

    def _document(self, form_id: str, line: dict) -> Document:
        """A ``documents.jsonl`` line as the ``Document`` it stands for (bytes read when opened)."""
        rel = line["path"]
        sid = line.get("submission_id")
        ref = DocumentRef(form_id, None if sid is None else str(sid), str(line.get("kind")), str(line.get("key") or ""))
        return Document(ref, line.get("content_type") or "application/octet-stream",
                        functools.partial(self.reader.open, rel), size=line.get("size"), sha256=line.get("sha256"),
                        name=str(line.get("name") or rel.rsplit("/", 1)[-1]))

    def acknowledge(self, batch: Iterable[Record]) -> None:
        """Archives have no read markers: nothing to acknowledge."""

    def close(self) -> None:
        self.reader.close()
