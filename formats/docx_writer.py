"""DOCX reports (python-docx): one Word document per submission, or one per form.

Per submission (default): ``<form_dir>/reports/<safe submission id>.docx``, each written
atomically as soon as the submission's media have arrived.

``docx_single=True``: one document per form, ``<aggregate_dir>/<safe form name>.docx``, a title
page with a table-of-contents field (Word fills it in when the document is opened), then every
submission starting on a new page with a level-1 heading. python-docx keeps the document's XML in
memory until it is saved, so this mode *holds a whole document* (declared in ``limits``); image
bytes are not held: each embedded image stays in a temporary file and is streamed into the
package when the document is saved. ``report_max_submissions=N`` starts a new volume
(``<name> (part 2).docx``...) every N submissions to bound that memory.

Content (see ``formats.report_model``): title, metadata table, every field with its caption in
definition order (consecutive simple fields as a caption/value table), section headings,
sub-forms as tables whose header row holds the child captions (repeated on every page), photos and
signatures scaled to the text width keeping their aspect ratio, other media listed by name with
their path relative to the document.
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.text import WD_BREAK
from docx.image.image import Image as DocxImage
from docx.opc.packuri import PackURI
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.parts.image import ImagePart
from docx.shared import Emu, Mm, Pt

from exporter.fsutil import StopAfterError
from exporter.model import Form

from .base import FormatLimits
from .catalog import DOCX
from .labels import counted
from .report import ReportWriterBase, release_documents, single_name, submission_name, translate_errors
from .report_model import (
    WIDE_TABLE_COLUMNS,
    FileItem,
    HeadingBlock,
    ImageItem,
    MediaBlock,
    MediaItem,
    SubmissionReport,
    TableBlock,
    clean_text,
    group_blocks,
)
from .stable import Newest, newest, restamp

EMU_PER_INCH = 914400
#: rows longer than this may split across pages (Word cannot lay out an unsplittable row taller
#: than a page); shorter rows are kept on one page
CANT_SPLIT_MAX_CHARS = 1500


class _DiskImagePart(ImagePart):
    """An image part whose bytes stay in their file until the package is saved, and which keeps
    no decoded copy. Made by this writer (``_add_image_part``) and only for its own documents;
    python-docx's classes are left as they are."""

    def __init__(self, partname: PackURI, content_type: str, path: str, sha1: str):
        super().__init__(partname, content_type, b"")
        self._disk_path = path
        self._disk_sha1 = sha1

    @property
    def blob(self) -> bytes:  # read once, at save time, one image at a time
        return Path(self._disk_path).read_bytes()

    @property
    def sha1(self) -> str:
        return self._disk_sha1

    @property
    def image(self) -> DocxImage:  # parsed when asked (sizes, file name), not kept
        return DocxImage.from_file(self._disk_path)


def _add_image_part(doc, path: str) -> None:
    """Give ``doc`` an image part for the image at ``path`` that reads its bytes from the file at
    save time. ``add_picture`` then finds it by its SHA-1, as it finds any image already in the
    package, and relates it to the document as usual; an image already there is not added twice.
    The part is named as python-docx names its own (``/word/media/image<n>.<ext>``, lowest free n)."""
    image = DocxImage.from_file(path)
    parts = doc.part.package.image_parts
    if any(p.sha1 == image.sha1 for p in parts):
        return
    used = {p.partname.idx for p in parts}
    n = next(i for i in itertools.count(1) if i not in used)
    parts.append(_DiskImagePart(PackURI(f"/word/media/image{n}.{image.ext}"), image.content_type, path, image.sha1))


def _set_cell_width(cell, width: int) -> None:
    cell.width = Emu(width)


def _row_flag(row, tag: str) -> None:
    trPr = row._tr.get_or_add_trPr()
    el = OxmlElement(tag)
    el.set(qn("w:val"), "true")
    trPr.append(el)


def _field(paragraph, instr: str, placeholder: str) -> None:
    fld = OxmlElement("w:fldSimple")
    fld.set(qn("w:instr"), instr)
    r = OxmlElement("w:r")
    t = OxmlElement("w:t")
    t.text = placeholder
    r.append(t)
    fld.append(r)
    paragraph._p.append(fld)


