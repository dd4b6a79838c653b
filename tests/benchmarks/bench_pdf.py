"""Report writers throughput: PDF pages/s and DOCX documents/s on synthetic submissions.

    python tests/benchmarks/bench_pdf.py [--submissions 200] [--photos 1] [--rows 5] [--single]
                                         [--formats pdf,docx]

Each synthetic submission has metadata, 12 typed fields, a sub-form of ``--rows`` rows and
``--photos`` JPEG photos (1600 x 1200, so the down-scaling path runs). Prints, per format and
mode, documents, pages (PDF), seconds, documents/s, pages/s and the peak RSS growth.
``--single`` measures the one-document-per-form mode (PDF: counting pass + real pass).
"""
from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image

from exporter.model import Account, Checkpoint, Media
from exporter.records import parse_form, parse_submission
from formats.base import OutputDir
from formats.docx_writer import DocxWriter
from formats.pdf_writer import PdfWriter

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


def run(cls, options: dict, n: int, photos: int, rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = OutputDir(tmp)
        w = cls(out, options)
        t0 = time.perf_counter()
        for r in records(n, photos, rows):
            w.write(r)
        w.close(True)
        out.publish_all()
        dt = time.perf_counter() - t0
        rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 1e6
        pages = getattr(w, "pages", 0)
        line = (f"{cls.key:4} {'single' if options else 'per-submission':15} submissions={n:6} "
                f"documents={w.documents:6} {dt:7.2f}s {n / dt:8.1f} submissions/s "
                f"{w.documents / dt:8.1f} documents/s")
        if pages:
            line += f" pages={pages} {pages / dt:8.1f} pages/s"
        print(line + f" output={size:.1f} MB peak RSS +{rss:.0f} MB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submissions", type=int, default=200)
    ap.add_argument("--photos", type=int, default=1)
    ap.add_argument("--rows", type=int, default=5)
    ap.add_argument("--single", action="store_true", help="one document per form")
    ap.add_argument("--formats", default="pdf,docx")
    a = ap.parse_args()
    for key in a.formats.split(","):
        cls = {"pdf": PdfWriter, "docx": DocxWriter}[key.strip()]
        opts = {f"{cls.key}_single": True} if a.single else {}
        run(cls, opts, a.submissions, a.photos, a.rows)


if __name__ == "__main__":
    main()
