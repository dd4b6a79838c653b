"""PDF reports, read back with pypdf (text, images, outline) and rendered with poppler's pdftoppm."""
from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
import weakref
from pathlib import Path

import pypdf
import pytest
from exporter.formats.base import OutputDir, get_writer_class
from exporter.formats.pdf_flowables import LazyStory
from exporter.formats.pdf_text import FONT, RTL_SUPPORT
from exporter.formats.pdf_writer import PdfWriter
from PIL import Image
from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import Paragraph, SimpleDocTemplate

from tests.formats.conftest import FORMULA, LONG_TEXT, abandon_writer, build_dataset, rare_gc, run_writer
from tests.formats.report_fixtures import (
    ARABIC,
    CELL_MARKER,
    CYRILLIC,
    END_MARKER,
    GREEK,
    HEBREW,
    LONG,
    MARKUP,
    before_checkpoint,
    extra_records,
    image_dataset,
)


def _reports(root: Path, out: OutputDir) -> dict[str, Path]:
    return {p.stem: root / p for p in out.published if p.suffix == ".pdf"}


_FOOTER = re.compile(r"^page \d+ / \d+$", re.MULTILINE)


def _text(path: Path) -> tuple[list[str], str]:
    """Text of every page, and of the whole document without the page footers (so text that
    flows over a page break reads on)."""
    pages = [p.extract_text() or "" for p in pypdf.PdfReader(path).pages]
    return pages, "\n".join(_FOOTER.sub("", p) for p in pages)


def _flat(s: str) -> str:
    return " ".join(s.split())


def test_registered_and_limits(tmp_path):
    assert get_writer_class("pdf") is PdfWriter
    assert PdfWriter.limits.holds_whole_document
    assert not PdfWriter(OutputDir(tmp_path), {}).limits.holds_whole_document
    assert PdfWriter(OutputDir(tmp_path), {"pdf_single": "1"}).limits.holds_whole_document


def test_one_report_per_submission(tmp_path):
    ds = image_dataset()
    out, w = run_writer(PdfWriter, tmp_path, {"report_lang": "en"}, ds.records())
    reports = _reports(tmp_path, out)
    assert set(reports) == {"1001", "1002", "1003"}
    assert all(str(p.relative_to(tmp_path)).startswith(out.form_dir(ds.form) + "/reports/") for p in reports.values())
    pages, text = _text(reports["1001"])
    flat = _flat(text)
    assert f"{ds.form.name} — #1" in text
    for expected in ("Submission id 1001", "Name Alice", "Amount -5", "Date 2024-05-01", "Time 14:05",
                     "When 2024-05-01 14:05:09", "Done? Yes", "Where 48.8584, 2.2945", "Status Open:OPN",
                     "Unknown type -> text kept as text", "line 1 line 2 line \"3\", quoted; semi",
                     "Lines (2 rows)", "item qty checked when pic", "Bolt M8 12.50 Yes 2024-05-02 row0.jpg",
                     "Never filled (0 rows) No rows."):
        assert expected in flat, expected
    assert FORMULA.replace(",", "") in flat.replace(" ", "").replace(",", "") or "HYPERLINK" in flat
    n = len(pages)
    assert all(f"page {i} / {n}" in p for i, p in enumerate(pages, 1))
    # images: the four real images of submission 1001 are embedded
    reader = pypdf.PdfReader(reports["1001"])
    assert sum(len(p.images) for p in reader.pages) == 4
    # an unreadable image is listed by name with its relative path
    _, t3 = _text(reports["1003"])
    listed = "Photos: ../../evil.jpg — ../media/1003/_.._evil~855d7fed.jpg (image/jpeg, 6 bytes, image could not be read)"
    assert listed in _flat(t3)
    assert sum(len(p.images) for p in pypdf.PdfReader(reports["1003"]).pages) == 1  # row-only.jpg
    assert w.documents == 3 and w.pages >= 3