class DocxWriter(ReportWriterBase):
    key = DOCX.key
    description = DOCX.description
    format = DOCX
    #: the class declares the worst case (docx_single); instances declare their actual mode
    limits = FormatLimits(holds_whole_document=True, per_submission_files=True)

    def __init__(self, out, options: dict):
        super().__init__(out, options)
        self.single = self.options["docx_single"]
        self.limits = FormatLimits(holds_whole_document=self.single, per_submission_files=not self.single)
        self._doc: DocxDocument | None = None
        self._count = 0
        self._volume = 0
        self._newest = Newest()  # of the submissions in the single document being built
        self.documents = 0  # documents written (for benchmarks and logs)

    @staticmethod
    def accepts_image(path: str) -> object:
        """python-docx's own image parser, the one ``add_picture`` uses (it recognises a JPEG only
        when its first segment is JFIF or EXIF)."""
        return DocxImage.from_file(path)

    # ---- document setup ----------------------------------------------------------------
    def _new_document(self) -> DocxDocument:
        doc = Document()
        sec = doc.sections[0]
        width, height = (Mm(210), Mm(297)) if self.ropts.page_size == "A4" else (Mm(215.9), Mm(279.4))
        sec.page_width, sec.page_height = width, height
        margin = Mm(18)
        for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
            setattr(sec, side, margin)
        self._text_width = width - 2 * margin
        self._text_height = height - 2 * margin
        normal = doc.styles["Normal"]
        normal.font.size = Pt(10)
        footer = sec.footer.paragraphs[0]
        footer.add_run(f"{self.labels['page']} ")
        _field(footer, "PAGE", "1")
        footer.add_run(" / ")
        _field(footer, "NUMPAGES", "1")
        return doc

    def _title_page(self, doc, form: Form) -> None:
        doc.add_heading(clean_text(form.name or form.id), 0)
        self._kv_table(doc, self.title_info(form))
        doc.add_heading(self.labels["contents"], 1)
        p = doc.add_paragraph()
        _field(p, 'TOC \\o "1-1" \\h \\z \\u', "(update field: F9)")
        settings = doc.settings.element
        upd = OxmlElement("w:updateFields")
        upd.set(qn("w:val"), "true")
        settings.append(upd)

    # ---- stream hooks ------------------------------------------------------------------
    def _begin_form(self, form: Form) -> None:
        self._doc = None
        self._count = 0
        self._volume = 0
        self._newest.reset()

    def _render(self, report: SubmissionReport) -> None:
        ctx = f"form {report.form_id} submission {report.submission_id}"
        assert self.form is not None
        with translate_errors("Word report", ctx):
            if not self.single:
                doc = self._new_document()
                self._render_report(doc, report, 0)
                when = newest(report.update_time)
                with self.out.atomic(submission_name(self.out, self.form, report.submission_id, "docx")) as fh:
                    self._save(doc, fh, when, report.title)
                del doc
                release_documents()
                self.documents += 1
                return
            if self._doc is not None and self.ropts.max_submissions and self._count >= self.ropts.max_submissions:
                self._save_single()
            if self._doc is None:
                self._doc = self._new_document()
                self._volume += 1
                self._count = 0
                self._title_page(self._doc, self.form)
            self._doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
            self._render_report(self._doc, report, 1)
            self._newest.add(report.update_time)
            self._count += 1

    def _end_form(self) -> None:
        if not self.single or self.form is None:
            return
        with translate_errors("Word report", f"form {self.form.id}"):
            if self._doc is None and self._volume == 0 and not self.out.incremental:
                self._doc = self._new_document()
                self._volume = 1
                self._title_page(self._doc, self.form)
                self._doc.add_paragraph(self.labels["no_submissions"])
            if self._doc is not None:
                self._save_single()

    def _save_single(self) -> None:
        assert self.form is not None and self._doc is not None
        path = self.out.pending_path(single_name(self.out, self.form, "docx", self._volume, self.labels))
        doc, self._doc = self._doc, None
        self._newest.add(self.form.update_time)
        when, title = self._newest.value, clean_text(self.form.name or self.form.id)
        self._newest.reset()
        with open(path, "wb") as fh:
            self._save(doc, fh, when, title)
        del doc
        release_documents()
        self.documents += 1

    def _save(self, doc, fh, when, title: str) -> None:
        """Save ``doc`` into ``fh`` with nothing of the wall clock in it: core properties and
        every ZIP entry dated ``when`` (python-docx writes the package itself, so it is written
        to a spool first and copied, see ``formats.stable``)."""
        props = doc.core_properties
        props.created = props.modified = when
        props.title = title
        props.author = props.last_modified_by = "exporter"
        props.revision = 1
        with tempfile.SpooledTemporaryFile(max_size=8 << 20, dir=str(self._tmp)) as spool:
            out = StopAfterError(spool)
            try:
                doc.save(out)  # a failed save leaves no ZipFile to fail again later
            except BaseException:
                out.close()  # failed between two writes (a stop signal): its ZipFile too
                raise
            spool.seek(0)
            restamp(spool, fh, when)

    def _abandon(self) -> None:
        self._doc = None

    # ---- rendering -----------------------------------------------------------------------
    def _render_report(self, doc, rep: SubmissionReport, level: int) -> None:
        doc.add_heading(rep.title, level)
        doc.add_paragraph(rep.subtitle, style="Subtitle" if level == 0 else None)
        self._kv_table(doc, rep.meta)
        for g in group_blocks(rep.blocks):
            if isinstance(g, list):
                self._kv_table(doc, [(b.caption, b.value) for b in g])
            elif isinstance(g, HeadingBlock):
                doc.add_heading(g.caption, level + 1)
            elif isinstance(g, MediaBlock):
                self._caption(doc, g.caption, level)
                for item in g.items:
                    self._media_item(doc, item)
            elif isinstance(g, TableBlock):
                self._caption(doc, f"{g.caption} ({counted(len(g.rows), 'rows', self.labels)})", level)
                self._subform(doc, g)
                for item in g.items:
                    self._media_item(doc, item)

    def _caption(self, doc, text: str, level: int) -> None:
        h = doc.add_heading(text, min(level + 2, 9))
        h.paragraph_format.keep_with_next = True

    def _kv_table(self, doc, rows: list[tuple[str, str]]) -> None:
        if not rows:
            return
        t = doc.add_table(rows=0, cols=2)
        t.style = "Table Grid"
        w0 = int(self._text_width * 0.32)
        w1 = int(self._text_width) - w0
        for cap, val in rows:
            row = t.add_row()
            c0, c1 = row.cells
            _set_cell_width(c0, w0)
            _set_cell_width(c1, w1)
            c0.paragraphs[0].add_run(cap).bold = True
            c1.paragraphs[0].add_run(val)
            if len(val) + len(cap) <= CANT_SPLIT_MAX_CHARS:
                _row_flag(row, "w:cantSplit")
        doc.add_paragraph()

    def _subform(self, doc, block: TableBlock) -> None:
        if not block.rows:
            doc.add_paragraph(self.labels["no_rows"])
            return
        if len(block.headers) <= WIDE_TABLE_COLUMNS:
            n = max(len(block.headers), 1)
            t = doc.add_table(rows=1, cols=n)
            t.style = "Table Grid"
            width = int(self._text_width) // n
            head = t.rows[0]
            _row_flag(head, "w:tblHeader")
            _row_flag(head, "w:cantSplit")
            for cell, cap in zip(head.cells, block.headers, strict=False):
                _set_cell_width(cell, width)
                cell.paragraphs[0].add_run(cap).bold = True
            for values in block.rows:
                row = t.add_row()
                for cell, val in zip(row.cells, values, strict=False):
                    _set_cell_width(cell, width)
                    cell.paragraphs[0].add_run(val)
                if sum(len(v) for v in values) <= CANT_SPLIT_MAX_CHARS:
                    _row_flag(row, "w:cantSplit")
            doc.add_paragraph()
            return
        for i, values in enumerate(block.rows, 1):  # wide sub-form: one caption/value table per row
            p = doc.add_paragraph()
            p.add_run(f"{self.labels['row']} {i}").bold = True
            p.paragraph_format.keep_with_next = True
            self._kv_table(doc, list(zip(block.headers, values, strict=False)))

    def _media_item(self, doc, item: MediaItem) -> None:
        p = doc.add_paragraph()
        p.add_run(f"{item.caption}: ").bold = True
        p.add_run(item.name)
        if isinstance(item, FileItem):
            p.add_run(item.details(self.labels))
            return
        assert isinstance(item, ImageItem)
        p.paragraph_format.keep_with_next = True
        w, h = self._image_size(item)
        _add_image_part(doc, item.path)
        doc.add_paragraph().add_run().add_picture(item.path, width=Emu(w), height=Emu(h))

    def _image_size(self, item: ImageItem) -> tuple[int, int]:
        """Natural size at 96 dpi, scaled down to the text width and 70% of the text height."""
        w = item.width_px * EMU_PER_INCH / 96
        h = item.height_px * EMU_PER_INCH / 96
        scale = min(1.0, int(self._text_width) / w, int(self._text_height) * 0.7 / h)
        return max(int(w * scale), 1), max(int(h * scale), 1)


__all__ = ["DocxWriter"]
