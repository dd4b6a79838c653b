"""Report writers throughput: PDF pages/s and DOCX documents/s on synthetic submissions, each
against a bare reportlab / python-docx loop on the same records in the same run.

    python tests/benchmarks/bench_pdf.py [--submissions 200] [--photos 1] [--rows 5] [--single]
                                         [--formats pdf,docx]

Each synthetic submission has metadata, 12 typed fields, a sub-form of ``--rows`` rows and
``--photos`` JPEG photos (1600 x 1200, so the down-scaling path runs). Prints, per format and
mode, documents, pages (PDF), seconds, documents/s, pages/s, the peak RSS growth, then the same
for the baseline and our time relative to it. ``--single`` measures the one-document-per-form
mode (PDF: counting pass + real pass).

Every measurement runs in its own forked process (so one run's peak RSS does not hide the next
one's) and consumes the same record stream, whose building is therefore counted on both sides.

The baselines are what a plain loop over the records would do with the same libraries and the
same content: title, subtitle, the metadata and the field caption/value pairs as two-column
tables, the section heading, the sub-form rows as a table under a header row, the same JPEG
drawn at the text width. PDF: platypus ``SimpleDocTemplate`` (same page size, margins, DejaVu
Sans from ``formats/fonts``, reportlab's default stream encoding like our writer), values as escaped
``Paragraph`` cells, a "page N" footer, each photo saved to a file and drawn from it (reportlab
decodes and re-compresses an image given as a file object, which would slow the baseline
down); in single mode one story list with a page break before each submission.
DOCX: ``Document()`` (A4, same margins), ``add_heading``/``add_table``
("Table Grid")/``add_picture(width=text width)``; single mode: one document, page breaks.
What the baselines leave out is what the ratio costs: the typed-value formatting and labels,
XML-invalid character cleaning, right-to-left handling, tall cells moved to notes, the
"page N / M" footer (held page states), image decoding (EXIF orientation, down-scaling,
re-encoding), atomic file writes, and in single mode the title page with a table of contents
(two layout passes over a spool file for PDF, a TOC field for DOCX) and bounded memory.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exporter.formats.base import OutputDir
from exporter.formats.docx_writer import DocxWriter
from exporter.formats.pdf_writer import PdfWriter
from PIL import Image

from exporter.model import LAYOUT, MEDIA, META_KEYS, SUBFORM, Account, Checkpoint, Form, Media, Submission
from exporter.records import parse_form, parse_submission

FONTS = ROOT / "formats" / "fonts"

FORM = {
    "id": "1", "name": "Bench — inspection", "fields": {
        "s": {"type": "section", "caption": "General"},
        "name": {"type": "text", "caption": "Name"}, "comment": {"type": "textarea", "caption": "Comment"},
        "amount": {"type": "number", "caption": "Amount"}, "qty": {"type": "number", "caption": "Quantity"},
        "day": {"type": "date", "caption": "Day"}, "at": {"type": "time", "caption": "At"},
        "when": {"type": "datetime", "caption": "When"}, "done": {"type": "checkbox", "caption": "Done"},
        "where": {"type": "geoloc", "caption": "Where"}, "status": {"type": "list", "caption": "Status"},
        "code": {"type": "barcode", "caption": "Code"}, "photo": {"type": "photo", "caption": "Photos"},
        "lines": {"type": "subform", "caption": "Lines", "fields": {
            "item": {"type": "text", "caption": "Item"}, "n": {"type": "number", "caption": "N"},
            "ok": {"type": "checkbox", "caption": "OK"}}},
    },
}


def _jpeg(i: int) -> bytes:
    im = Image.new("RGB", (1600, 1200), ((i * 37) % 256, 90, 160))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def records(n: int, photos: int, rows: int):
    form = parse_form(FORM)
    yield Account(source="bench://", timezone="Europe/Paris")
    yield form
    jpeg = [_jpeg(i) for i in range(max(photos, 1))]
    for i in range(n):
        names = ", ".join(f"p{i}_{k}.jpg" for k in range(photos))
        raw = {"id": str(10_000 + i), "record_number": str(i + 1), "user_name": "Jean Dupont",
               "create_time": "2024-05-01 08:00:00", "update_time": "2024-05-01 09:00:00", "fields": {
                   "name": {"value": f"Site n°{i} — Façade"}, "comment": {"value": "Observation détaillée. " * 12},
                   "amount": {"value": f"{i}.50"}, "qty": {"value": str(i % 7)}, "day": {"value": "2024-05-01"},
                   "at": {"value": "14:05"}, "when": {"value": "2024-05-01 14:05"}, "done": {"value": "1"},
                   "where": {"value": "48.8584,2.2945"}, "status": {"value": "Open:OPN"},
                   "code": {"value": f"CODE-{i:08d}"}, "photo": {"value": names},
                   "lines": {"value": [{"item": {"value": f"item {r}"}, "n": {"value": str(r)},
                                        "ok": {"value": "1"}} for r in range(rows)]},
               }}
        sub = parse_submission(form, raw)
        yield sub
        for k, ref in enumerate(sub.media):
            yield Media.spooled(ref, "image/jpeg", iter([jpeg[k % len(jpeg)]]))
    yield Checkpoint(form.id, "2024-05-01 09:00:00")


# --------------------------------------------------------------------------------------------
# Our writers
# --------------------------------------------------------------------------------------------


def run_ours(key: str, single: bool, n: int, photos: int, rows: int, tmp: Path) -> dict:
    cls = {"pdf": PdfWriter, "docx": DocxWriter}[key]
    out = OutputDir(tmp)
    w = cls(out, {f"{key}_single": True} if single else {})
    t0 = time.perf_counter()
    for r in records(n, photos, rows):
        w.write(r)
    w.close(True)
    out.publish_all()
    return {"seconds": time.perf_counter() - t0, "documents": w.documents, "pages": getattr(w, "pages", 0)}


# --------------------------------------------------------------------------------------------
# Baselines: bare loops over the same records
# --------------------------------------------------------------------------------------------


def submissions_with_media(stream):
    """(form, submission, [JPEG bytes]) per submission: media arrive after their submission."""
    form: Form | None = None
    sub: Submission | None = None
    media: list[bytes] = []
    for r in stream:
        if isinstance(r, Media):
            with r.open() as fh:
                media.append(fh.read())
            continue
        if sub is not None:
            yield form, sub, media
            sub, media = None, []
        if isinstance(r, Form):
            form = r
        elif isinstance(r, Submission):
            sub = r
    if sub is not None:
        yield form, sub, media


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, tuple):
        return ", ".join(str(x) for x in v)
    return str(v)


def _meta(form: Form, sub: Submission) -> list[tuple[str, str]]:
    return [("Form", f"{form.name} ({form.id})"), ("Submission id", sub.id),
            *((k, _text(sub.meta[k])) for k in META_KEYS if sub.meta.get(k) not in (None, ""))]


def baseline_pdf(single: bool, n: int, photos: int, rows: int, tmp: Path) -> dict:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.platypus import Image as RLImage
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    pdfmetrics.registerFont(TTFont("BenchSans", str(FONTS / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont("BenchSans-Bold", str(FONTS / "DejaVuSans-Bold.ttf")))
    body = ParagraphStyle("b", fontName="BenchSans", fontSize=9, leading=11.5)
    cell = ParagraphStyle("c", parent=body, fontSize=8.5, leading=10.5)
    cap = ParagraphStyle("k", parent=cell, fontName="BenchSans-Bold")
    title = ParagraphStyle("t", parent=body, fontName="BenchSans-Bold", fontSize=15, leading=19, spaceAfter=3)
    h2 = ParagraphStyle("h2", parent=body, fontName="BenchSans-Bold", fontSize=12, leading=15, spaceBefore=8)
    h3 = ParagraphStyle("h3", parent=body, fontName="BenchSans-Bold", fontSize=10, leading=13, spaceBefore=6)
    grid = [("GRID", (0, 0), (-1, -1), 0.25, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")]
    kv_style = TableStyle([*grid, ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f0f0f0"))])
    head_style = TableStyle([*grid, ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e4e4e4"))])
    margins = {"leftMargin": 18 * mm, "rightMargin": 18 * mm, "topMargin": 16 * mm, "bottomMargin": 20 * mm}
    width = A4[0] - 36 * mm - 12  # the frame's text width

    def footer(canv, doc):
        canv.setFont("BenchSans", 8)
        canv.drawRightString(A4[0] - 18 * mm, 10 * mm, f"page {doc.page}")

    def p(text: str, style) -> Paragraph:
        return Paragraph(escape(text).replace("\n", "<br/>"), style)

    def kv(pairs) -> Table:
        return Table([[p(c, cap), p(v, cell)] for c, v in pairs], colWidths=[width * 0.32, width * 0.68],
                     style=kv_style, hAlign="LEFT")

    def story(form: Form, sub: Submission, media: list[bytes]) -> list:
        out = [p(f"{form.name} — #{sub.meta.get('record_number')}", title), p(f"Submission {sub.id}", body),
               kv(_meta(form, sub)), Spacer(1, 4)]
        pairs: list[tuple[str, str]] = []
        images = iter(media)

        def flush():
            if pairs:
                out.extend([kv(pairs), Spacer(1, 4)])
                pairs.clear()

        for f in form.fields:
            if f.kind == LAYOUT:
                flush()
                out.append(p(f.caption, h2))
            elif f.kind == SUBFORM:
                flush()
                kids = [c for c in f.children if c.has_value]
                data = [[p(c.caption, cap) for c in kids]]
                data += [[p(_text(r.values.get(c.name)), cell) for c in kids] for r in sub.subforms.get(f.name, [])]
                out += [p(f"{f.caption} ({len(data) - 1} rows)", h3),
                        Table(data, colWidths=[width / len(kids)] * len(kids), repeatRows=1, style=head_style,
                              hAlign="LEFT"), Spacer(1, 4)]
            elif f.kind == MEDIA:
                flush()
                out.append(p(f.caption, h3))
                for name in sub.values.get(f.name) or ():
                    path = media_dir / f"{sub.id}-{name}"  # saved, then drawn from its file
                    path.write_bytes(next(images))
                    iw, ih = ImageReader(str(path)).getSize()
                    out += [p(f"{f.caption}: {name}", body),
                            RLImage(str(path), width=width, height=width * ih / iw, hAlign="LEFT")]
            else:
                pairs.append((f.caption, _text(sub.values.get(f.name))))
        flush()
        return out

    def doc(path: Path) -> SimpleDocTemplate:
        return SimpleDocTemplate(str(path), pagesize=A4, title="bench", **margins)

    media_dir = Path(tempfile.mkdtemp(prefix="media-", dir=tmp.parent))  # not counted as output
    try:
        t0 = time.perf_counter()
        documents = pages = 0
        if single:
            flow: list = []
            for form, sub, media in submissions_with_media(records(n, photos, rows)):
                if not flow:
                    flow.append(p(form.name, title))
                flow += [PageBreak(), *story(form, sub, media)]
            d = doc(tmp / "single.pdf")
            d.build(flow, onFirstPage=footer, onLaterPages=footer)
            documents, pages = 1, d.page
        else:
            for form, sub, media in submissions_with_media(records(n, photos, rows)):
                d = doc(tmp / f"{sub.id}.pdf")
                d.build(story(form, sub, media), onFirstPage=footer, onLaterPages=footer)
                documents += 1
                pages += d.page
                for m in media_dir.iterdir():
                    m.unlink()
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(media_dir)
    return {"seconds": seconds, "documents": documents, "pages": pages}


def baseline_docx(single: bool, n: int, photos: int, rows: int, tmp: Path) -> dict:
    from docx import Document
    from docx.shared import Mm

    def new_document():
        d = Document()
        sec = d.sections[0]
        sec.page_width, sec.page_height = Mm(210), Mm(297)
        for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
            setattr(sec, side, Mm(18))
        return d

    text_width = Mm(210 - 36)

    def kv(d, pairs) -> None:
        t = d.add_table(rows=0, cols=2)
        t.style = "Table Grid"
        for c, v in pairs:
            c0, c1 = t.add_row().cells
            c0.paragraphs[0].add_run(c).bold = True
            c1.text = v
        d.add_paragraph()

    def render(d, form: Form, sub: Submission, media: list[bytes], level: int) -> None:
        d.add_heading(f"{form.name} — #{sub.meta.get('record_number')}", level)
        d.add_paragraph(f"Submission {sub.id}")
        kv(d, _meta(form, sub))
        pairs: list[tuple[str, str]] = []
        images = iter(media)
        for f in form.fields:
            if f.kind not in (LAYOUT, SUBFORM, MEDIA):
                pairs.append((f.caption, _text(sub.values.get(f.name))))
                continue
            if pairs:
                kv(d, pairs)
                pairs = []
            if f.kind == LAYOUT:
                d.add_heading(f.caption, level + 1)
            elif f.kind == SUBFORM:
                kids = [c for c in f.children if c.has_value]
                subrows = sub.subforms.get(f.name, [])
                d.add_heading(f"{f.caption} ({len(subrows)} rows)", level + 2)
                t = d.add_table(rows=1, cols=len(kids))
                t.style = "Table Grid"
                for c, k in zip(t.rows[0].cells, kids, strict=True):
                    c.paragraphs[0].add_run(k.caption).bold = True
                for r in subrows:
                    for c, k in zip(t.add_row().cells, kids, strict=True):
                        c.text = _text(r.values.get(k.name))
                d.add_paragraph()
            else:
                d.add_heading(f.caption, level + 2)
                for name in sub.values.get(f.name) or ():
                    d.add_paragraph(f"{f.caption}: {name}")
                    d.add_picture(io.BytesIO(next(images)), width=text_width)
        if pairs:
            kv(d, pairs)

    t0 = time.perf_counter()
    documents = 0
    if single:
        d = None
        for form, sub, media in submissions_with_media(records(n, photos, rows)):
            if d is None:
                d = new_document()
                d.add_heading(form.name, 0)
            d.add_page_break()
            render(d, form, sub, media, 1)
        if d is not None:
            d.save(str(tmp / "single.docx"))
            documents = 1
    else:
        for form, sub, media in submissions_with_media(records(n, photos, rows)):
            d = new_document()
            render(d, form, sub, media, 0)
            d.save(str(tmp / f"{sub.id}.docx"))
            documents += 1
    return {"seconds": time.perf_counter() - t0, "documents": documents, "pages": 0}


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _child(conn, fn, args) -> None:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rss0 = _rss_mb()
            res = fn(*args, Path(tmp))
            res["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
            res["output_mb"] = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 1e6
        conn.send(res)
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def measure(fn, *args) -> dict:
    """Run ``fn(*args, tmpdir)`` in a forked process: its own peak RSS, nothing left behind."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    res = parent.recv()
    proc.join()
    if "error" in res:
        raise SystemExit(f"{getattr(fn, '__name__', fn)}: {res['error']}")
    return res


