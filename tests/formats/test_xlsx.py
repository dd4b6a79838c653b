import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from exporter.formats.base import get_writer_class
from exporter.formats.xlsx_writer import SheetNames, XlsxWriter
from openpyxl import load_workbook

from exporter.model import META_KEYS, GeoPoint
from exporter.records import parse_form, parse_submission
from tests.formats.conftest import (
    BAD_FIELD,
    CONTROL,
    FORM_ID,
    FORMULA,
    LONE_SURROGATE,
    LONG_TEXT,
    MULTILINE,
    SPACE_FIELD,
    run_writer,
)


def _form_dir(root: Path) -> Path:
    (d,) = [p for p in (root / "forms").iterdir() if p.name.startswith(FORM_ID)]
    return d


def _rows(ws):
    return [list(r) for r in ws.iter_rows(values_only=True)]


def _visible(text: str) -> str:
    """How a text with characters XML forbids must look in a cell (independent re-implementation)."""
    out = []
    for ch in text:
        o = ord(ch)
        bad = (o < 0x20 and ch not in "\t\n\r") or 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF)
        out.append(f"\\u{o:04x}" if bad else ch)
    return "".join(out)


def test_registry_and_limits():
    assert get_writer_class("xlsx") is XlsxWriter
    assert XlsxWriter.limits.max_rows_per_sheet == 1_048_576
    assert XlsxWriter.limits.max_cell_chars == 32_767
    assert XlsxWriter.limits.max_sheet_name == 31


def test_workbook_round_trip(dataset, tmp_path):
    run_writer(XlsxWriter, tmp_path, {}, dataset.records())
    fdir = _form_dir(tmp_path)
    wb = load_workbook(fdir / "submissions.xlsx")
    assert wb.sheetnames == ["submissions", "lines", "empty_sub", "fields"]
    ws = wb["submissions"]
    assert ws.freeze_panes == "A2"
    rows = _rows(ws)
    header = rows[0]
    fields = dataset.form.value_fields()
    assert header == ["_id"] + ["_" + k for k in META_KEYS] + ["_extra"] + [f.name for f in fields]
    assert ws["A1"].font.b
    for row, sub in zip(rows[1:], dataset.submissions, strict=True):
        cells = dict(zip(header, row, strict=True))
        assert cells["_id"] == sub.id
        assert cells["_create_time"] == dt.datetime.strptime(sub.meta["create_time"], "%Y-%m-%d %H:%M:%S")
        assert cells["_login"] == sub.meta["login"]
        for f in fields:
            v, t, got = sub.values[f.name], sub.text[f.name], cells[f.name]
            if v is None:
                assert got == (_visible(t) if t else None), (sub.id, f.name)
            elif isinstance(v, bool):
                assert got is v
            elif isinstance(v, Decimal):
                if len(v.as_tuple().digits) <= 15:
                    assert isinstance(got, (int, float)) and Decimal(str(got)) == v
                else:  # more digits than Excel keeps: text, nothing rounded
                    assert got == format(v, "f")
            elif isinstance(v, dt.datetime):
                assert got == v
            elif isinstance(v, dt.date):
                assert got == dt.datetime.combine(v, dt.time())
            elif isinstance(v, dt.time):
                assert got == v
            elif isinstance(v, GeoPoint):
                assert got == f"{v.latitude},{v.longitude}"
            elif isinstance(v, tuple):
                assert (got or "").count("media/") == len(v)
            elif f.name != "comment" or sub.id != "1002":
                assert got == _visible(v), (sub.id, f.name)


def test_types_and_hostile_values(dataset, tmp_path):
    run_writer(XlsxWriter, tmp_path, {}, dataset.records())
    fdir = _form_dir(tmp_path)
    wb = load_workbook(fdir / "submissions.xlsx")
    ws = wb["submissions"]
    header = [c.value for c in ws[1]]
    col = {h: i for i, h in enumerate(header)}
    r1, r2, r3 = ws[2], ws[3], ws[4]
    assert r1[col["amount"]].value == -5 and r1[col["amount"]].data_type == "n"
    assert r1[col["visit_date"]].is_date and r1[col["visit_date"]].number_format == "yyyy-mm-dd"
    assert r1[col["visit_time"]].value == dt.time(14, 5)
    assert r1[col["done"]].data_type == "b"
    assert r1[col["comment"]].value == MULTILINE
    # formulas are stored as text, never evaluated
    for cell in (r2[col["status"]], r3[col["name"]], r2[col["_login"]]):
        assert cell.data_type == "s"
    assert r2[col["status"]].value == FORMULA
    assert r3[col["name"]].value == "=1+2"
    assert r3[col[SPACE_FIELD]].value == "\rCR start"
    assert r2[col[BAD_FIELD]].value == _visible(CONTROL) and "\\u0007" in r2[col[BAD_FIELD]].value
    assert r3[col[BAD_FIELD]].value == _visible(LONE_SURROGATE)
    assert r3[col["visit_date"]].value == dt.datetime(1999, 12, 31)
    # media: relative paths, linked
    photo = r1[col["photo"]]
    assert photo.value == "media/1001/photo_1.jpg; media/1001/photo 2 é.png"
    assert photo.hyperlink.target == "media/1001/"  # several media: their folder
    sig = r1[col["sig"]]
    assert sig.hyperlink.target == "media/1001/sig.png"
    assert (fdir / sig.hyperlink.target).parent.resolve() == (fdir / "media" / "1001").resolve()


