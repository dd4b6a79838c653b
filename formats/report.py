"""The record-stream side shared by the report writers (DOCX, PDF), and the report options.

:class:`ReportWriterBase` takes the record stream. Media arrive *after* their submission, so it
buffers exactly one submission: the ``Submission`` record plus its media, each copied to a
temporary file as it arrives (``images.MediaPreparer``: images decoded once by Pillow, EXIF
orientation applied, down-scaled to ``image_max_px``, re-encoded as JPEG/PNG when needed). The
submission is rendered (``report_model.build_report``, then the writer's layout) when the next
submission, form or checkpoint arrives, or at ``close``.
"""
from __future__ import annotations

import contextlib
import gc
import posixpath
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from exporter.formats.base import submission_form
from exporter.formats.catalog import REPORT_OPTIONS
from exporter.formats.images import MediaPreparer
from exporter.formats.labels import LABELS, form_language
from exporter.formats.report_model import MediaItem, SubmissionReport, build_report, caption_of, clean_text, media_key

from exporter.errors import ConfigError, FormatError
from exporter.fsutil import owned_tempdir
from exporter.model import Account, Checkpoint, FieldDef, Form, Media, MediaRef, Submission
from exporter.options import parse
from exporter.registry import Format

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
        self._preparer = MediaPreparer(self.ropts.image_max_px, self.labels, self.accepts_image)
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
        key = media_key(ref)
        known = {media_key(r): r for r in sub.media}
        if key not in known:  # same name, other location: match on the name alone
            by_name = [r for r in sub.media if r.name == ref.name]
            if not by_name:
                return
            key = media_key(by_name[0])
            ref = by_name[0]
        if key in self._pending_media:
            return
        fdef = self._field_def(ref)
        caption = caption_of(fdef) if fdef else clean_text(ref.field)
        self._pending_media[key] = self._preparer.prepare(media, fdef, self.media_relpath(ref), caption,
                                                          self.workdir())
        for r in sub.media:  # the same media named twice in a submission shares the file
            if r.name == ref.name and media_key(r) not in self._pending_media:
                self._pending_media[media_key(r)] = self._pending_media[key]

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
    trees, page streams) is not counted by the collector's allocation threshold, so when the
    collector runs rarely (a host application may raise its threshold; the exporter leaves it
    alone) hundreds of written documents piled up: 1.4 GB for 500 DOCX reports. Collecting the
    young generations, where a document built since the previous one sits, costs about 3 ms; a
    full collection would scan every live object of the run. This changes no setting of the
    interpreter."""
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
