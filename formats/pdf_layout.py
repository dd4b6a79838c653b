"""How a report (``report_model``) becomes reportlab flowables: page geometry, styles, the
caption/value tables, sub-form tables, images and listed files.

Every value is escaped before it reaches Paragraph markup, so ``<b>`` or ``&amp;`` print literally.
Tables never split a row across pages; a cell too tall for that (very long text) is moved below
its table as a numbered note, and a long plain field is set as flowing paragraphs instead. Long
sub-forms are cut into tables of ``TABLE_CHUNK_ROWS`` rows so layout stays linear.
"""
from __future__ import annotations

from collections.abc import Iterator

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Image, Paragraph, Spacer, Table, TableStyle

from .labels import counted
from .pdf_flowables import Box, ContentNamed, DocTemplate, Heading
from .pdf_text import FONT, FONT_BOLD, display_lines, has_rtl, markup, register_fonts
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

#: sub-form rows per reportlab Table (long tables are chunked so layout stays linear)
TABLE_CHUNK_ROWS = 200


class PdfLayout:
    """Page geometry and styles for one page size, and the flowables of a report. ``labels`` are
    the words of the form being written (set by the writer with each form); with ``counting``
    images are empty boxes of the same size (the counting pass never opens image files)."""

    def __init__(self, page_size: str, labels: dict[str, str]):
        register_fonts()
        self.labels = labels
        self.counting = False
        self.pagesize = A4 if page_size == "A4" else LETTER
        self.margins = {"leftMargin": 18 * mm, "rightMargin": 18 * mm, "topMargin": 16 * mm,
                        "bottomMargin": 20 * mm}
        pw, ph = self.pagesize
        self.frame_w = pw - self.margins["leftMargin"] - self.margins["rightMargin"] - 12
        self.frame_h = ph - self.margins["topMargin"] - self.margins["bottomMargin"] - 12
        self._styles()

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

    # ---- documents -----------------------------------------------------------------------
    def doc(self, target, title: str, when) -> DocTemplate:
        return DocTemplate(target, pagesize=self.pagesize, title=title, author="exporter",
                           creator="exporter (reportlab)", when=when, **self.margins)

    def footer(self, left: str | None):
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

    # ---- a report as flowables -------------------------------------------------------------
    def p(self, text: str, style: ParagraphStyle, width: float | None = None) -> Paragraph:
        """A paragraph printing ``text`` literally. Text with right-to-left letters is broken into
        lines here (at ``width``) and each line reordered for display, right-aligned when the
        text starts right-to-left."""
        text = clean_text(text)
        if not has_rtl(text):
            return Paragraph(markup(text), style)
        width = (width or self.frame_w) - style.leftIndent - style.rightIndent
        lines, right = display_lines(text, style.fontName, style.fontSize, width)
        if right:
            style = ParagraphStyle(style.name + "-rtl", parent=style, alignment=TA_RIGHT)
        return Paragraph("<br/>".join(markup(x) for x in lines), style)

    def report_flowables(self, rep: SubmissionReport, key: str | None = None) -> Iterator[Flowable]:
        """The flowables of one report; with ``key`` its title is a ``Heading`` (single mode:
        bookmarked, in the outline, its page recorded for the table of contents)."""
        if key is None:
            yield self.p(rep.title, self.st_title)
        else:
            h = self.p(rep.title, self.st_title)
            yield Heading(h.text, h.style, key, rep.toc_text)
        yield self.p(rep.subtitle, self.st_sub)
        yield from self.kv(rep.meta)
        for g in group_blocks(rep.blocks):
            if isinstance(g, list):
                yield from self.kv([(b.caption, b.value) for b in g])
            elif isinstance(g, HeadingBlock):
                yield self.p(g.caption, self.st_h2)
            elif isinstance(g, MediaBlock):
                yield self.p(g.caption, self.st_h3)
                for item in g.items:
                    yield from self._media(item)
            elif isinstance(g, TableBlock):
                yield self.p(f"{g.caption} ({counted(len(g.rows), 'rows', self.labels)})", self.st_h3)
                yield from self._subform(g)
                for item in g.items:
                    yield from self._media(item)

    def _too_tall(self, p: Paragraph, text: str, width: float, limit: float) -> bool:
        style = p.style
        if len(text) * style.fontSize * 2 / max(width, 1) + text.count("\n") + 1 <= limit / style.leading:
            return False  # cheap upper bound says it fits: skip measuring
        return p.wrap(width - 6, self.frame_h)[1] > limit

    def kv(self, rows: list[tuple[str, str]]) -> Iterator[Flowable]:
        """Caption/value rows as a two-column table (a pair too tall for one page: flowing
        paragraphs)."""
        w0 = self.frame_w * 0.32
        w1 = self.frame_w - w0
        limit = self.frame_h / 3
        data: list[list] = []
        for cap, val in rows:
            pc, pv = self.p(cap, self.st_cap, w0 - 6), self.p(val, self.st_cell, w1 - 6)
            if self._too_tall(pc, cap, w0, limit) or self._too_tall(pv, val, w1, limit):
                if data:
                    yield self._table(data, [w0, w1], self.kv_style, 0)
                    data = []
                yield self.p(cap, self.st_h3)  # long: flowing paragraphs, split freely
                yield self.p(val, self.st_body)
            else:
                data.append([pc, pv])
        if data:
            yield self._table(data, [w0, w1], self.kv_style, 0)
        yield Spacer(1, 4)

    def _table(self, data, widths, style, repeat: int) -> Table:
        return Table(data, colWidths=widths, repeatRows=repeat, splitInRow=0, style=style, hAlign="LEFT")

    def _subform(self, block: TableBlock) -> Iterator[Flowable]:
        if not block.rows:
            yield self.p(self.labels["no_rows"], self.st_body)
            return
        notes: list[tuple[str, str]] = []

        def cell(text: str, label: str, width: float, style, limit: float) -> Paragraph:
            p = self.p(text, style, width - 6)
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
                pairs: list[list[Flowable | str]] = [[self.p(f"{row_l} {r}", self.st_cap), ""]]
                for h, v in zip(block.headers, values, strict=False):
                    label = f"{row_l} {r} · {h}"
                    pairs.append([cell(h, label, w0, self.st_cap, self.frame_h / 4),
                                  cell(v, label, w1, self.st_cell, self.frame_h / 4)])
                yield self._table(pairs, [w0, w1], style, 1)
                yield Spacer(1, 3)
        for i, (label, text) in enumerate(notes, 1):
            yield self.p(f"[{i}] {label}", self.st_note_key)
            yield self.p(text, self.st_note)
        yield Spacer(1, 4)

    def _media(self, item: MediaItem) -> Iterator[Flowable]:
        head = f"{item.caption}: {item.name}"
        if isinstance(item, FileItem):
            yield self.p(head + item.details(self.labels), self.st_file)
            return
        assert isinstance(item, ImageItem)
        yield self.p(head, self.st_keep)
        w, h = item.width_px * 0.75, item.height_px * 0.75  # 96 dpi
        scale = min(1.0, self.frame_w / w, self.frame_h * 0.7 / h)
        w, h = max(w * scale, 1), max(h * scale, 1)
        if self.counting:
            yield Box(w, h)
        else:
            img = Image(ContentNamed.of(item.path), width=w, height=h, lazy=2)
            img.hAlign = "LEFT"
            yield img
        yield Spacer(1, 4)
