"""The C module exporter._speedups against the pure-Python reference it replaces: same bytes out,
same exceptions, for every kind of value a row can hold."""
from __future__ import annotations

import datetime as dt
import enum
import os
import random
import subprocess
import sys
from decimal import Decimal

import pytest

from connectors.sql import loaders
from connectors.sql.loaders import MYSQL_TEXT, PG_TEXT, UnloadableValue
from exporter import fastjson

from .conftest import IN_CI

# imported directly: these tests run even where EXPORTER_PURE_PYTHON=1 keeps the exporter off it
try:
    from exporter import _speedups as C
except ImportError:
    if IN_CI:
        pytest.fail("the C module exporter._speedups is not built (pip install needs a C compiler); "
                    "CI requires it", pytrace=False)
    pytest.skip("the C module exporter._speedups is not built", allow_module_level=True)


def _setup() -> None:
    from exporter import records
    from exporter.model import MediaRef, SubformRow

    C.setup_parse(SubformRow, MediaRef, records._text_of, Decimal)  # what importing records does with C on


_setup()


def copy_c(rows, cols, fmt):
    return C.copy_block(rows, cols, fmt.code, fmt.slow, Decimal)


class MyStr(str):
    pass


class MyInt(int):
    pass


class Color(enum.IntEnum):
    RED = 1


class MyDateTime(dt.datetime):
    pass


PARIS = dt.timezone(dt.timedelta(hours=1), "CET")

VALUES = [
    None, "", "plain", "tab\there", "new\nline", "cr\rx", "back\\slash", "nul\x00x", "\\N", "é ü 日本 🎉",
    "\t\n\r\\\x00" * 3, "x" * 70000, MyStr("sub\tclass"),
    True, False, 0, -1, 2**63 - 1, -(2**63), 2**63, -(2**200), MyInt(7), Color.RED,
    0.0, -0.0, 1.5, 1e300, 1e-300, 123456789.123456789, float("nan"), float("inf"), float("-inf"),
    Decimal("19.50"), Decimal("-0"), Decimal("1E+5"), Decimal("0.000001"), Decimal("NaN"), Decimal("-Infinity"),
    Decimal("123456789012345678901234567890.123"),
    dt.date(2026, 1, 4), dt.date(1, 1, 1), dt.date(9999, 12, 31),
    dt.time(7, 0), dt.time(23, 59, 59, 999999), dt.time(0, 0, 0, 5), dt.time(7, 0, tzinfo=PARIS),
    dt.datetime(2026, 1, 4, 7, 0), dt.datetime(5, 2, 3, 4, 5, 6, 7), dt.datetime(2026, 1, 4, 7, 0, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 4, 7, 0, 1, 250000, tzinfo=PARIS), MyDateTime(2026, 1, 4, 7, 0),
    b"\x00\xffbytes", bytearray(b"ab"),
]


def both(rows, cols, fmt):
    """(C result or exception type, Python result or exception type)."""
    out = []
    for fn in (copy_c, loaders._copy_bytes_py):
        try:
            out.append(fn(rows, cols, fmt))
        except (UnloadableValue, UnicodeEncodeError, TypeError) as e:
            out.append(type(e))
    return out


@pytest.mark.parametrize("fmt", [PG_TEXT, MYSQL_TEXT], ids=["copy", "loaddata"])
@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{type(v).__name__}:{str(v)[:20]!r}")
def test_each_value_like_python(fmt, value):
    rows = [{"k": "1", "v": value}, {"k": "2", "v": value, "other": "ignored"}]
    c, py = both(rows, ["k", "v"], fmt)
    assert c == py
    if isinstance(c, bytes):
        assert c.count(b"\n") == 2


@pytest.mark.parametrize("fmt", [PG_TEXT, MYSQL_TEXT], ids=["copy", "loaddata"])
def test_random_rows_like_python(fmt):
    rnd = random.Random(20261122)
    loadable = [v for v in VALUES if not (fmt is MYSQL_TEXT and isinstance(v, (bytes, bytearray)))
                and not (fmt is MYSQL_TEXT and isinstance(v, float) and not v == v)]
    loadable = [v for v in loadable if not (fmt is MYSQL_TEXT and isinstance(v, (float, Decimal))
                                            and not Decimal(str(v)).is_finite())]
    cols = [f"c{i}" for i in range(7)]
    for _ in range(50):
        rows = []
        for _ in range(rnd.randint(0, 40)):
            row = {c: rnd.choice(loadable) for c in cols if rnd.random() > 0.1}  # missing keys -> NULL
            rows.append(row)
        c, py = both(rows, cols, fmt)
        assert c == py
        assert isinstance(c, bytes)


def test_edge_shapes():
    for fmt in (PG_TEXT, MYSQL_TEXT):
        assert both([], ["a"], fmt) == [b"", b""]
        assert both([{"a": 1}, {}], [], fmt) == [b"\n\n", b"\n\n"]
        assert both([{"a": "x"}], ["a"], fmt) == [b"x\n", b"x\n"]
    # lone surrogates cannot be encoded, either way
    assert both([{"a": "\ud800"}], ["a"], PG_TEXT) == [UnicodeEncodeError, UnicodeEncodeError]
    with pytest.raises(TypeError):
        C.copy_block([1], ["a"], 0, str, Decimal)
    with pytest.raises(ValueError):
        C.copy_block([], ["a"], 2, str, Decimal)
    with pytest.raises(TypeError, match="not str"):
        C.copy_block([{"a": object()}], ["a"], 0, lambda v: 5, Decimal)


