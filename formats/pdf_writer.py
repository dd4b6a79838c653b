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

Text is set in DejaVu Sans (shipped in ``formats/fonts``), which covers Latin with accents, Greek,
Cyrillic, Hebrew and Arabic letters; it has no CJK glyphs and few emoji (those show as empty
boxes; the text around them is intact). reportlab does not reorder right-to-left text unless the
optional ``rlbidi`` package is installed: without it Hebrew/Arabic are drawn in logical order.
Every value is escaped before it reaches Paragraph markup, so ``<b>`` or ``&amp;`` print literally.
Tables never split a row across pages; a cell too tall for that (very long text) is moved below
its table as a numbered note, and a long plain field is set as flowing paragraphs instead.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfbase import pdfmetrics, ttfonts
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    Image,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.doctemplate import LayoutError

from exporter.model import Form

from .base import FormatLimits
from .catalog import PDF
from .labels import counted
from .report import (
    WIDE_TABLE_COLUMNS,
    FileItem,
    HeadingBlock,
    ImageItem,
    MediaBlock,
    MediaItem,
    ReportWriterBase,
    SubmissionReport,
    TableBlock,
    clean_text,
    fonts_dir,
    group_blocks,
    release_documents,
    single_name,
    submission_name,
    translate_errors,
)
from .stable import Newest, newest, pdf_date

FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
#: sub-form rows per reportlab Table (long tables are chunked so layout stays linear)
TABLE_CHUNK_ROWS = 200
_registered = False
_RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff]")

try:  # optional: right-to-left reordering (python-bidi) and Arabic letter joining (arabic-reshaper)
    from bidi import get_display as _get_display
except ImportError:  # pragma: no cover - depends on the installation
    _get_display = None
try:
    from arabic_reshaper import reshape as _reshape
except ImportError:  # pragma: no cover - depends on the installation
    _reshape = None

RTL_SUPPORT = _get_display is not None


def _to_unicode_cmap(fontname, subset):
    """reportlab's ToUnicode CMap writes code points above U+FFFF as 5 hex digits, which is not a
    valid CMap (text extraction breaks on emoji); write them as UTF-16BE surrogate pairs."""
    text = _orig_to_unicode_cmap(fontname, subset)
    if all(v <= 0xFFFF for v in subset):
        return text
    for i, v in enumerate(subset):
        if v > 0xFFFF:
            text = text.replace(f"<{i:02X}> <{v:04X}>", f"<{i:02X}> <{chr(v).encode('utf-16-be').hex().upper()}>")
    return text


_orig_to_unicode_cmap = ttfonts.makeToUnicodeCMap


def _base_direction(text: str) -> str:
    """Unicode rule P2: the direction of the first strong character ("L" when there is none)."""
    for c in text:
        d = unicodedata.bidirectional(c)
        if d == "L":
            return "L"
        if d in ("R", "AL"):
            return "R"
    return "L"


def visual_line(text: str) -> str:
    """One line of logical text in the order it must be drawn (RTL runs reversed, Arabic joined)."""
    if not _RTL.search(text):
        return text
    if _reshape is not None and _ARABIC.search(text):
        text = _reshape(text)
    return _get_display(text) if _get_display is not None else text


