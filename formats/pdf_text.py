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

from reportlab import rl_config
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics, ttfonts
from reportlab.pdfbase.ttfonts import TTFont

from .report_model import clean_text

FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
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
    lines = []
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