def test_long_text_goes_to_a_side_file(dataset, tmp_path):
    run_writer(XlsxWriter, tmp_path, {}, dataset.records())
    fdir = _form_dir(tmp_path)
    ws = load_workbook(fdir / "submissions.xlsx")["submissions"]
    header = [c.value for c in ws[1]]
    cell = ws[3][header.index("comment")]
    assert cell.value.startswith("[cut: 40000 characters, full text in long-values/")
    assert len(cell.value.encode("utf-16-le")) // 2 <= 32767
    target = fdir / cell.hyperlink.target
    assert target.read_text("utf-8") == LONG_TEXT  # never silently cut
    assert cell.value.split("] ", 1)[1] in LONG_TEXT


def test_fields_sheet_describes_every_column(dataset, tmp_path):
    run_writer(XlsxWriter, tmp_path, {}, dataset.records())
    wb = load_workbook(_form_dir(tmp_path) / "submissions.xlsx")
    rows = _rows(wb["fields"])
    assert rows[0] == ["sheet", "column", "field", "caption", "type", "kind", "required", "list_id"]
    by = {(r[0], r[1]): r for r in rows[1:]}
    assert by[("submissions", "_id")][2] is None
    assert by[("submissions", "status")][2:] == ["status", "Status", "list", "choice", False, "77"]
    assert by[("submissions", BAD_FIELD)][3] == "Hostile name"
    assert by[("lines", "qty")][4:6] == ["number", "number"]
    for sheet, col in by:  # every described column is a header of that sheet
        assert col in [c.value for c in wb[sheet][1]]


def test_link_targets_are_encoded():
    from exporter.formats.xlsx_writer import link_target

    assert link_target("media/1/a b#c%d?.jpg") == "media/1/a%20b%23c%25d%3F.jpg"
    assert link_target("media/1/été.png") == "media/1/été.png"


def test_subform_sheet(dataset, tmp_path):
    run_writer(XlsxWriter, tmp_path, {}, dataset.records())
    wb = load_workbook(_form_dir(tmp_path) / "submissions.xlsx")
    rows = _rows(wb["lines"])
    assert rows[0] == ["_submission_id", "_row_index", "item", "qty", "checked", "when", "pic"]
    assert rows[1] == ["1001", 0, "Bolt M8", 12.5, True, dt.datetime(2024, 5, 2), "media/1001/row0.jpg"]
    assert rows[2] == ["1001", 1, FORMULA, "not a number", False, "2024-13-45", None]
    assert rows[3][:2] == ["1003", 0]
    assert _rows(wb["empty_sub"]) == [["_submission_id", "_row_index", "x"]]
    assert wb["lines"]["G2"].hyperlink.target == "media/1001/row0.jpg"


class _TinyXlsx(XlsxWriter):
    max_rows = 3  # header + 2 rows per sheet
    max_cell_chars = 50


def test_row_limit_continues_on_new_sheets(dataset, tmp_path):
    form = parse_form({"id": "5", "name": "many", "fields": {"n": {"type": "number"}, "t": {"type": "text"}}})
    subs = [parse_submission(form, {"id": str(i), "fields": {"n": {"value": str(i)}, "t": {"value": "x" * (i * 20)}}})
            for i in range(7)]
    run_writer(_TinyXlsx, tmp_path, {}, [form, *subs])
    wb = load_workbook(tmp_path / "forms" / "5-many" / "submissions.xlsx")
    subs_sheets = [n for n in wb.sheetnames if n.startswith("submissions")]
    assert subs_sheets == ["submissions", "submissions (2)", "submissions (3)", "submissions (4)"]
    assert [n for n in wb.sheetnames if n.startswith("fields")][:2] == ["fields", "fields (2)"]  # also continued
    got = []
    for ws in (wb[n] for n in subs_sheets):
        rows = _rows(ws)
        assert rows[0][0] == "_id" and len(rows) <= 3 and ws.freeze_panes == "A2"
        got += rows[1:]
    assert [r[0] for r in got] == [str(i) for i in range(7)]
    assert [r[-2] for r in got] == list(range(7))
    # texts over the (lowered) cell limit go whole to side files
    t3 = got[3][-1]
    assert t3.startswith("[cut: 60 characters") and len(t3) <= 50
    side = sorted((tmp_path / "forms" / "5-many" / "long-values").iterdir())
    assert [p.read_text() for p in side] == ["x" * (i * 20) for i in (3, 4, 5, 6)]


