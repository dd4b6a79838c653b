"""PDF reports (reportlab platypus): one PDF per submission, or one per form with a table of contents.

Per submission (default): ``<form_dir>/reports/<safe submission id>.pdf``, written atomically as
soon as the submission's media have arrived; footer "page N / M".

``pdf_single=True``: one PDF per form, ``<aggregate_dir>/<safe form name>.pdf``: a title page,
a table of contents (one line per submission with its page number, each a link), then every
submission from a new page, each also a PDF bookmark (outline). Reports are pickled to a spool
file as they arrive and the document is laid out from that spool at the end of the form with a
lazily generated story, in two passes: a *counting* pass (pages discarded, images replaced by
boxes of the same size) finds the page of every submission and the page count, then the real pass
writes the file. Only one report's flowables exist at a time, but reportlab keeps the pages of the
PDF it is writing in memory until it saves it, so memory grows with the size of the output
(images are down-scaled, ``report_image_max_px``, to keep that small); ``report_max_submissions=N``
starts a new volume every N submissions to bound it.

What a report says is ``report_model``; how it is laid out, ``pdf_layout``; its text (fonts,
right-to-left lines), ``pdf_text``; the reportlab pieces (canvases, lazy story), ``pdf_flowables``.
"""
from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from reportlab.lib.utils import ImageReader
from reportlab.platypus import Flowable, PageBreak
from reportlab.platypus.doctemplate import LayoutError

from exporter.model import Form

from .base import FormatLimits
from .catalog import PDF
from .pdf_flowables import CountingCanvas, LazyStory, TocEntry, numbered_canvas
from .pdf_layout import PdfLayout
from .pdf_text import visual_line
from .report import ReportWriterBase, release_documents, single_name, submission_name, translate_errors
from .report_model import SubmissionReport, clean_text
from .stable import Newest, newest


class PdfWriter(ReportWriterBase):
    key = PDF.key
    description = PDF.description
    format = PDF
    limits = FormatLimits(holds_whole_document=True, per_submission_files=True)

    def __init__(self, out, options: dict):
        super().__init__(out, options)
        self.single = self.options["pdf_single"]
        self.limits = FormatLimits(holds_whole_document=self.single, per_submission_files=not self.single)
        self.layout = PdfLayout(self.ropts.page_size, self.labels)
        self._spool: IO[bytes] | None = None
        self._spool_path: Path | None = None
        self._count = 0
        self._volume = 0
        self._newest = Newest()  # of the submissions in the volume being spooled
        self.pages = 0  # pages written (for benchmarks and logs)
        self.documents = 0

    @staticmethod
    def accepts_image(path: str) -> object:
        """reportlab's image reader, which the Image flowable draws from."""
        return ImageReader(path).getSize()

    # ---- stream hooks ------------------------------------------------------------------
    def _begin_form(self, form: Form) -> None:
        self.layout.labels = self.labels
        self._count = 0
        self._volume = 0
        self._newest.reset()

    def _render(self, report: SubmissionReport) -> None:
        assert self.form is not None
        ctx = f"form {report.form_id} submission {report.submission_id}"
        with self._errors(ctx):
            if not self.single:
                rel = submission_name(self.out, self.form, report.submission_id, "pdf")
                with self.out.atomic(rel) as fh:
                    doc = self.layout.doc(fh, report.title, newest(report.update_time))
                    doc.build(list(self.layout.report_flowables(report)),
                              canvasmaker=numbered_canvas(self.layout.footer(None)))
                self.pages += doc.page
                del doc
                release_documents()
                self.documents += 1
                return
            if self._spool is not None and self.ropts.max_submissions and self._count >= self.ropts.max_submissions:
                self._build_single()
            spool = self._spool
            if spool is None:
                self._volume += 1
                self._count = 0
                spool = self._open_spool()
            pickle.dump(report, spool, protocol=pickle.HIGHEST_PROTOCOL)
            self._newest.add(report.update_time)
            self._count += 1

    def _end_form(self) -> None:
        if not self.single or self.form is None:
            return
        with self._errors(f"form {self.form.id}"):
            if self._spool is None and self._volume == 0 and not self.out.incremental:
                self._volume = 1
                self._open_spool()
            if self._spool is not None:
                self._build_single()

    def _open_spool(self) -> IO[bytes]:
        self._spool_path = self.workdir() / f"reports-{self._volume}.pickle"
        self._spool = open(self._spool_path, "wb")  # noqa: SIM115 - spans many records, closed in _build_single
        return self._spool

    def _abandon(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def _errors(self, ctx: str):
        return translate_errors("PDF report", ctx, (LayoutError,))

    # ---- one document per form -------------------------------------------------------------
    def _spooled(self) -> Iterator[SubmissionReport]:
        assert self._spool_path is not None
        with open(self._spool_path, "rb") as fh:
            while True:
                try:
                    yield pickle.load(fh)
                except EOFError:
                    return

    def _build_single(self) -> None:
        """Lay the spooled volume out: a counting pass, then the real one (repeated if the pages
        moved, which only a change in layout between passes could cause)."""
        assert self.form is not None and self._spool is not None
        self._spool.close()
        self._spool = None
        form, layout = self.form, self.layout
        name = clean_text(form.name or form.id)
        left = visual_line(name if len(name) <= 80 else name[:79] + "…")
        rel = single_name(self.out, form, "pdf", self._volume, self.labels)
        path = self.out.pending_path(rel)
        pages: list[int] = []
        total = 0
        self._newest.add(form.update_time)
        when = self._newest.value
        self._newest.reset()
        layout.counting = True
        try:
            doc = layout.doc(io.BytesIO(), name, when)
            # reportlab's stubs ask for a list; it only takes from the front, which a LazyStory does
            doc.build(LazyStory(self._single_story(form, pages)), canvasmaker=CountingCanvas)  # type: ignore[arg-type]
            pages, total = doc.heading_pages, doc.page
        finally:
            layout.counting = False
        for _attempt in range(3):
            footer = layout.footer(left)
            doc = layout.doc(str(path), name, when)

            def on_page(canv, d, footer=footer, total=total):
                footer(canv, d.page, total)

            doc.build(LazyStory(self._single_story(form, pages)),  # type: ignore[arg-type]  # as above
                      onFirstPage=on_page, onLaterPages=on_page)
            if doc.heading_pages == pages and doc.page == total:
                break
            pages, total = doc.heading_pages, doc.page
        self.pages += total
        del doc
        release_documents()
        self.documents += 1
        if self._spool_path is not None:
            self._spool_path.unlink(missing_ok=True)

    def _single_story(self, form: Form, pages: list[int]) -> Iterator[Flowable]:
        layout = self.layout
        yield layout.p(form.name or form.id, layout.st_title)
        yield from layout.kv(self.title_info(form))
        n = 0
        for rep in self._spooled():
            if n == 0:
                yield layout.p(self.labels["contents"], layout.st_h2)
            yield TocEntry(visual_line(rep.toc_text.replace("\n", " ")), pages[n] if n < len(pages) else 0, f"s{n}")
            n += 1
        if n == 0:
            yield layout.p(self.labels["no_submissions"], layout.st_body)
        for i, rep in enumerate(self._spooled()):
            yield PageBreak()
            yield from layout.report_flowables(rep, key=f"s{i}")


__all__ = ["PdfWriter"]
