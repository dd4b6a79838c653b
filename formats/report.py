"""The report model shared by the DOCX and PDF writers, and the record-stream plumbing they share.

A *report* is what a person reads about one submission: a title (form name and record number),
a metadata table, then every field of the form in definition order with its caption, sub-forms as
tables (one column per child field, headed by the child captions), photos and signatures embedded,
and other media (audio, attachments) listed by name with their path relative to the report.

``build_report`` turns (Form, Submission, prepared media) into a :class:`SubmissionReport` made of
plain blocks (strings and file paths only), so both renderers draw exactly the same content and a
report can be pickled to a spool file (the single-PDF mode lays a whole form out twice).

:class:`ReportWriterBase` is the record-stream side. Media arrive *after* their submission, so it
buffers exactly one submission: the ``Submission`` record plus its media, each copied to a
temporary file as it arrives (and, for images, decoded once by Pillow: EXIF orientation applied,
down-scaled to ``image_max_px``, re-encoded as JPEG/PNG when needed). The submission is rendered
when the next submission, form or checkpoint arrives, or at ``close``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gc
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from exporter.formats import images
from exporter.formats.base import submission_form
from exporter.formats.catalog import REPORT_OPTIONS
from exporter.formats.labels import LABELS, file_size, form_language

from exporter.errors import ConfigError, FormatError
from exporter.fsutil import owned_tempdir
from exporter.model import (
    LAYOUT,
    MEDIA,
    META_KEYS,
    SUBFORM,
    Account,
    Checkpoint,
    FieldDef,
    Form,
    GeoPoint,
    Media,
    MediaRef,
    Submission,
    copy_media,
)
from exporter.options import parse
from exporter.registry import Format

#: sub-forms with more value columns than this are laid out one small table per row
WIDE_TABLE_COLUMNS = 6
#: field types whose media are images (also any media served as ``image/*``)
IMAGE_FIELD_TYPES = frozenset({"photo", "signature", "paint", "schema", "drawing", "fixed_image"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
#: layout field types shown as sub-headings (other layout fields carry no data)
HEADING_TYPES = frozenset({"section", "tab"})

# XML 1.0 (DOCX) and PDF text cannot carry these; they are replaced by U+FFFD so the gap stays visible
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportOptions:
    """Options both report writers understand (besides their own ``docx_single``/``pdf_single``)."""

    lang: str = "auto"  # report_lang: labels language, auto (the form's, else English), en or fr
    page_size: str = "A4"  # report_page_size: A4 or letter
    image_max_px: int = 1600  # report_image_max_px: longest side of embedded images, 0 = keep
    max_submissions: int = 0  # report_max_submissions: single mode, start a new volume after N (0 = never)

    @classmethod
    def from_options(cls, options: dict) -> ReportOptions:
        """The report options of ``options`` (declared in ``formats.catalog``; a bad value:
        ``ConfigError``)."""
        o = parse(REPORT_OPTIONS, options, strict=False)
        return cls(lang=o["report_lang"], page_size=o["report_page_size"], image_max_px=o["report_image_max_px"],
                   max_submissions=o["report_max_submissions"])

    def labels(self, form: Form | None = None, account: Account | None = None) -> dict[str, str]:
        """The labels for ``form``: ``report_lang``'s, or with ``auto`` the form's language
        (``form_language``) when we have its labels, else English."""
        if self.lang != "auto":
            return LABELS[self.lang]
        return LABELS[(form_language(form, account) if form is not None else None) or "en"]


# --------------------------------------------------------------------------------------------
# The report model
# --------------------------------------------------------------------------------------------


@dataclass
class ImageItem:
    """An image embedded in the report: a prepared JPEG/PNG on disk and its pixel size."""

    caption: str
    name: str
    path: str
    width_px: int
    height_px: int
    relpath: str | None = None


@dataclass
class FileItem:
    """A media listed by name: not an image, an image that cannot be embedded, or not exported."""

    caption: str
    name: str
    relpath: str | None  # relative to the report file; None when the media was not exported
    content_type: str = ""
    size: int | None = None  # bytes
    problem: str = ""  # why an image is listed instead of shown; "not exported"

    def details(self, labels: dict[str, str]) -> str:
        """What the report prints after the name: `` — <relpath> (<type>, <size>, <problem>)``."""
        out = f" — {self.relpath}" if self.relpath else ""
        notes = [n for n in (self.content_type, file_size(self.size, labels), self.problem) if n]
        return out + (f" ({', '.join(notes)})" if notes else "")


MediaItem = ImageItem | FileItem


@dataclass
class FieldBlock:
    caption: str
    value: str


@dataclass
class HeadingBlock:
    caption: str


@dataclass
class MediaBlock:
    caption: str
    value: str  # the media names as served
    items: list[MediaItem]


@dataclass
class TableBlock:
    caption: str
    headers: list[str]
    rows: list[list[str]]
    items: list[MediaItem] = field(default_factory=list)  # media of the rows, captioned "Row n · ..."


Block = FieldBlock | HeadingBlock | MediaBlock | TableBlock


@dataclass
class SubmissionReport:
    form_id: str
    form_name: str
    submission_id: str
    title: str
    subtitle: str
    toc_text: str
    meta: list[tuple[str, str]]
    blocks: list[Block]
    update_time: str | None = None  # the submission's, as served: dates the report file

    def images(self) -> list[ImageItem]:
        out: list[ImageItem] = []
        for b in self.blocks:
            if isinstance(b, (MediaBlock, TableBlock)):
                out.extend(i for i in b.items if isinstance(i, ImageItem))
        return out


def clean_text(text: Any) -> str:
    """Text a document can hold: str, with characters XML 1.0 forbids replaced by U+FFFD."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    return _INVALID_XML.sub("\ufffd", s)


