"""The reportlab pieces the PDF writer lays reports out with: flowables (an image box for the
counting pass, a submission heading that records its page, a table-of-contents line), canvases
(one that throws pages away, one that prints "page N / M"), a lazily generated story and the
document template (reproducible: no wall clock in the file)."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable
from typing import Any

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate

from .pdf_text import FONT
from .stable import pdf_date


class ContentNamed(str):
    """An image path that prints as a digest of the image's bytes. reportlab names an image
    drawn from a file after the text of its path, and the path is a temporary one, different in
    every run: the name (in the page resources) made two exports of the same data differ. The
    file is opened by its real path; only the name comes from the content."""

    key: str

    @classmethod
    def of(cls, path: str) -> ContentNamed:
        p = cls(path)
        with open(path, "rb") as fh:
            p.key = hashlib.file_digest(fh, "sha1").hexdigest() + os.path.splitext(path)[1]
        return p

    def __str__(self) -> str:
        return self.key


class Box(Flowable):
    """An empty box the size of an image (the counting pass never opens image files)."""

    def __init__(self, width: float, height: float):
        super().__init__()
        self.width, self.height = width, height

    def wrap(self, aw, ah):
        return self.width, self.height

    def draw(self):
        pass


class Heading(Paragraph):
    """A submission title in single mode: recorded (page, bookmark, outline) after it is drawn."""

    def __init__(self, text, style, key: str, outline: str):
        super().__init__(text, style)
        self.toc_key = key
        self.outline = outline


class TocEntry(Flowable):
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


class CountingCanvas(Canvas):
    """Lays pages out and throws them away: the counting pass keeps nothing."""

    def showPage(self):
        # Canvas's own reset for the next page (ReportLab's "page N of M" recipe calls it; the stubs lack it)
        self._startPage()  # type: ignore[attr-defined]

    def save(self):
        pass


def numbered_canvas(footer):
    class _NumberedCanvas(Canvas):
        """Holds page states until save to print "page N / M" (per-submission documents only)."""

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self._states = []

        def showPage(self):
            self._states.append(dict(self.__dict__))
            self._startPage()  # type: ignore[attr-defined]  # (as in CountingCanvas)

        def save(self):
            total = len(self._states)
            for st in self._states:
                self.__dict__.update(st)
                footer(self, self.getPageNumber(), total)
                Canvas.showPage(self)
            Canvas.save(self)

    return _NumberedCanvas


class LazyStory:
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


class DocTemplate(SimpleDocTemplate):
    """reportlab's invariant mode (no wall clock, an ID derived from the content) and the
    CreationDate/ModDate of ``when``, a time taken from the data (``formats.stable``)."""

    def __init__(self, *a: Any, when: dt.datetime, **k: Any) -> None:
        super().__init__(*a, invariant=1, **k)
        self.heading_pages: list[int] = []
        self._date = pdf_date(when)

    def beforeDocument(self):
        self.canv.setDateFormatter(self._date)

    def afterFlowable(self, flowable):
        if isinstance(flowable, Heading):
            self.heading_pages.append(self.page)
            self.canv.bookmarkPage(flowable.toc_key)
            self.canv.addOutlineEntry(flowable.outline, flowable.toc_key, level=0, closed=None)
