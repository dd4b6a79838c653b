"""XLSX writer throughput: our writer vs a bare openpyxl write-only loop on the same rows.

    python tests/benchmarks/bench_xlsx.py [--rows 50000] [--subform-rows 2]

Both sides write the same submissions (metadata columns + 12 typed fields) to one workbook and save
it. The baseline appends plain Python values (what the typed values already are) to a write-only
sheet: no formula protection, no forbidden-character escaping, no long-text side files, no
hyperlinks, no sheet continuation, no sub-form sheet. The ratio shows what those cost.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exporter.formats.base import OutputDir
from exporter.formats.xlsx_writer import XlsxWriter
from openpyxl import Workbook

from exporter.model import META_KEYS
from exporter.records import parse_form, parse_submission

FORM = {
    "id": "1", "name": "bench", "fields": {
        "name": {"type": "text"}, "comment": {"type": "textarea"}, "amount": {"type": "number"},
        "qty": {"type": "number"}, "day": {"type": "date"}, "at": {"type": "time"},
        "when": {"type": "datetime"}, "done": {"type": "checkbox"}, "where": {"type": "geoloc"},
        "photo": {"type": "photo"}, "status": {"type": "list"}, "code": {"type": "barcode"},
        "lines": {"type": "subform", "fields": {"item": {"type": "text"}, "n": {"type": "number"}}},
    },
}


def submissions(form, n: int, sub_rows: int):
    """``n`` distinct parsed submissions, built on the fly (never all in memory)."""
    for i in range(n):
        yield parse_submission(form, {
            "id": str(100000 + i), "record_number": str(i), "user_id": "7", "create_time": "2024-05-01 08:00:00",
            "update_time": "2024-05-01 09:00:00", "answer_time": "2024-05-01 08:00:00", "direction": "answer",
            "user_name": "Dupont Jean", "login": "jdupont", "email": "j@example.com",
            "fields": {
                "name": {"value": f"Client {i} é"}, "comment": {"value": "Some free text, with commas. " * 3},
                "amount": {"value": f"{i}.25"}, "qty": {"value": str(i % 97)},
                "day": {"value": "2024-05-01"}, "at": {"value": "14:05"}, "when": {"value": "2024-05-01 14:05:09"},
                "done": {"value": "1" if i % 2 else "0"}, "where": {"value": "48.8584,2.2945"},
                "photo": {"value": f"p{i}.jpg"}, "status": {"value": "Open:OPN"}, "code": {"value": f"=X{i}"},
                "lines": {"value": [{"item": {"value": f"row {r}"}, "n": {"value": str(r)}} for r in range(sub_rows)]},
            },
        })


def plain(v):
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, tuple):
        return "; ".join(v)
    if v is not None and not isinstance(v, (str, bool, int, float, dt.date, dt.time)):
        return str(v)
    return v


def run_ours(form, n: int, sub_rows: int, root: Path) -> float:
    t = time.perf_counter()
    out = OutputDir(root)
    w = XlsxWriter(out, {})
    w.write(form)
    for s in submissions(form, n, sub_rows):
        w.write(s)
    w.close(True)
    out.publish_all()
    return time.perf_counter() - t


def run_baseline(form, n: int, sub_rows: int, root: Path) -> float:
    t = time.perf_counter()
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("submissions")
    names = [f.name for f in form.value_fields()]
    ws.append(["_id", *("_" + k for k in META_KEYS), *names])
    rows = wb.create_sheet("lines")
    rows.append(["_submission_id", "_row_index", "item", "n"])
    for s in submissions(form, n, sub_rows):
        ws.append([s.id, *(s.meta[k] for k in META_KEYS), *(plain(s.values[k]) for k in names)])
        for r in s.subforms["lines"]:
            rows.append([s.id, r.index, r.values["item"], plain(r.values["n"])])
    wb.save(root / "baseline.xlsx")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--subform-rows", type=int, default=2)
    args = ap.parse_args()
    form = parse_form(FORM)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t_parse = time.perf_counter()
        for _ in submissions(form, args.rows, args.subform_rows):
            pass
        t_parse = time.perf_counter() - t_parse
        base = run_baseline(form, args.rows, args.subform_rows, root) - t_parse
        ours = run_ours(form, args.rows, args.subform_rows, root / "ours") - t_parse
        size = next((root / "ours").rglob("submissions.xlsx")).stat().st_size
    print(f"rows: {args.rows} (+{args.rows * args.subform_rows} sub-form rows on a second sheet)")
    print(f"building the records (excluded from both): {t_parse:.2f} s")
    print(f"baseline openpyxl write-only: {base:.2f} s  {args.rows / base:,.0f} rows/s")
    print(f"exporter XlsxWriter:          {ours:.2f} s  {args.rows / ours:,.0f} rows/s  ({size / 1e6:.1f} MB)")
    print(f"ratio ours/baseline time: {ours / base:.2f}x  (throughput {base / ours:.0%} of baseline)")


if __name__ == "__main__":
    main()