def caption_of(f: FieldDef) -> str:
    return clean_text(f.caption.strip() or f.name)


def format_value(fdef: FieldDef, value: Any, text: str | None, labels: dict[str, str]) -> str:
    """A typed value as a person reads it; the served text when the value did not type."""
    if value is None:
        return clean_text(text)
    if isinstance(value, bool):
        return labels["yes"] if value else labels["no"]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M" + (":%S" if value.second else ""))
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.strftime("%H:%M" + (":%S" if value.second else ""))
    if isinstance(value, GeoPoint):
        return f"{value.latitude!r}, {value.longitude!r}"
    if isinstance(value, tuple):  # media names
        return clean_text(", ".join(str(v) for v in value))
    return clean_text(value)


def _media_key(ref: MediaRef) -> tuple:
    return (ref.subform, ref.row, ref.field, ref.name)


def _meta_rows(form: Form, sub: Submission, labels: dict[str, str]) -> list[tuple[str, str]]:
    rows = [(labels["form"], clean_text(f"{form.name} ({form.id})")), (labels["id"], clean_text(sub.id))]
    for k in META_KEYS:
        v = sub.meta.get(k)
        if v not in (None, ""):
            rows.append((labels.get(k, k), clean_text(v)))
    return rows


def build_report(form: Form, sub: Submission, media: dict[tuple, MediaItem], labels: dict[str, str],
                 account: Account | None = None) -> SubmissionReport:
    """The report of one submission. ``media`` maps a media key to its prepared item (only the
    media that arrived); every other media the submission names is listed as not exported."""
    rn = sub.meta.get("record_number")
    title = clean_text(f"{form.name} — #{rn}" if rn else f"{form.name} — {sub.id}")
    when = sub.meta.get("answer_time") or sub.meta.get("create_time") or ""
    who = sub.meta.get("user_name") or ""
    sub_t = f"{labels['submission']} {sub.id}"
    if account is not None and account.timezone:
        sub_t += f" · {labels['timezone']} {account.timezone}"
    toc = " · ".join(p for p in (f"#{rn}" if rn else "", f"{labels['id']} {sub.id}", when, who) if p)
    blocks: list[Block] = []

    def item_for(ref: MediaRef, caption: str) -> MediaItem:
        got = media.get(_media_key(ref))
        if got is None:
            return FileItem(caption, clean_text(ref.name), None, problem=labels["missing"])
        if isinstance(got, ImageItem):
            return ImageItem(caption, got.name, got.path, got.width_px, got.height_px, got.relpath)
        return FileItem(caption, got.name, got.relpath, got.content_type, got.size, got.problem)

    for f in form.fields:
        if f.kind == LAYOUT:
            if f.type.lower() in HEADING_TYPES and (f.caption or "").strip():
                blocks.append(HeadingBlock(caption_of(f)))
            continue
        if f.kind == SUBFORM:
            children = [c for c in f.children if c.has_value]
            rows, items = [], []
            for row in sub.subforms.get(f.name, []):
                rows.append([format_value(c, row.values.get(c.name), row.text.get(c.name), labels)
                             for c in children])
                for c in children:
                    if c.kind == MEDIA:
                        for name in row.values.get(c.name) or ():
                            ref = MediaRef(form.id, sub.id, c.name, name, f.name, row.index)
                            items.append(item_for(ref, f"{labels['row']} {row.index + 1} · {caption_of(c)}"))
            blocks.append(TableBlock(caption_of(f), [caption_of(c) for c in children], rows, items))
            continue
        value = format_value(f, sub.values.get(f.name), sub.text.get(f.name), labels)
        names = sub.values.get(f.name) if f.kind == MEDIA else None
        if names:
            items = [item_for(MediaRef(form.id, sub.id, f.name, n), caption_of(f)) for n in names]
            blocks.append(MediaBlock(caption_of(f), value, items))
        else:
            blocks.append(FieldBlock(caption_of(f), value))
    return SubmissionReport(form.id, clean_text(form.name), clean_text(sub.id), title, clean_text(sub_t),
                            clean_text(toc), _meta_rows(form, sub, labels), blocks, sub.update_time)


