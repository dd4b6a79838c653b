"""Text in PDF reports: the fonts (DejaVu Sans, shipped in ``formats/fonts``), right-to-left
lines in display order, and Paragraph markup that prints a value literally.

DejaVu Sans covers Latin with accents, Greek, Cyrillic, Hebrew and Arabic letters; it has no CJK
glyphs and few emoji (those show as empty boxes; the text around them is intact). reportlab does
not reorder right-to-left text: with the optional ``python-bidi`` (and ``arabic-reshaper`` for
Arabic letter joining) each line is reordered here; without them Hebrew/Arabic are drawn in
logical order.
"""
from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

from .report_model import clean_text

#: the names our fonts are registered under with reportlab (its registry is shared by the process)
FONT = "exporter-DejaVuSans"
FONT_BOLD = "exporter-DejaVuSans-Bold"
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


def fonts_dir() -> Path:
    return Path(os.path.dirname(__file__)) / "fonts"


_CMAP_ABOVE_BMP = re.compile(r"^<([0-9A-F]{2})> <([0-9A-F]{5,6})>$", re.M)


def _surrogates(m: re.Match) -> str:
    return f"<{m[1]}> <{chr(int(m[2], 16)).encode('utf-16-be').hex().upper()}>"


class _Font(TTFont):
    """A TrueType font whose ToUnicode CMaps are valid above U+FFFF. reportlab writes those code
    points as 5 hex digits, which is not a valid CMap (text extraction breaks on emoji); each such
    entry of the CMaps this font adds to a document is rewritten as a UTF-16BE surrogate pair.
    Only documents using our fonts are concerned: reportlab itself is left as it is."""

    def addObjects(self, doc):
        before = set(doc.idToObject)
        super().addObjects(doc)
        for name in doc.idToObject.keys() - before:
            if name.startswith("toUnicodeCMap:"):
                stream = doc.idToObject[name]
                stream.content = _CMAP_ABOVE_BMP.sub(_surrogates, stream.content)


def register_fonts() -> None:
    """Register our fonts with reportlab (its documented way to use a TrueType font), under names
    of our own so that no font an application registered is replaced. Image and page streams keep
    reportlab's settings (ASCII85 + Flate): the ``rl_accel`` C accelerator makes the encoding cheap."""
    global _registered
    if _registered:
        return
    d = fonts_dir()
    pdfmetrics.registerFont(_Font(FONT, str(d / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(_Font(FONT_BOLD, str(d / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)
    _registered = True


def has_rtl(text: str) -> bool:
    """Whether ``text`` holds right-to-left letters (Hebrew, Arabic...)."""
    return _RTL.search(text) is not None


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


def display_lines(text: str, font_name: str, font_size: float, width: float) -> tuple[list[str], bool]:
    """Text with right-to-left letters broken into lines of ``width`` points and each line
    reordered for display, and whether it should be right-aligned (its first paragraph starts
    right-to-left and the lines could be reordered)."""
    lines: list[str] = []
    rtl_first = False
    for n, logical in enumerate(text.split("\n")):
        base = _base_direction(logical)
        if n == 0:
            rtl_first = base == "R"
        shaped = _reshape(logical) if _reshape is not None and _ARABIC.search(logical) else logical
        parts = simpleSplit(shaped, font_name, font_size, width) or [""]
        # every wrapped line keeps the direction of its paragraph (not of its first word)
        lines.extend(_get_display(p, base_dir=base) if _get_display is not None else p for p in parts)
    return lines, _get_display is not None and rtl_first


def markup(text: str) -> str:
    """Plain text -> Paragraph markup that prints it literally (line breaks kept)."""
    s = escape(clean_text(text)).replace("\t", " ")
    return s.replace("\n", "<br/>")