def test_unloadable_value_raises_for_loaddata():
    with pytest.raises(UnloadableValue):
        copy_c([{"a": b"x"}], ["a"], MYSQL_TEXT)
    with pytest.raises(UnloadableValue):
        copy_c([{"a": float("inf")}], ["a"], MYSQL_TEXT)


def test_digit_run_like_python():
    rnd = random.Random(7)
    cases = [b"", b"1" * 18, b"1" * 19, b"x" + b"9" * 25 + b"x", b'{"a": 12345678901234567890}', "٣".encode() * 30]
    for _ in range(300):
        cases.append(bytes(rnd.choice(b"0123456789 a,") for _ in range(rnd.randint(0, 60))))
    for data in cases:
        for n in (0, 1, 5, 19):
            assert C.digit_run(data, n) == fastjson._digit_run_py(data, n), (data, n)
    assert C.digit_run(memoryview(b"12345"), 5) and C.digit_run(bytearray(b"12345"), 5)


def test_pure_python_switch():
    """EXPORTER_PURE_PYTHON=1 makes the exporter leave the C module alone."""
    code = ("from exporter import speedups; from connectors.sql import loaders; "
            "print(speedups.available(), loaders.copy_bytes is loaders._copy_bytes_py)")
    base = {k: v for k, v in os.environ.items() if k != "EXPORTER_PURE_PYTHON"}
    for env, want in (({"EXPORTER_PURE_PYTHON": "1"}, "False True"), ({"EXPORTER_PURE_PYTHON": "0"}, "True False")):
        out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                             check=True).stdout.strip()
        assert out == want
        version = subprocess.run([sys.executable, "-m", "exporter", "--version"], env={**base, **env},
                                 capture_output=True, text=True, check=True).stdout
        assert ("C speedups built" in version) == (want == "True False")


# ------------------------------------------------------------------------------------------------
# parse_fields: the field loop of parse_submission
# ------------------------------------------------------------------------------------------------

def _parse_form(flat_names: bool = False):
    from exporter.records import parse_form

    fields = {
        "t": {"type": "text"}, "n": {"type": "number"}, "d": {"type": "date"}, "h": {"type": "time"},
        "dt": {"type": "datetime"}, "b": {"type": "checkbox"}, "g": {"type": "geoloc"}, "p": {"type": "photo"},
        "s": {"type": "signature"}, "l": {"type": "list"}, "sec": {"type": "section"},
        "_under": {"type": "text"},
        "sub": {"type": "subform", "fields": {"st": {"type": "text"}, "sd": {"type": "date"}, "sp": {"type": "photo"},
                                              "sb": {"type": "checkbox"}, "sh": {"type": "time"}}},
    }
    return parse_form({"id": "9", "name": "F", "fields": fields,
                       "options": {"checkbox_output_true_value": "Oui", "checkbox_output_false_value": "Non"}})


TEXTS = [
    None, "", " ", "x", "Oui", "Non", "oui", "1", "0", "12", "12,5", " 1 000,25 ", "1e5", "NaN", "٣", "abc",
    "2026-01-04", " 2026-01-04", "2026-01-04 ", "2026-02-30", "0000-01-01", "2026-1-04", "04/01/2026", "２０２６-01-04",
    "2026-01-04T07:00", "2026-01-04 07:00", "2026-01-04 07:00:59", "2026-01-04T07:00:60", "2026-01-04 24:00",
    "2026-01-04 07:00:00+01:00", "2026-01-04 7:00:00", "2026-01-04X07:00:00", "2026-01-04 07:00:00.5",
    "07:00", "7:00", "07:00:30", "24:00", "07:60", "07:00:00.1", "07h00", "\t07:00\n",
    "a.jpg", " a.jpg ", "a.jpg,b.jpg", "a.jpg, ,b.jpg", ",", "\x1ca.jpg\x1f", "\xa0a.jpg\xa0", "日本.jpg", "a b.jpg",
    "50.67,3.08", "50.67;3.08", "91,0", "x,y",
]


def _cell(rnd: random.Random, subform: bool = False):
    r = rnd.random()
    text = rnd.choice(TEXTS)
    if r < 0.35:
        return text
    if r < 0.7:
        cell = {"value": text, "type": "x"}
        if rnd.random() < 0.1:
            cell["boolean"] = rnd.choice([True, False, "yes"])
        if rnd.random() < 0.05:
            del cell["value"]
        return cell
    if r < 0.8:
        return {"value": rnd.choice([1, 2.5, True, False, [], {}, ["a"], {"value": "x"}, MyStr("s")])}
    if r < 0.9 and not subform:
        return rnd.choice([1, 2.5, True, [], {"a": 1}, MyStr("m.jpg")])
    return None