def group_blocks(blocks: list[Block]) -> list[list[FieldBlock] | Block]:
    """Consecutive plain fields grouped (each group renders as one caption/value table)."""
    out: list[Any] = []
    for b in blocks:
        if isinstance(b, FieldBlock):
            if out and isinstance(out[-1], list):
                out[-1].append(b)
            else:
                out.append([b])
        else:
            out.append(b)
    return out


# --------------------------------------------------------------------------------------------
# Media preparation
# --------------------------------------------------------------------------------------------


def _looks_like_image(media: Media, fdef: FieldDef | None) -> bool:
    if (media.content_type or "").lower().startswith("image/"):
        return True
    if fdef is not None and fdef.type.lower() in IMAGE_FIELD_TYPES:
        return True
    return posixpath.splitext(media.ref.name.lower())[1] in IMAGE_EXTENSIONS


class MediaPreparer:
    """Copies media to a temporary directory, decoding images once (``formats.images``: embedded
    when the renderer's parser ``accepts`` them, plain or re-encoded, else listed as files)."""

    def __init__(self, root: Path, max_px: int, labels: dict[str, str],
                 accepts: Callable[[str], object] | None = None):
        self.root = root
        self.max_px = max_px
        self.labels = labels
        self.accepts = accepts
        self._n = 0

    def prepare(self, media: Media, fdef: FieldDef | None, relpath: str | None, caption: str,
                workdir: Path) -> MediaItem:
        name = clean_text(media.ref.name)
        ctype = clean_text(media.content_type or "")
        size = media.size if type(media.size) is int else None
        if not _looks_like_image(media, fdef):
            return FileItem(caption, name, relpath, ctype, size)
        self._n += 1
        raw = workdir / f"m{self._n}.bin"
        try:
            with open(raw, "wb") as fh:
                copy_media(media, fh)
        except OSError as e:
            raise FormatError(f"cannot spool media {media.ref.name!r}: {e}",
                              context=f"form {media.ref.form_id} submission {media.ref.submission_id}") from e
        size = raw.stat().st_size
        stem = workdir / f"m{self._n}"
        try:
            got = images.prepare(raw, stem, self.max_px)
            if self.accepts is not None:
                got = images.for_renderer(got, self.accepts, stem)
        except images.Refused as e:
            raw.unlink(missing_ok=True)
            return FileItem(caption, name, relpath, ctype, size, self.labels[e.reason])
        if got.path != raw:
            raw.unlink(missing_ok=True)
        return ImageItem(caption, name, str(got.path), got.width, got.height, relpath)