def test_text_is_literal_accented_multilingual_and_complete(tmp_path):
    out, _ = run_writer(PdfWriter, tmp_path, {}, extra_records())
    pages, text = _text(_reports(tmp_path, out)["s-1"])
    flat = _flat(text)
    assert "Réunion <b>&amp;</b> Ελληνικά — #7" in text  # title with markup characters, literal
    assert "Caption <i>&amp;</i>" in text
    assert _flat(MARKUP) in flat  # "<b>", "&", "&amp;", "<br/>" printed, not interpreted
    assert GREEK in text and CYRILLIC in text and "Zoë" in text and "Détails" in text
    norm = unicodedata.normalize("NFKC", text)
    if RTL_SUPPORT:  # drawn in visual order, so the extracted text is in logical order again
        assert HEBREW in norm and ARABIC in norm
    else:  # pragma: no cover - python-bidi missing: letters drawn in logical order
        assert set(HEBREW) <= set(norm)
    assert "before 😀" in text and "after" in text  # emoji: no crash, text around intact
    # 40,000 characters wrapped over several pages, nothing truncated, marker at the very end
    assert END_MARKER in text
    assert flat.count("Déjà vu, naïve façade;") == LONG.count("Déjà vu, naïve façade;")
    assert len(pages) >= 8
    # a sub-form cell too tall for one page goes below its table as a note, in full
    assert "Notes (2 rows) Label Detail When short fine 2024-06-01 long one → see note [1] 2024-06-01" in flat
    assert "[1] Row 2 · Detail" in flat and CELL_MARKER in flat
    assert flat.count("word") >= 2000
    # a wide sub-form becomes one table per row; other media listed with their relative paths
    assert "Row 2 Column 1 r2c1 Column 2 r2c2" in flat
    assert "Voice memo: voice memo.m4a — ../media/s-1/voice memo.m4a (audio/mp4, 22 bytes)" in flat
    assert "Attachments: missing.jpg (not exported)" in flat
    assert "Site photos: broken.jpg — ../media/s-1/broken.jpg (image/jpeg, 30 bytes, image could not be read)" in flat


def test_hostile_dataset_values(tmp_path):
    out, _ = run_writer(PdfWriter, tmp_path, {"report_lang": "en"}, build_dataset().records())
    pages, text = _text(_reports(tmp_path, out)["1002"])
    assert _flat(text).count("Lorem ipsum") == LONG_TEXT.count("Lorem ipsum") == 2000
    assert len(pages) >= 5
    flat = _flat(text)
    assert "Amount 12,345.67x" in flat and "Done? maybe" in flat and "Where north pole-ish" in flat
    assert "bell\ufffd nul\ufffd esc\ufffd" in flat  # control characters visible as U+FFFD


def _page_of(pages: list[str], needle: str, start: int = 0) -> int:
    for i in range(start, len(pages)):
        if needle in pages[i]:
            return i + 1
    raise AssertionError(f"{needle!r} on no page")


def test_single_pdf_with_contents_outline_and_page_numbers(tmp_path):
    ds = image_dataset()
    out, w = run_writer(PdfWriter, tmp_path, {"report_lang": "en", "pdf_single": True}, ds.records())
    paths = [tmp_path / p for p in out.published]
    assert [p.name for p in paths] == [out.safe(ds.form.name + ".pdf"), "Empty form.pdf"]
    pages, _ = _text(paths[0])
    n = len(pages)
    assert all(f"page {i} / {n}" in p for i, p in enumerate(pages, 1))
    # every submission starts on its own page; the contents give that page
    toc = pages[0]
    assert "Contents" in toc
    for sid, rn in (("1001", 1), ("1002", 2), ("1003", 3)):
        page = _page_of(pages, f"{ds.form.name} — #{rn}", 1)
        m = re.search(rf"#{rn} · Submission id {sid} ·[^\n]*(?:\n[ .]*)?\n?\s*(\d+)\s*$", toc, re.MULTILINE)
        assert m, toc
        assert int(m.group(1)) == page
    reader = pypdf.PdfReader(paths[0])
    outline = reader.outline
    assert [o.title.split(" · ")[0] for o in outline] == ["#1", "#2", "#3"]
    for o, rn in zip(outline, (1, 2, 3), strict=False):
        assert f"{ds.form.name} — #{rn}" in pages[reader.get_destination_page_number(o)]
    assert sum(len(p.images) for p in reader.pages) == 5
    assert w.pages == n + 1  # the empty form's document has one page
    assert "No submissions." in _text(paths[1])[1]


def test_single_pdf_volumes(tmp_path):
    ds = image_dataset()
    out, _ = run_writer(PdfWriter, tmp_path, {"report_lang": "en", "pdf_single": True, "report_max_submissions": 2}, ds.records())
    names = [p.name for p in out.published]
    assert names == [out.safe(ds.form.name + ".pdf"), out.safe(ds.form.name + " (part 2).pdf"), "Empty form.pdf"]
    pages, _ = _text(tmp_path / out.published[1])
    assert f"{ds.form.name} — #3" in "".join(pages) and f"{ds.form.name} — #1" not in "".join(pages)