def line(key: str, mode: str, who: str, n: int, r: dict) -> str:
    dt = r["seconds"]
    s = (f"{key:4} {mode:14} {who:8} submissions={n:5} documents={r['documents']:5} {dt:7.2f}s "
         f"{n / dt:7.1f} submissions/s {r['documents'] / dt:7.1f} documents/s")
    if r["pages"]:
        s += f" pages={r['pages']:5} {r['pages'] / dt:7.1f} pages/s"
    return s + f" output={r['output_mb']:.1f} MB peak RSS +{r['rss_mb']:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submissions", type=int, default=200)
    ap.add_argument("--photos", type=int, default=1)
    ap.add_argument("--rows", type=int, default=5)
    ap.add_argument("--single", action="store_true", help="one document per form")
    ap.add_argument("--formats", default="pdf,docx")
    a = ap.parse_args()
    mode = "single" if a.single else "per-submission"
    for key in (k.strip() for k in a.formats.split(",")):
        base_fn = {"pdf": baseline_pdf, "docx": baseline_docx}[key]
        base = measure(base_fn, a.single, a.submissions, a.photos, a.rows)
        ours = measure(run_ours, key, a.single, a.submissions, a.photos, a.rows)
        print(line(key, mode, "baseline", a.submissions, base), flush=True)
        print(line(key, mode, "ours", a.submissions, ours), flush=True)
        extra = ""
        if ours["pages"] and base["pages"]:
            extra = (f"; pages per submission: ours {ours['pages'] / a.submissions:.2f}, "
                     f"baseline {base['pages'] / a.submissions:.2f}")
        print(f"{key:4} {mode:14} ratio ours/baseline time: {ours['seconds'] / base['seconds']:.2f}x "
              f"(throughput {base['seconds'] / ours['seconds']:.0%} of baseline){extra}", flush=True)


if __name__ == "__main__":
    main()