# --------------------------------------------------------------------------------------------
# Record stream: one buffered submission at a time
# --------------------------------------------------------------------------------------------


class ReportWriterBase:
    """Record-stream handling shared by the report writers.

    Subclasses implement ``_begin_form(form)``, ``_render(report)`` (called once per submission,
    in stream order, with every media that arrived), ``_end_form()`` and ``_abandon()``, and may
    use ``report_dir(form)`` for the directory a report file lands in (for media relpaths).
    """

    single: bool = False
    #: the format's declaration (``formats.catalog``): the options its writer reads
    format: ClassVar[Format]

    def __init__(self, out, options: dict):
        self.out = out
        self.options = self.format.parse_options(options or {}, strict=False)
        self.ropts = ReportOptions.from_options(self.options)
        self.labels = self.ropts.labels()  # of the form being written (set with each form)
        self.account: Account | None = None
        self.form: Form | None = None
        self._tmp = owned_tempdir("exporter-report-")  # removed by close; after a SIGKILL by the next run
        self._preparer = MediaPreparer(self._tmp, self.ropts.image_max_px, self.labels, self.accepts_image)
        self._pending: Submission | None = None
        self._pending_media: dict[tuple, MediaItem] = {}
        self._sub_dir: Path | None = None
        self._form_dir: Path | None = None
        self._closed = False

    # ---- paths ---------------------------------------------------------------------------
    def report_dir(self, form: Form) -> str:
        """Relative directory the report of a submission of ``form`` is written in."""
        return (self.out.aggregate_dir(form) if self.single else f"{self.out.form_dir(form)}/reports")

    def media_relpath(self, ref: MediaRef) -> str:
        assert self.form is not None
        target = self.out.media_relpath(ref, self.form.name)
        return posixpath.relpath(target, self.report_dir(self.form))

    def workdir(self) -> Path:
        """Directory for the prepared media of the buffered submission; in single mode they live
        until the form's document is saved."""
        if self.single:
            if self._form_dir is None:
                self._form_dir = Path(tempfile.mkdtemp(prefix="form-", dir=self._tmp))
            return self._form_dir
        if self._sub_dir is None:
            self._sub_dir = Path(tempfile.mkdtemp(prefix="sub-", dir=self._tmp))
        return self._sub_dir

    def title_info(self, form: Form) -> list[tuple[str, str]]:
        """(label, value) rows of a form document's title page: the form, where the data came
        from, when it was exported and the account's time zone."""
        info = [(self.labels["form"], clean_text(form.id))]
        if self.account is not None:
            info.append((self.labels["source"], clean_text(self.account.source)))
            if self.account.exported_at:
                info.append((self.labels["exported_at"], clean_text(self.account.exported_at)))
            if self.account.timezone:
                info.append((self.labels["timezone"], clean_text(self.account.timezone)))
        return info

    # ---- stream --------------------------------------------------------------------------
    def write(self, record) -> None:
        if isinstance(record, Account):
            self.account = record
        elif isinstance(record, Form):
            self._flush()
            self._finish_form()
            self.form = record
            self.labels = self._preparer.labels = self.ropts.labels(record, self.account)
            self._begin_form(record)
        elif isinstance(record, Submission):
            self._flush()
            submission_form(self.form, record)
            self._pending = record
            self._pending_media = {}
        elif isinstance(record, Media):
            self._add_media(record)
        elif isinstance(record, Checkpoint):
            self._flush()
            if self.form is not None and record.form_id == self.form.id:
                self._finish_form()

    def _add_media(self, media: Media) -> None:
        sub = self._pending
        ref = media.ref
        if sub is None or ref.submission_id != sub.id or ref.form_id != sub.form_id:
            return  # a media whose submission is not being reported (nothing references it)
        key = _media_key(ref)
        known = {_media_key(r): r for r in sub.media}
        if key not in known:  # same name, other location: match on the name alone
            by_name = [r for r in sub.media if r.name == ref.name]
            if not by_name:
                return
            key = _media_key(by_name[0])
            ref = by_name[0]
        if key in self._pending_media:
            return
        fdef = self._field_def(ref)
        caption = caption_of(fdef) if fdef else clean_text(ref.field)
        self._pending_media[key] = self._preparer.prepare(media, fdef, self.media_relpath(ref), caption,
                                                          self.workdir())
        for r in sub.media:  # the same media named twice in a submission shares the file
            if r.name == ref.name and _media_key(r) not in self._pending_media:
                self._pending_media[_media_key(r)] = self._pending_media[key]

    def _field_def(self, ref: MediaRef) -> FieldDef | None:
        assert self.form is not None
        if ref.subform:
            parent = self.form.field(ref.subform)
            if parent is None:
                return None
            return next((c for c in parent.children if c.name == ref.field), None)
        return self.form.field(ref.field)

    def _flush(self) -> None:
        sub, self._pending = self._pending, None
        if sub is None:
            return
        assert self.form is not None
        try:
            report = build_report(self.form, sub, self._pending_media, self.labels, self.account)
            self._render(report)
        finally:
            self._pending_media = {}
            if self._sub_dir is not None:
                shutil.rmtree(self._sub_dir, ignore_errors=True)
                self._sub_dir = None

    def _finish_form(self) -> None:
        if self.form is None:
            return
        try:
            self._end_form()
        finally:
            self.form = None
            if self._form_dir is not None:
                shutil.rmtree(self._form_dir, ignore_errors=True)
                self._form_dir = None

    def close(self, ok: bool) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if ok:
                self._flush()
                self._finish_form()
            else:
                self._pending = None
                self._abandon()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # ---- hooks -----------------------------------------------------------------------------
    @staticmethod
    def accepts_image(path: str) -> object:
        """Parse the image at ``path`` as the renderer will when embedding it; raise when it
        cannot (``formats.images.for_renderer`` then tries a re-encoded copy)."""
        return None

    def _begin_form(self, form: Form) -> None:  # pragma: no cover - overridden
        pass

    def _render(self, report: SubmissionReport) -> None:  # pragma: no cover - overridden
        pass

    def _end_form(self) -> None:  # pragma: no cover - overridden
        pass

    def _abandon(self) -> None:  # pragma: no cover - overridden
        pass