def test_sheet_names_are_valid_and_unique():
    names = SheetNames()
    made = [names.make(n) for n in ["a[b]:c*d?e/f\\g", "x" * 40, "x" * 40, "X" * 40, "'quoted'", "History",
                                    "", "submissions", "SUBMISSIONS"]]
    assert len({m.casefold() for m in made}) == len(made)
    for m in made:
        assert 0 < len(m) <= 31 and not any(c in m for c in "[]:*?/\\")
        assert not m.startswith("'") and not m.endswith("'")
    assert made[0] == "a_b__c_d_e_f_g"
    assert made[2].endswith(" (2)") and made[3].endswith(" (3)")
    assert made[5] != "History"


def test_hostile_subform_names_in_a_workbook(tmp_path):
    form = parse_form({"id": "6", "name": "subs", "fields": {
        "Lines/[2024]*?": {"type": "subform", "fields": {"a": {"type": "text"}}},
        "lines/[2024]**": {"type": "subform", "fields": {"a": {"type": "text"}}},
        "a" * 50: {"type": "subform", "fields": {"a": {"type": "text"}}},
    }})
    sub = parse_submission(form, {"id": "1", "fields": {"Lines/[2024]*?": {"value": [{"a": {"value": "r"}}]}}})
    run_writer(XlsxWriter, tmp_path, {}, [form, sub])
    wb = load_workbook(tmp_path / "forms" / "6-subs" / "submissions.xlsx")
    assert len(wb.sheetnames) == 5 and len({s.casefold() for s in wb.sheetnames}) == 5
    assert _rows(wb[wb.sheetnames[1]])[1] == ["1", 0, "r"]


def test_users_groups_lists(dataset, tmp_path):
    run_writer(XlsxWriter, tmp_path, {}, dataset.records())
    users = _rows(load_workbook(tmp_path / "users.xlsx")["users"])
    assert users[0][:2] == ["id", "login"]
    assert users[1][6] is True and users[2][1] == '=HYPERLINK("x")'
    gwb = load_workbook(tmp_path / "groups.xlsx")
    assert _rows(gwb["groups"]) == [["id", "name", "parent_id", "_extra"], ["5", "Équipe ../ Nord", None, None],
                                    ["6", "=Sud", "5", None]]
    assert _rows(gwb["members"])[1:] == [["5", "11", "member"], ["5", "12", "member"], ["5", "11", "leader"]]
    (lx,) = (tmp_path / "lists").glob("77-*.xlsx")
    rows = _rows(load_workbook(lx).active)
    assert rows[0][:4] == ["index", "line", "level1_col1_label", "level1_col1_code"]
    assert [r[1] or "" for r in rows[1:]] == list(dataset.lists[0].items)
    by_index = {r[0]: dict(zip(rows[0], r, strict=False)) for r in rows[1:]}
    assert by_index[2]["level2_col1_label"] == "Ville 1" and by_index[2]["level2_col2_label"] == "Extra"
    assert by_index[3]["line"] == "=1+1"


class _FewLinks(XlsxWriter):
    max_links = 2
    max_columns = 30


def test_link_cap_keeps_text_and_too_many_columns_is_a_clear_error(tmp_path):
    from exporter.errors import FormatError

    form = parse_form({"id": "9", "name": "links", "fields": {"p": {"type": "photo"}}})
    subs = [parse_submission(form, {"id": str(i), "fields": {"p": {"value": f"{i}.jpg"}}}) for i in range(4)]
    run_writer(_FewLinks, tmp_path, {}, [form, *subs])
    ws = load_workbook(tmp_path / "forms" / "9-links" / "submissions.xlsx")["submissions"]
    col = [c.value for c in ws[1]].index("p")
    cells = [ws.cell(r, col + 1) for r in range(2, 6)]
    assert [c.value for c in cells] == [f"media/{i}/{i}.jpg" for i in range(4)]
    assert [bool(c.hyperlink) for c in cells] == [True, True, False, False]

    wide = parse_form({"id": "10", "name": "wide", "fields": {f"f{i}": {"type": "text"} for i in range(10)}})
    with pytest.raises(FormatError, match="form 10.*34 columns"):
        run_writer(_FewLinks, tmp_path / "w", {}, [wide])
    assert not list((tmp_path / "w").rglob("*.xlsx")) and not list((tmp_path / "w").rglob("*.partial"))