def test_rendered_page_is_not_blank_and_shows_the_photo(tmp_path):
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        pytest.fail("pdftoppm is missing: apt-get install -y poppler-utils")
    out, _ = run_writer(PdfWriter, tmp_path, {"report_lang": "en"}, image_dataset().records())
    pdf = _reports(tmp_path, out)["1001"]
    subprocess.run([pdftoppm, "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True, timeout=60)
    pngs = sorted(tmp_path.glob("page*.png"))
    assert len(pngs) == len(pypdf.PdfReader(pdf).pages)
    first = Image.open(pngs[0]).convert("L")
    lo, hi = first.getextrema()
    assert lo < 128 and hi > 200  # text on a white page
    reds = 0
    for png in pngs:  # photo_1.jpg is red (200, 30, 30) with blue stripes
        im = Image.open(png).convert("RGB")
        reds += sum(n for n, (r, g, b) in im.getcolors(1 << 24) if r > 150 and g < 80 and b < 80)
    assert reds > 50


def test_failed_run_publishes_nothing(tmp_path):
    _, w = abandon_writer(PdfWriter, tmp_path, {"pdf_single": True}, before_checkpoint(image_dataset().records()))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert not w._tmp.exists()


def test_lazy_story_keeps_a_small_window(tmp_path):
    produced = consumed = 0
    peak = 0
    style = ParagraphStyle("s", fontName=FONT, fontSize=9, leading=11, keepWithNext=0)
    PdfWriter(OutputDir(tmp_path), {})  # registers the fonts

    def story():
        nonlocal produced
        for i in range(3000):
            produced += 1
            yield Paragraph(f"paragraph {i}", style)

    class Doc(SimpleDocTemplate):
        def afterFlowable(self, f):
            nonlocal consumed, peak
            if not isinstance(f, Paragraph):
                return  # page-template bookkeeping flowables
            consumed += 1
            peak = max(peak, produced - consumed)

    doc = Doc(str(tmp_path / "lazy.pdf"))
    doc.build(LazyStory(story()))
    assert consumed == produced == 3000
    assert peak <= LazyStory.LOOKAHEAD + 2
    assert len(pypdf.PdfReader(tmp_path / "lazy.pdf").pages) > 30


class _CountingPdf(PdfWriter):
    """Keeps a weak reference to every document template it creates."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.made: list = []
        make = self.layout.doc

        def doc(*a, **k):
            d = make(*a, **k)
            self.made.append(weakref.ref(d))
            return d

        self.layout.doc = doc


@pytest.mark.parametrize("options", [{}, {"pdf_single": True, "report_max_submissions": 1}])
def test_written_documents_are_freed_with_a_rarely_running_collector(tmp_path, options):
    """reportlab documents are reference cycles too: under the collector threshold the pipeline
    ran with (and a host application may set), written PDFs piled up (100 MB for 500 reports, 45 MB once freed)."""
    ds = build_dataset()
    ds.submissions = [s for s in ds.submissions if s.id != "1002"]  # its 40,000 characters: slow
    with rare_gc():
        _, w = run_writer(_CountingPdf, tmp_path, options, ds.records())
        alive = sum(r() is not None for r in w.made)
    assert len(w.made) >= 2 and alive == 0


def test_writing_pdfs_leaves_reportlab_as_it_was(tmp_path):
    """The emoji CMap fix lives in our font class, and image streams keep reportlab's settings:
    writing a report changes nothing reportlab shares with the rest of the process, and a font an
    application registered under DejaVu's own name is not replaced."""
    from reportlab import rl_config
    from reportlab.pdfbase import pdfmetrics, ttfonts

    cmap, a85 = ttfonts.makeToUnicodeCMap, rl_config.useA85
    ds = build_dataset()
    ds.submissions = [s for s in ds.submissions if s.id != "1002"]
    run_writer(PdfWriter, tmp_path, {}, ds.records())
    assert ttfonts.makeToUnicodeCMap is cmap and rl_config.useA85 == a85
    assert "DejaVuSans" not in pdfmetrics.getRegisteredFontNames()
    assert type(pdfmetrics.getFont(FONT)) is not ttfonts.TTFont  # ours: a subclass, used by our documents only