def _sub_value(rnd: random.Random):
    r = rnd.random()
    rows = [{k: _cell(rnd, True) for k in ("st", "sd", "sp", "sb", "sh") if rnd.random() > 0.1}
            for _ in range(rnd.randint(0, 4))]
    if r < 0.5:
        return {"value": rows, "type": "subform"}
    if r < 0.7:
        return rows
    return rnd.choice([None, "", "x", {"type": "subform"}, {"value": None}, {"value": ""}, [1], [rows[0] if rows else {}, "x"],
                       {"value": {"a": 1}}, 5])


@pytest.mark.parametrize("flat", [False, True], ids=["nested", "flat"])
def test_parse_fields_like_python(flat):
    from exporter import records
    from exporter.errors import BadAnswerError

    form = _parse_form()
    plan = records._parse_plan(form.fields)
    bools = ("Oui", "Non")
    rnd = random.Random(11 + flat)
    fallbacks = done = 0
    for i in range(3000):
        cells = {name: _cell(rnd) for name in ("t", "n", "d", "h", "dt", "b", "g", "p", "s", "l", "_under") if rnd.random() > 0.1}
        if rnd.random() > 0.1:
            cells["sub"] = _sub_value(rnd)
        try:
            want = repr(records._parse_fields(plan, cells, flat, bools, "9", str(i)))
        except (BadAnswerError, TypeError, ValueError) as e:
            want = type(e)
        try:
            got = C.parse_fields(plan.c_top, cells, flat, bools, "9", str(i))
        except (BadAnswerError, TypeError, ValueError) as e:
            got = type(e)
        if got is None:  # left to the Python loop
            fallbacks += 1
            continue
        done += 1
        assert (repr(got) if not isinstance(got, type) else got) == want, cells
    assert done > 1000 and fallbacks > 100  # both ways were taken


def test_parse_submission_same_with_and_without_c(monkeypatch):
    """Whole submissions of the sample account parse to the same records either way."""
    from connectors.archive import ArchiveSource
    from exporter import records

    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "sample_data"
    monkeypatch.setattr(records, "_speedups", C)
    with_c = [repr(r) for r in ArchiveSource(root).records({}) if r.kind == "submission"]
    monkeypatch.setattr(records, "_speedups", None)
    without = [repr(r) for r in ArchiveSource(root).records({}) if r.kind == "submission"]
    assert with_c == without and len(with_c) > 10


# ------------------------------------------------------------------------------------------------
# submission_rows: typed submission -> SQL row dicts
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect", ["postgresql", "access", "mysql"])
def test_submission_rows_like_python(dialect):
    """Every kind of cell (typed or kept aside in unparsed_text), metadata times (good, bad, with an
    offset), sub-form rows, and a form wide enough for Access to split into continuation tables."""
    from connectors.sql import schema
    from connectors.sql.capabilities import profile_for
    from connectors.sql.planner import NamePlanner
    from exporter.records import parse_form, parse_submission

    fields = dict(_parse_form().raw["fields"])
    fields.update({f"w{i:03d}": {"type": ("number", "text", "date", "checkbox", "geoloc")[i % 5]} for i in range(300)})
    form = parse_form({"id": "9", "name": "Wide", "fields": fields,
                       "options": {"checkbox_output_true_value": "Oui", "checkbox_output_false_value": "Non"}})
    profile = profile_for(dialect)
    plan = schema.plan_form(form, [], NamePlanner(profile), profile, {x.lower() for x in schema.FIXED_NAMES}, "t")
    if dialect == "access":
        assert len(plan.main.parts) > 1
    comp = schema._compiled(plan, profile)
    rnd = random.Random(5)
    numbers = ["1", "-0", "12,5", "1e400", "123456789012345678901234567890", "0.123456789012345", "x", " ", None]
    times = ["2026-01-04 07:00:00", "2026-01-04T07:00:00+02:00", "bad", "", None, "2026-01-04 07:00:00"]
    kept = 0
    for i in range(400):
        cells = {name: _cell(rnd) for name in ("t", "n", "d", "h", "dt", "b", "g", "p", "s", "l") if rnd.random() > 0.2}
        for k in ("n", "w001", "w006"):
            cells[k] = {"value": rnd.choice(numbers)}
        for j in range(0, 300, rnd.randint(1, 40)):
            cells[f"w{j:03d}"] = rnd.choice(TEXTS + numbers)
        cells["sub"] = {"value": [{k: _cell(rnd, True) for k in ("st", "sd", "sp", "sb", "sh")}
                                  for _ in range(rnd.randint(0, 3))]}
        payload = {"id": str(i), "fields": cells, **{k: rnd.choice(times) for k in ("create_time", "update_time", "end_time")},
                   "user_id": rnd.choice(["1", None])}
        sub = parse_submission(form, payload)
        want = repr(schema._submission_rows(comp, sub.id, sub))
        got = repr(C.submission_rows(comp.c_spec, sub.id, sub.meta, sub.values, sub.text, sub.subforms))
        assert got == want
        kept += "'unparsed_text': '{" in want
    assert kept > 100  # texts that did not type were kept aside, both ways
