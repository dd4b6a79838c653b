"""``erase_xlsx``: a workbook copied read-only -> write-only without some submissions' rows."""
from __future__ import annotations

import datetime as dt

import pytest
from exporter.connectors.remote.erase_xlsx import filter_xlsx, read_submissions
from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell

from exporter.errors import SinkError


def text(ws, v):
    c = WriteOnlyCell(ws, value=v)
    c.data_type = "s"
    return c


def make(path):
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("submissions")
    ws.append([text(ws, h) for h in ("_id", "_user_id", "_user_name", "_update_user_id", "_update_user_name",
                                      "_update_time", "_extra", "amount", "ok", "note")])
    when = WriteOnlyCell(ws, value=dt.datetime(2024, 5, 1, 10, 0))
    when.number_format = "yyyy-mm-dd hh:mm:ss"
    ws.append([text(ws, "1"), text(ws, "7"), text(ws, "Ann Lee"), None, None, when, None, 1.5, True,
               text(ws, "=SUM(A1)")])
    ws.append([text(ws, "2"), text(ws, "8"), text(ws, "Bob"), text(ws, "7"), text(ws, "Ann Lee"), None,
               text(ws, '{"other":1,"update_user_ref1":"R-7"}'), 3, False, text(ws, "0123")])
    sub = wb.create_sheet("rows")
    sub.append([text(sub, h) for h in ("_submission_id", "_row_index", "x")])
    sub.append([text(sub, "1"), 0, text(sub, "a")])
    sub.append([text(sub, "2"), 0, text(sub, "b")])
    sub.append([text(sub, "1"), 1, text(sub, "c")])
    fields = wb.create_sheet("fields")
    fields.append([text(fields, "sheet"), text(fields, "column")])
    fields.append([text(fields, "submissions"), text(fields, "note")])
    wb.save(path)


def cells(path):
    with open(path, "rb") as fh:  # (no .xlsx suffix: a file object)
        wb = load_workbook(fh)
    return {ws.title: [[(c.value, c.data_type, c.number_format) for c in row] for row in ws.iter_rows()]
            for ws in wb.worksheets}


def test_filter_keeps_types_and_text(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"  # (no suffix, as downloaded)
    make(src)
    subs = read_submissions(src, "s.xlsx")
    assert subs["1"][0]["user_id"] == "7" and subs["1"][2] == 2 and subs["2"][1] == {"other": 1, "update_user_ref1": "R-7"}
    filter_xlsx(src, dst, "s.xlsx", {"1"}, {"2": ["update_user_id"]})
    old, new = cells(src), cells(dst)
    assert list(new) == ["submissions", "rows", "fields"]
    assert new["fields"] == old["fields"] and new["rows"] == [old["rows"][0], old["rows"][2]]
    row = new["submissions"][1]
    assert [v for v, _t, _f in row] == ["2", "8", "Bob", "7", None, None, '{"other":1}', 3, False, "0123"]
    assert row[-1][1] == "s"  # text stays text
    filter_xlsx(src, dst, "s.xlsx", set(), {})  # nothing to erase: every cell as it was (type, format)
    assert [r[:10] for r in cells(dst)["submissions"]] == [r[:10] for r in old["submissions"]]
    assert cells(dst)["submissions"][1][9] == ("=SUM(A1)", "s", "General")  # a text, never a formula
    assert cells(dst)["submissions"][1][5][2] == "yyyy-mm-dd hh:mm:ss"


def test_a_file_that_is_no_workbook_is_refused(tmp_path):
    (tmp_path / "bad").write_bytes(b"not a zip")
    with pytest.raises(SinkError, match="cannot be read as a workbook"):
        filter_xlsx(tmp_path / "bad", tmp_path / "out", "s.xlsx", {"1"}, {})