def register_fonts() -> None:
    global _registered
    if _registered:
        return
    if ttfonts.makeToUnicodeCMap is _orig_to_unicode_cmap:
        ttfonts.makeToUnicodeCMap = _to_unicode_cmap
    # image streams in binary, not ASCII85 (reportlab's pure-Python encoder dominates the run
    # time and grows every image by a quarter when its C accelerator is not built)
    rl_config.useA85 = 0
    d = fonts_dir()
    pdfmetrics.registerFont(TTFont(FONT, str(d / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(d / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)
    _registered = True


def markup(text: str) -> str:
    """Plain text -> Paragraph markup that prints it literally (line breaks kept)."""
    s = escape(clean_text(text)).replace("\t", " ")
    return s.replace("\n", "<br/>")


# --------------------------------------------------------------------------------------------
# Flowables and canvases
# --------------------------------------------------------------------------------------------


class _ContentNamed(str):
    """An image path that prints as a digest of the image's bytes. reportlab names an image
    drawn from a file after the text of its path, and the path is a temporary one, different in
    every run: the name (in the page resources) made two exports of the same data differ. The
    file is opened by its real path; only the name comes from the content."""

    key: str

    @classmethod
    def of(cls, path: str) -> _ContentNamed:
        p = cls(path)
        with open(path, "rb") as fh:
            p.key = hashlib.file_digest(fh, "sha1").hexdigest() + os.path.splitext(path)[1]
        return p

    def __str__(self) -> str:
        return self.key


class _Box(Flowable):
    """An empty box the size of an image (the counting pass never opens image files)."""

    def __init__(self, width: float, height: float):
        super().__init__()
        self.width, self.height = width, height

    def wrap(self, aw, ah):
        return self.width, self.height

    def draw(self):
        pass


class _Heading(Paragraph):
    """A submission title in single mode: recorded (page, bookmark, outline) after it is drawn."""

    def __init__(self, text, style, key: str, outline: str):
        super().__init__(text, style)
        self.toc_key = key
        self.outline = outline


class _TocEntry(Flowable):
    """One table-of-contents line: text (cut to one line), dot leader, page number, link."""

    def __init__(self, text: str, page: int, key: str, size: float = 9):
        super().__init__()
        self.text, self.page, self.key, self.size = text, page, key, size

    def wrap(self, aw, ah):
        self.width = aw
        return aw, self.size * 1.45

    def draw(self):
        c, fs = self.canv, self.size
        num = str(self.page)
        nw = pdfmetrics.stringWidth(num, FONT, fs)
        room = self.width - nw - 4 * fs
        text = self.text
        if pdfmetrics.stringWidth(text, FONT, fs) > room:
            while text and pdfmetrics.stringWidth(text + "…", FONT, fs) > room:
                text = text[: max(len(text) - max(len(text) // 8, 1), 0)]
            text += "…"
        c.setFont(FONT, fs)
        c.drawString(0, 2, text)
        tw = pdfmetrics.stringWidth(text, FONT, fs)
        dot = pdfmetrics.stringWidth(" .", FONT, fs)
        n = int((self.width - nw - tw - fs) / dot)
        if n > 0:
            c.drawRightString(self.width - nw - fs / 2, 2, " ." * n)
        c.drawRightString(self.width, 2, num)
        c.linkRect("", self.key, (0, 0, self.width, self.size * 1.45), relative=1)


class _CountingCanvas(Canvas):
    """Lays pages out and throws them away: the counting pass keeps nothing."""

    def showPage(self):
        self._startPage()

    def save(self):
        pass


def _numbered_canvas(footer):
    class _NumberedCanvas(Canvas):
        """Holds page states until save to print "page N / M" (per-submission documents only)."""

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self._states = []

        def showPage(self):
            self._states.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._states)
            for st in self._states:
                self.__dict__.update(st)
                footer(self, self._pageNumber, total)
                Canvas.showPage(self)
            Canvas.save(self)

    return _NumberedCanvas


class _LazyStory:
    """The list operations reportlab's build loop uses, over a generator of flowables: only a
    small window of the story exists at any time."""

    LOOKAHEAD = 32

    def __init__(self, flowables: Iterable[Flowable]):
        self._it = iter(flowables)
        self._head: list = []
        self._done = False

    def _fill(self, n: int) -> None:
        while not self._done and len(self._head) < n:
            try:
                self._head.append(next(self._it))
            except StopIteration:
                self._done = True

    def __len__(self):
        self._fill(self.LOOKAHEAD)
        return len(self._head)

    def __getitem__(self, i):
        if isinstance(i, slice):
            if i.stop is None or i.stop < 0:
                self._fill(1 << 62)
            else:
                self._fill(i.stop)
            return self._head[i]
        self._fill(i + 1 if i >= 0 else 1 << 62)
        return self._head[i]

    def __setitem__(self, i, v):
        if isinstance(i, slice):
            self._fill(i.stop or 0)
        self._head[i] = v

    def __delitem__(self, i):
        if isinstance(i, slice):
            self._fill(i.stop or 0)
        else:
            self._fill(i + 1)
        del self._head[i]

    def insert(self, i, v):
        self._head.insert(i, v)


class _DocTemplate(SimpleDocTemplate):
    """reportlab's invariant mode (no wall clock, an ID derived from the content) and the
    CreationDate/ModDate of ``when``, a time taken from the data (``formats.stable``)."""

    def __init__(self, *a, when, **k):
        super().__init__(*a, invariant=1, **k)
        self.heading_pages: list[int] = []
        self._date = pdf_date(when)

    def beforeDocument(self):
        self.canv.setDateFormatter(self._date)

    def afterFlowable(self, flowable):
        if isinstance(flowable, _Heading):
            self.heading_pages.append(self.page)
            self.canv.bookmarkPage(flowable.toc_key)
            self.canv.addOutlineEntry(flowable.outline, flowable.toc_key, level=0, closed=None)


# --------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------


class PdfWriter(ReportWriterBase):
    key = PDF.key
    description = PDF.description
    format = PDF
    limits = FormatLimits(holds_whole_document=True, per_submission_files=True)

    def __init__(self, out, options: dict):
        super().__init__(out, options)
        self.single = self.options["pdf_single"]
        self.limits = FormatLimits(holds_whole_document=self.single, per_submission_files=not self.single)
        register_fonts()
        self.pagesize = A4 if self.ropts.page_size == "A4" else LETTER
        self.margins = {"leftMargin": 18 * mm, "rightMargin": 18 * mm, "topMargin": 16 * mm,
                        "bottomMargin": 20 * mm}
        pw, ph = self.pagesize
        self.frame_w = pw - self.margins["leftMargin"] - self.margins["rightMargin"] - 12
        self.frame_h = ph - self.margins["topMargin"] - self.margins["bottomMargin"] - 12
        self._styles()
        self._counting = False
        self._spool = None
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

    def _styles(self) -> None:
        S = ParagraphStyle
        self.st_body = S("body", fontName=FONT, fontSize=9, leading=11.5, splitLongWords=1)
        self.st_cell = S("cell", parent=self.st_body, fontSize=8.5, leading=10.5)
        self.st_cap = S("cap", parent=self.st_cell, fontName=FONT_BOLD, textColor=colors.HexColor("#333333"))
        self.st_title = S("title", parent=self.st_body, fontName=FONT_BOLD, fontSize=15, leading=19,
                          spaceAfter=3)
        self.st_sub = S("sub", parent=self.st_body, textColor=colors.HexColor("#555555"), spaceAfter=6)
        self.st_h2 = S("h2", parent=self.st_body, fontName=FONT_BOLD, fontSize=12, leading=15,
                       spaceBefore=8, spaceAfter=3, keepWithNext=1)
        self.st_h3 = S("h3", parent=self.st_body, fontName=FONT_BOLD, fontSize=10, leading=13,
                       spaceBefore=6, spaceAfter=2, keepWithNext=1)
        self.st_keep = S("keep", parent=self.st_body, keepWithNext=1, spaceBefore=3)
        self.st_note = S("note", parent=self.st_cell, leftIndent=8, spaceAfter=2)
        self.st_note_key = S("notekey", parent=self.st_cap, keepWithNext=1, spaceBefore=3)
        self.st_file = S("file", parent=self.st_body, spaceBefore=2)
        self.table_style = TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#999999")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ])
        self.kv_style = TableStyle(list(self.table_style.getCommands()) + [
            ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f0f0f0"))])
        self.head_style = TableStyle(list(self.table_style.getCommands()) + [
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e4e4e4"))])

    # ---- stream hooks ------------------------------------------------------------------
    def _begin_form(self, form: Form) -> None:
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
                    doc = self._doc(fh, report.title, newest(report.update_time))
                    doc.build(list(self._report_flowables(report)),
                              canvasmaker=_numbered_canvas(self._footer(None)))
                self.pages += doc.page
                del doc
                release_documents()
                self.documents += 1
                return
            if self._spool is not None and self.ropts.max_submissions and self._count >= self.ropts.max_submissions:
                self._build_single()
            if self._spool is None:
                self._volume += 1
                self._count = 0
                self._open_spool()
            pickle.dump(report, self._spool, protocol=pickle.HIGHEST_PROTOCOL)
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

    def _open_spool(self) -> None:
        self._spool_path = self.workdir() / f"reports-{self._volume}.pickle"
        self._spool = open(self._spool_path, "wb")  # noqa: SIM115 - spans many records, closed in _build_single

    def _abandon(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def _errors(self, ctx: str):
        return translate_errors("PDF report", ctx, (LayoutError,))

    # ---- documents -----------------------------------------------------------------------
    def _doc(self, target, title: str, when) -> _DocTemplate:
        return _DocTemplate(target, pagesize=self.pagesize, title=title, author="exporter",
                            creator="exporter (reportlab)", when=when, **self.margins)

    def _footer(self, left: str | None):
        def draw(canv, page: int, total: int) -> None:
            canv.saveState()
            canv.setFont(FONT, 8)
            canv.setFillColor(colors.HexColor("#555555"))
            y = self.margins["bottomMargin"] / 2
            canv.drawRightString(self.pagesize[0] - self.margins["rightMargin"], y,
                                 f"{self.labels['page']} {page} / {total}")
            if left:
                canv.drawString(self.margins["leftMargin"], y, left)
            canv.restoreState()
        return draw

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
        form = self.form
        name = clean_text(form.name or form.id)
        left = visual_line(name if len(name) <= 80 else name[:79] + "…")
        rel = single_name(self.out, form, "pdf", self._volume, self.labels)
        path = self.out.pending_path(rel)
        pages: list[int] = []
        total = 0
        self._newest.add(form.update_time)
        when = self._newest.value
        self._newest.reset()
        self._counting = True
        try:
            doc = self._doc(io.BytesIO(), name, when)
            doc.build(_LazyStory(self._single_story(form, pages)), canvasmaker=_CountingCanvas)
            pages, total = doc.heading_pages, doc.page
        finally:
            self._counting = False
        for _attempt in range(3):
            footer = self._footer(left)
            doc = self._doc(str(path), name, when)

            def on_page(canv, d, footer=footer, total=total):
                footer(canv, d.page, total)

            doc.build(_LazyStory(self._single_story(form, pages)), onFirstPage=on_page, onLaterPages=on_page)
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
        yield self._p(form.name or form.id, self.st_title)
        yield from self._kv(self.title_info(form))
        n = 0
        for rep in self._spooled():
            if n == 0:
                yield self._p(self.labels["contents"], self.st_h2)
            yield _TocEntry(visual_line(rep.toc_text.replace("\n", " ")), pages[n] if n < len(pages) else 0, f"s{n}")
            n += 1
        if n == 0:
            yield self._p(self.labels["no_submissions"], self.st_body)
        for i, rep in enumerate(self._spooled()):
            yield PageBreak()
            yield from self._report_flowables(rep, key=f"s{i}")

    # ---- a report as flowables -------------------------------------------------------------
    def _p(self, text: str, style: ParagraphStyle, width: float | None = None) -> Paragraph:
        """A paragraph printing ``text`` literally. Text with right-to-left letters is broken into
        lines here (at ``width``) and each line reordered for display, right-aligned when the
        text starts right-to-left."""
        text = clean_text(text)
        if not _RTL.search(text):
            return Paragraph(markup(text), style)
        width = (width or self.frame_w) - style.leftIndent - style.rightIndent
        lines = []
        rtl_first = False
        for n, logical in enumerate(text.split("\n")):
            base = _base_direction(logical)
            if n == 0:
                rtl_first = base == "R"
            shaped = _reshape(logical) if _reshape is not None and _ARABIC.search(logical) else logical
            parts = simpleSplit(shaped, style.fontName, style.fontSize, width) or [""]
            # every wrapped line keeps the direction of its paragraph (not of its first word)
            lines.extend(_get_display(p, base_dir=base) if _get_display is not None else p for p in parts)
        if _get_display is not None and rtl_first:
            style = ParagraphStyle(style.name + "-rtl", parent=style, alignment=TA_RIGHT)
        return Paragraph("<br/>".join(markup(x) for x in lines), style)

    def _report_flowables(self, rep: SubmissionReport, key: str | None = None) -> Iterator[Flowable]:
        if key is None:
            yield self._p(rep.title, self.st_title)
        else:
            h = self._p(rep.title, self.st_title)
            yield _Heading(h.text, h.style, key, rep.toc_text)
        yield self._p(rep.subtitle, self.st_sub)
        yield from self._kv(rep.meta)
        for g in group_blocks(rep.blocks):
            if isinstance(g, list):
                yield from self._kv([(b.caption, b.value) for b in g])
            elif isinstance(g, HeadingBlock):
                yield self._p(g.caption, self.st_h2)
            elif isinstance(g, MediaBlock):
                yield self._p(g.caption, self.st_h3)
                for item in g.items:
                    yield from self._media(item)
            elif isinstance(g, TableBlock):
                yield self._p(f"{g.caption} ({counted(len(g.rows), 'rows', self.labels)})", self.st_h3)
                yield from self._subform(g)
                for item in g.items:
                    yield from self._media(item)

    def _too_tall(self, p: Paragraph, text: str, width: float, limit: float) -> bool:
        style = p.style
        if len(text) * style.fontSize * 2 / max(width, 1) + text.count("\n") + 1 <= limit / style.leading:
            return False  # cheap upper bound says it fits: skip measuring
        return p.wrap(width - 6, self.frame_h)[1] > limit

    def _kv(self, rows: list[tuple[str, str]]) -> Iterator[Flowable]:
        w0 = self.frame_w * 0.32
        w1 = self.frame_w - w0
        limit = self.frame_h / 3
        data: list[list] = []
        for cap, val in rows:
            pc, pv = self._p(cap, self.st_cap, w0 - 6), self._p(val, self.st_cell, w1 - 6)
            if self._too_tall(pc, cap, w0, limit) or self._too_tall(pv, val, w1, limit):
                if data:
                    yield self._table(data, [w0, w1], self.kv_style, 0)
                    data = []
                yield self._p(cap, self.st_h3)  # long: flowing paragraphs, split freely
                yield self._p(val, self.st_body)
            else:
                data.append([pc, pv])
        if data:
            yield self._table(data, [w0, w1], self.kv_style, 0)
        yield Spacer(1, 4)

    def _table(self, data, widths, style, repeat: int) -> Table:
        t = Table(data, colWidths=widths, repeatRows=repeat, splitInRow=0, style=style, hAlign="LEFT")
        return t

    def _subform(self, block: TableBlock) -> Iterator[Flowable]:
        if not block.rows:
            yield self._p(self.labels["no_rows"], self.st_body)
            return
        notes: list[tuple[str, str]] = []

        def cell(text: str, label: str, width: float, style, limit: float) -> Paragraph:
            p = self._p(text, style, width - 6)
            if self._too_tall(p, text, width, limit):
                notes.append((label, text))
                return Paragraph(f"→ {markup(self.labels['see_note'])} [{len(notes)}]", style)
            return p

        row_l = self.labels["row"]
        if len(block.headers) <= WIDE_TABLE_COLUMNS:
            n = max(len(block.headers), 1)
            w = self.frame_w / n
            header = [cell(h, h, w, self.st_cap, self.frame_h / 6) for h in block.headers]
            for start in range(0, len(block.rows), TABLE_CHUNK_ROWS):
                data = [header]
                for r, values in enumerate(block.rows[start:start + TABLE_CHUNK_ROWS], start + 1):
                    data.append([cell(v, f"{row_l} {r} · {h}", w, self.st_cell, self.frame_h / 4)
                                 for h, v in zip(block.headers, values, strict=False)])
                yield self._table(data, [w] * n, self.head_style, 1)
        else:
            w0 = self.frame_w * 0.32
            w1 = self.frame_w - w0
            style = TableStyle(list(self.kv_style.getCommands()) + [
                ("SPAN", (0, 0), (1, 0)), ("BACKGROUND", (0, 0), (1, 0), colors.HexColor("#e4e4e4"))])
            for r, values in enumerate(block.rows, 1):
                data = [[self._p(f"{row_l} {r}", self.st_cap), ""]]
                for h, v in zip(block.headers, values, strict=False):
                    label = f"{row_l} {r} · {h}"
                    data.append([cell(h, label, w0, self.st_cap, self.frame_h / 4),
                                 cell(v, label, w1, self.st_cell, self.frame_h / 4)])
                yield self._table(data, [w0, w1], style, 1)
                yield Spacer(1, 3)
        for i, (label, text) in enumerate(notes, 1):
            yield self._p(f"[{i}] {label}", self.st_note_key)
            yield self._p(text, self.st_note)
        yield Spacer(1, 4)

    def _media(self, item: MediaItem) -> Iterator[Flowable]:
        head = f"{item.caption}: {item.name}"
        if isinstance(item, FileItem):
            yield self._p(head + item.details(self.labels), self.st_file)
            return
        assert isinstance(item, ImageItem)
        yield self._p(head, self.st_keep)
        w, h = item.width_px * 0.75, item.height_px * 0.75  # 96 dpi
        scale = min(1.0, self.frame_w / w, self.frame_h * 0.7 / h)
        w, h = max(w * scale, 1), max(h * scale, 1)
        if self._counting:
            yield _Box(w, h)
        else:
            img = Image(_ContentNamed.of(item.path), width=w, height=h, lazy=2)
            img.hAlign = "LEFT"
            yield img
        yield Spacer(1, 4)


__all__ = ["PdfWriter", "markup", "register_fonts"]