def single_name(out, form: Form, ext: str, volume: int, labels: dict[str, str]) -> str:
    """``<aggregate_dir>/<safe form name>.<ext>`` (``... (part N).<ext>`` for volumes after the first)."""
    stem = form.name or form.id
    if volume > 1:
        stem = f"{stem} ({labels['part']} {volume})"
    return f"{out.aggregate_dir(form)}/{out.safe(stem + '.' + ext)}"


def submission_name(out, form: Form, submission_id: str, ext: str) -> str:
    """``<form_dir>/reports/<safe submission id>.<ext>``."""
    return f"{out.form_dir(form)}/reports/{out.safe(submission_id + '.' + ext)}"


def release_documents() -> None:
    """Free the document just written. python-docx and reportlab documents are webs of reference
    cycles (a package and its parts, a canvas and its document template point at each other), so
    dropping one frees nothing until the cycle collector runs; much of their memory (libxml2's XML
    trees, page streams) is not counted by the collector's allocation threshold, so with a raised
    threshold (the pipeline runs with 100,000) hundreds of written documents piled up: 1.4 GB for
    500 DOCX reports. Collecting the young generations, where a document built since the previous
    one sits, costs about 3 ms; a full collection would scan every live object of the run."""
    gc.collect(1)


@contextlib.contextmanager
def translate_errors(what: str, context: str, extra: tuple = ()):
    """Library errors while laying out a document -> FormatError naming the form/submission."""
    try:
        yield
    except (FormatError, ConfigError):
        raise
    except OSError as e:
        if e.errno is not None:  # the disk (full, read-only...): the sink names it with its path
            raise
        raise FormatError(f"cannot write the {what}: {type(e).__name__}: {e}", context=context) from e
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError, *extra) as e:
        raise FormatError(f"cannot write the {what}: {type(e).__name__}: {e}", context=context) from e


def fonts_dir() -> Path:
    return Path(os.path.dirname(__file__)) / "fonts"
