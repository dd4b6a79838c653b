"""A form's ``submissions.xlsx`` (``formats/xlsx_writer.py``) without some submissions, streamed,
for ``exporter forget`` on a remote.

The workbook is read with openpyxl in read-only mode and written again in write-only mode, sheet
by sheet and row by row (memory bounded by a row): in the submissions sheets (``_id``, continued
sheets included) and the sub-form sheets (``_submission_id``) the rows of the submissions that go
are left out; in the rows of those that stay, the metadata columns naming the person are emptied
and ``_extra`` written again without their references; other sheets (``fields``) are copied. Cells
keep their values, types and number formats; text stays text (``data_type`` "s", never a formula,
as the writer writes it); the header row is bold and frozen as the writer makes it. What the copy
does not keep: column widths and hyperlinks (openpyxl's read-only mode does not read them), and
the writer's fixed ZIP dates: the workbook's content is the same, not its bytes.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from exporter.errors import SinkError
from exporter.model import extra_json
from exporter.privacy import personal

_BOLD = Font(bold=True)


@contextlib.contextmanager
def _sheets(path: Path, rel: str) -> Iterator[Iterator[tuple[str, list[str], Iterator[Any]]]]:
    """(title, header, rows of cells) of each sheet of the workbook, read-only."""
    fh = open(path, "rb")  # (a file object: the downloaded copy has no .xlsx suffix)
    try:
        book = load_workbook(fh, read_only=True)
    except Exception as e:  # noqa: BLE001 - openpyxl raises many kinds for a file it cannot read
        fh.close()
        raise SinkError(f"{rel} cannot be read as a workbook ({type(e).__name__}: {e}); "
                        "export it again without the person") from None

    def each() -> Iterator[tuple[str, list[str], Iterator[Any]]]:
        for ws in book.worksheets:
            rows = ws.iter_rows()
            header = [str(c.value) if c.value is not None else "" for c in next(rows, ())]
            yield ws.title, header, rows

    try:
        yield each()
    finally:
        book.close()
        fh.close()


def _key(header: list[str]) -> int | None:
    for name in ("_submission_id", "_id"):
        if name in header:
            return header.index(name)
    return None


def read_submissions(path: Path, rel: str) -> dict[str, tuple[dict, dict, int]]:
    """sid -> (metadata, extra, sub-form rows) of every submission of the workbook (streamed)."""
    out: dict[str, tuple[dict, dict, int]] = {}
    rows_of: dict[str, int] = {}
    with _sheets(path, rel) as sheets:
        for _title, header, rows in sheets:
            key = _key(header)
            if key is None:
                continue
            for row in rows:
                values = [c.value for c in row]
                sid = str(values[key]) if key < len(values) and values[key] is not None else ""
                if header[key] == "_submission_id":
                    rows_of[sid] = rows_of.get(sid, 0) + 1
                    continue
                meta = {h[1:]: str(v) for h, v in zip(header, values, strict=False)
                        if h.startswith("_") and h not in ("_id", "_extra") and v is not None}
                raw = values[header.index("_extra")] if "_extra" in header and header.index("_extra") < len(values) else None
                try:
                    extra = json.loads(raw) if isinstance(raw, str) and raw.startswith("{") else {}
                except ValueError:
                    extra = {}
                out[sid] = (meta, extra, 0)
    return {sid: (m, e, rows_of.get(sid, 0)) for sid, (m, e, _n) in out.items()}


def _blank(header: list[str], values: list[Any], roles: list[str]) -> list[Any]:
    for role in roles:
        keys, prefix = personal.ROLES[role]
        for k in keys:
            if f"_{k}" in header and header.index(f"_{k}") < len(values):
                values[header.index(f"_{k}")] = None
        i = header.index("_extra") if "_extra" in header else len(values)
        if i < len(values) and isinstance(values[i], str) and values[i].startswith("{"):
            with contextlib.suppress(ValueError):
                extra = json.loads(values[i])
                values[i] = extra_json({k: v for k, v in extra.items() if not personal.is_submission_ref(k, prefix)})
    return values


def _cell(ws: Any, value: Any, number_format: str | None, bold: bool = False) -> Any:
    if value is None:
        return None
    c = WriteOnlyCell(ws, value=value)
    if isinstance(value, str):
        c.data_type = "s"  # text is text, never a formula
    elif number_format and number_format != "General":
        c.number_format = number_format
    if bold:
        c.font = _BOLD
    return c


def filter_xlsx(src: Path, dst: Path, rel: str, gone: set[str], kept: dict[str, list[str]]) -> None:
    """``src`` without the rows of the submissions in ``gone``, and without the metadata naming the
    person in the rows of those of ``kept`` (sid -> roles), written to ``dst``."""
    book = Workbook(write_only=True)
    try:
        with _sheets(src, rel) as sheets:
            for title, header, rows in sheets:
                ws = book.create_sheet(title)
                ws.freeze_panes = "A2"
                ws.append([_cell(ws, h, None, bold=True) for h in header])
                key = _key(header)
                for row in rows:
                    cells = list(row)
                    values = [c.value for c in cells]
                    sid = str(values[key]) if key is not None and key < len(values) and values[key] is not None else None
                    if sid is not None and sid in gone:
                        continue
                    if sid is not None and sid in kept and key is not None and header[key] == "_id":
                        values = _blank(header, values, kept[sid])
                    ws.append([_cell(ws, v, getattr(c, "number_format", None)) for c, v in zip(cells, values, strict=True)])
        book.save(dst)
    except SinkError:
        raise
    except (ValueError, TypeError) as e:  # openpyxl refusing a value
        raise SinkError(f"{rel} could not be written again ({e}); export it again without the person") from None
