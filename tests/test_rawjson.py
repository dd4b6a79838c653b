"""The archive's lines read in C without decoding them (exporter._speedups: line_heads, block_text
given bytes) against the Python reading of the same lines: every line the C parser reads must give
what json.loads gives (ids, update times, table and media lines, byte for byte), and every line it
declines goes to the Python path. Lines are written in many JSON styles (escapes of every kind,
whitespace, duplicate keys, ASCII-only or not) so that the bytes differ where the documents do not."""
from __future__ import annotations

import json
import random
import zlib

import pytest

from exporter import fastjson
from exporter.model import SubmissionBlock, counted_bytes
from exporter.records import parse_form, submission_id, submission_update_time

from .conftest import IN_CI

try:
    from exporter import _speedups as C
except ImportError:
    if IN_CI:
        pytest.fail("the C module exporter._speedups is not built; CI requires it", pytrace=False)
    pytest.skip("the C module exporter._speedups is not built", allow_module_level=True)


# ------------------------------------------------------------------------------------------------
# a JSON writer of many styles
# ------------------------------------------------------------------------------------------------

def _ws(rnd: random.Random) -> str:
    return rnd.choice(["", "", "", " ", "\t", "  ", "\r", " \t "])


def _str(s: str, rnd: random.Random, style: float) -> str:
    out = ['"']
    for ch in s:
        cp = ord(ch)
        r = rnd.random()
        if ch == '"':
            out.append(rnd.choice(['\\"', "\\u0022"]))
        elif ch == "\\":
            out.append(rnd.choice(["\\\\", "\\u005c", "\\u005C"]))
        elif cp < 0x20:
            short = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}.get(ch)
            out.append(short if short and r < 0.6 else f"\\u{cp:04x}")
        elif ch == "/" and r < 0.3:
            out.append("\\/")
        elif r < style:  # escaped although it need not be
            if cp > 0xFFFF:
                cp -= 0x10000
                out.append(f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04X}")
            else:
                out.append(f"\\u{cp:04x}" if r < style / 2 else f"\\u{cp:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dump(v, rnd: random.Random, style: float = 0.1) -> str:
    """JSON of ``v`` in a random style (a dict's ``__dup__`` key holds members written before the
    real ones under the same names: duplicate keys, the last of which wins)."""
    if isinstance(v, dict):
        items = list(v.items())
        dups = dict(items).pop("__dup__", None) if "__dup__" in v else None
        items = [(k, x) for k, x in items if k != "__dup__"]
        if dups:
            items = list(dups.items()) + items
        body = ",".join(f"{_ws(rnd)}{_str(k, rnd, style)}{_ws(rnd)}:{_ws(rnd)}{dump(x, rnd, style)}{_ws(rnd)}" for k, x in items)
        return "{" + body + (_ws(rnd) if not items else "") + "}"
    if isinstance(v, list):
        return "[" + ",".join(_ws(rnd) + dump(x, rnd, style) + _ws(rnd) for x in v) + "]"
    if isinstance(v, str):
        return _str(v, rnd, style)
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return rnd.choice([repr(v), f"{v:e}", f"{v:E}"]) if v == v and abs(v) != float("inf") else json.dumps(v)
    return str(v)


def line(v, rnd: random.Random, style: float = 0.1) -> bytes:
    return (_ws(rnd) + dump(v, rnd, style) + _ws(rnd) + rnd.choice(["\n", "\r\n", ""])).encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------------------------------------
# line_heads
# ------------------------------------------------------------------------------------------------

def _want_head(raw: bytes, media: bool):
    if not raw.strip():
        return False
    doc = fastjson.loads(raw)
    if media:
        return str(doc.get("submission_id"))
    return submission_id(doc), submission_update_time(doc)


IDS = ["1", "700000", "é", 'q"uote', "back\\slash", "tab\tid", "日本", "🎉", "", 0, 7, -3, -0, 12345678901234567890123,
       1.5, 1e3, True, False, None, [], {}, "\x00"]
TIMES = ["2026-01-04 07:00:00", "", " ", "x", None, 5, True, [], "2026-01-04T07:00", "é"]


def _head_doc(rnd: random.Random, media: bool):
    if media:
        d = {"submission_id": rnd.choice(IDS), "name": "a.jpg", "row": rnd.choice([None, 0, 1.0])}
        if rnd.random() < 0.1:
            del d["submission_id"]
        return d
    d: dict = {}
    flat = rnd.random() < 0.3
    for k in ("id", "_id", "fields", "update_time", "_update_time", "create_time", "_create_time"):
        if rnd.random() < 0.6:
            d[k] = rnd.choice(TIMES) if "time" in k else rnd.choice(IDS) if "id" in k else rnd.choice([{}, None, "x", []])
    if flat:
        d.pop("fields", None)
    if rnd.random() < 0.2:
        d["__dup__"] = {k: rnd.choice(IDS) for k in ("id", "_id", "update_time") if rnd.random() < 0.5}
    return d


def _mutations(raw: bytes, rnd: random.Random) -> list[bytes]:
    cut = rnd.randint(0, len(raw))
    return [raw[:cut], raw[:cut] + b"\xff" + raw[cut:], raw[:cut] + b"\xed\xa0\x80" + raw[cut:],
            raw[:cut] + b"\xc0\xaf" + raw[cut:], raw[:cut] + b"\x01" + raw[cut:], raw + b"x", b"\xef\xbb\xbf" + raw,
            raw.replace(b":", b": NaN, \"z\":", 1), raw.replace(b'"', b"'", 1), b"[" * 70 + b"]" * 70,
            b'{"id": "1", "x": ' + b"[" * 63 + b"]" * 63 + b"}", b'{"id": "1", "x": ' + b"[" * 64 + b"]" * 64 + b"}",
            b'{"id": "\\ud800"}', b'{"id": "\\udc00\\ud800"}', b'{"id": "\\ud83c\\udf89"}', b'{"id": "\\x"}',
            b'{"id": 01}', b'{"id": 1.}', b'{"id": -}', b'{"id": 1e}', b'{"id": Infinity}', b'{"id": -Infinity}',
            b'{"id": tru}', b'{"id": "1",}', b'{"id": "1"} {}', b"\x0b", b" \x0c\r\n", b"\x0b{}"]


@pytest.mark.parametrize("media", [False, True], ids=["submissions", "media"])
def test_line_heads_read_what_json_loads_reads(media):
    rnd = random.Random(31 + media)
    lines = []
    for _ in range(3000):
        raw = line(_head_doc(rnd, media), rnd, style=rnd.choice([0, 0.05, 0.5]))
        lines.append(raw)
        if rnd.random() < 0.1:
            lines.extend(_mutations(raw, rnd))
    heads = C.line_heads(lines, media)
    read = declined = 0
    for raw, head in zip(lines, heads, strict=True):
        if head is None:  # declined: the Python path decodes it (and may fail on it)
            declined += 1
            continue
        if head is not False:
            read += 1
        assert head == _want_head(raw, media), raw
        assert head is False or isinstance(head, (str, tuple))
    assert read > 1000 and declined > 200


def test_line_heads_keep_texts_of_escaped_ids_apart():
    """Ids decoded from escapes are set aside while later lines are read (one arena per line)."""
    lines = [f'{{"id": "\\u00e9{i}", "update_time": "\\u0032{i}"}}\n'.encode() for i in range(500)]
    assert C.line_heads(lines, False) == [(f"é{i}", f"2{i}") for i in range(500)]
    long = b'{"id": "' + b"\\u0041" * 50000 + b'"}'
    assert C.line_heads([long, b'{"id": "x"}'], False) == [("A" * 50000, None), ("x", None)]


def test_line_heads_arguments():
    with pytest.raises(TypeError):
        C.line_heads([b"{}", "text"], False)
    with pytest.raises(TypeError):
        C.line_heads((b"{}",), False)
    assert C.line_heads([], True) == []


# ------------------------------------------------------------------------------------------------
# block_text of lines against decoded payloads and against the records' path
# ------------------------------------------------------------------------------------------------

def _form(n_wide: int = 0):
    fields = {
        "t": {"type": "text"}, "n": {"type": "number"}, "d": {"type": "date"}, "h": {"type": "time"},
        "dt": {"type": "datetime"}, "b": {"type": "checkbox"}, "g": {"type": "geoloc"}, "p": {"type": "photo"},
        "s": {"type": "signature"}, "l": {"type": "list"}, "sec": {"type": "section"}, "_under": {"type": "photo"},
        'q"uo\\te é': {"type": "text"}, "sélect": {"type": "select"},
        "sub": {"type": "subform", "fields": {"st": {"type": "text"}, "sd": {"type": "date"}, "sp": {"type": "photo"},
                                              "sb": {"type": "checkbox"}, "sh": {"type": "time"}, "sn": {"type": "number"},
                                              "sg": {"type": "geoloc"}}},
        "_sub2": {"type": "subform", "fields": {"x": {"type": "photo"}}},
    }
    fields.update({f"w{i:03d}": {"type": ("number", "text", "date", "checkbox", "geoloc")[i % 5]} for i in range(n_wide)})
    return parse_form({"id": "9", "name": "F", "fields": fields,
                       "options": {"checkbox_output_true_value": "Coché ✓", "checkbox_output_false_value": "Non"}})


TEXTS = [
    None, "", " ", "\xa0", "x", "Coché ✓", " Coché ✓\u3000", "Non", "non", "NON", "oui", "VRAI", "K", "\u212a", "1", "0",
    "12", "-0", "-0.0", "0.0000001", "0.000001", "00.5", "1.00", "12,5", " 1 000,25 ", "1e5", "NaN", "٣", "abc", "1_000",
    "99999999999999999999999999999", "123456789012345678901234567890.5", "0.12345678901", "3.14159265358979323",
    "2026-01-04", " 2026-01-04", "2026-01-04\xa0", "2026-02-30", "2024-02-29", "2023-02-29", "0000-01-01",
    "9999-12-31", "2026-1-04", "04/01/2026", "２０２６-01-04", "2026-W01-1",
    "2026-01-04T07:00", "2026-01-04 07:00", "2026-01-04 07:00:59", "2026-01-04T07:00:60", "2026-01-04 24:00",
    "2026-01-04 07:00:00+01:00", "2026-01-04 7:00:00", "2026-01-04X07:00:00", "2026-01-04 07:00:00.5",
    "07:00", "7:00", "07:00:30", "23:59:59", "24:00", "07:60", "07:00:00.1", "07h00", "\t07:00\n",
    "a.jpg", " a.jpg ", "a.jpg,b.jpg", "a.jpg, ,b.jpg,a.jpg", ",", "\x1ca.jpg\x1f", "\xa0a.jpg\u3000", "日本.jpg",
    "a b.jpg", 'q"uote.jpg', "back\\slash.jpg", "tab\t.jpg", "new\nline.jpg", "nul\x00.jpg", "\u2028.jpg", "🎉.jpg",
    "50.670807,3.084498", "50.67;3.08", " 5 ; 3 ", "5,3,7", "-0,0", "0.00001,1", "0.0001,1", "90,180", "-90,-180",
    "90.0000000000001,1", "90.00,180.000", "1.23456789012345,2", "1.234567890123456,2", "007.5,3", "5.,3", ".5,3",
    "+5,3", "1e1,2", "5", ",3", "5,", "inf,3", "nan,3", "91,0", "0,181", "x,y", "٣,1", "5,\xa03",
    "back\\slash", "tab\there", "cr\rx", "nul\x00x", "\\N", "é ü 日本 🎉", "x" * 3000,
]


#: texts each kind of field types in C (the first pass), by field name
GOOD = {
    "n": ["12", "-0", "0.5", "19.50", "", " ", "1.00", "-7.25"], "d": ["2026-01-04", "", " 2026-01-04", "2024-02-29"],
    "h": ["07:00", "23:59:59", "", "00:00"], "dt": ["2026-01-04 07:00", "2026-01-04T07:00:00", ""],
    "b": ["Coché ✓", "Non", "oui", "0", "", " non ", "VRAI", "　x　", "Coché ✓ "],
    "g": ["50.670807,3.084498", "-0,0", "", "5,3,7", " 5 ; 3 ", "90,180", "-45.000,170.5", "12.345678901234,1"],
    "p": ["a.jpg", "a.jpg, b.jpg", "日本.jpg", 'q"uote.jpg', "back\\slash.jpg", "", " ", "a.jpg,a.jpg", "\xa0é.jpg "],
}
GOOD.update({"sd": GOOD["d"], "sh": GOOD["h"], "sb": GOOD["b"], "sn": GOOD["n"], "sg": GOOD["g"], "s": GOOD["p"],
             "sp": GOOD["p"], "_under": GOOD["p"], "x": GOOD["p"]})


def _cell(rnd: random.Random, name: str = "", hostile: float = 1.0):
    if rnd.random() >= hostile:
        text = rnd.choice(GOOD.get(name) or TEXTS)
        r = rnd.random()
        if r < 0.4:
            return text
        cell = {"value": text, "type": "x", "hidden": False, "time": {str(text): "2026-01-04 07:00:00"}}
        if name in ("b", "sb") and r > 0.9:
            cell["boolean"] = rnd.choice([True, False])
        return cell if r < 0.97 else None
    r = rnd.random()
    text = rnd.choice(TEXTS)
    if r < 0.3:
        return text
    if r < 0.75:
        cell = {"value": text, "type": "x", "hidden": False, "time": {"a": "b"}}
        if rnd.random() < 0.15:
            cell["boolean"] = rnd.choice([True, False, "yes", 1, None])
        if rnd.random() < 0.05:
            del cell["value"]
        if rnd.random() < 0.05:
            cell["__dup__"] = {"value": rnd.choice(TEXTS)}
        return cell
    if r < 0.82:
        return {"value": rnd.choice([1, 2.5, True, False, None, [], {}, ["a"], {"value": "x"}, -0, 1e300])}
    if r < 0.9:
        return rnd.choice([1, 2.5, True, [], {"a": 1}, None])
    return None


def _rows(rnd: random.Random, kids: tuple[str, ...], hostile: float):
    rows = [{k: _cell(rnd, k, hostile) for k in kids if rnd.random() > 0.1} for _ in range(rnd.randint(0, 4))]
    r = rnd.random() * (1 if rnd.random() < hostile else 0.8)
    if r < 0.5:
        return {"value": rows, "type": "subform"}
    if r < 0.8:
        return rows
    if r < 0.98:
        return rnd.choice([None, "", {"value": None}, {"value": ""}])
    return rnd.choice(["x", [1], {"value": {"a": 1}}, {"type": "subform"}, 5, [rows[0] if rows else {}, "x"]])  # raises


META = ["2026-01-04 07:00:00", "2026-01-04T07:00", "2026-01-04 07:00:00+02:00", " 2026-01-04 07:00:00", "bad", "",
        "\xa0", None, "2026-13-01 00:00:00", 5]


def _payload(rnd: random.Random, i: int, wide: int, hostile: float = 1.0):
    names = ["t", "n", "d", "h", "dt", "b", "g", "p", "s", "l", "sec", "_under", 'q"uo\\te é', "sélect", "zzz"]
    names += [f"w{j:03d}" for j in range(0, wide, rnd.randint(1, 9))]
    kinds = {f"w{j:03d}": ("n", "t", "d", "b", "g")[j % 5] for j in range(wide)}
    cells = {name: _cell(rnd, kinds.get(name, name), hostile) for name in names if rnd.random() > 0.15}
    if rnd.random() > 0.1:
        cells["sub"] = _rows(rnd, ("st", "sd", "sp", "sb", "sh", "sn", "sg", "zz"), hostile)
    if rnd.random() > 0.5:
        cells["_sub2"] = _rows(rnd, ("x",), hostile)
    sid = rnd.choice([str(i), f"é{i}", f'q"{i}', f"{i}" * 40]) if rnd.random() < 0.3 else str(i)
    times = META if rnd.random() < hostile else META[:2] + [None, ""]
    meta = {k: rnd.choice(times) for k in ("create_time", "update_time", "end_time", "answer_time") if rnd.random() > 0.2}
    meta.update({k: rnd.choice(["u", None, 5, "é\t\\"] if rnd.random() < hostile else ["u", None, "é\t\\"])
                 for k in ("user_id", "user_name") if rnd.random() > 0.5})
    shape = rnd.random() * (1 if rnd.random() < hostile else 0.25)
    if shape < 0.25:  # flat
        doc = {"_id": sid, **{"_" + k: v for k, v in meta.items()}, **cells}
    else:
        doc = {"id": sid, **meta, "fields": cells}
        if shape < 0.27:
            doc["fields"] = rnd.choice([None, None, None, "x", []])
        elif shape < 0.3:
            del doc["fields"]
    if rnd.random() < 0.1:  # an earlier "fields" and "create_time": the later ones count
        doc["__dup__"] = {"create_time": "2000-01-01 00:00:00", **({"fields": {}} if "fields" in doc else {})}
    return doc


def _entries(rnd: random.Random, doc: dict) -> list:
    """Index entries for (some of) the media a submission names, and odd ones (objects all: the
    source refuses an index line that is not one, see tests/test_archive.py)."""
    from exporter.records import _conv_media

    cells = doc.get("fields") if "fields" in doc else doc
    cells = cells if isinstance(cells, dict) else {}
    sid = doc.get("id", doc.get("_id"))
    out = []

    def add(field, subform, row, value):
        text = value.get("value") if isinstance(value, dict) else value
        for name in _conv_media(text, None, None) or () if isinstance(text, str) else ():
            if rnd.random() < 0.85:
                e = {"submission_id": sid, "field": field, "subform": subform, "row": row, "name": name,
                     "path": "forms/9/media/x", "content_type": rnd.choice(["image/jpeg", "", None, "image/png"]),
                     "size": rnd.choice([632, 0, None, 10**17]), "sha256": rnd.choice(["ab" * 32, None, "é\\\t"])}
                r = rnd.random()
                if r < 0.03:
                    e["row"] = rnd.choice([1.0, True, "0", [0]]) if subform else rnd.choice([0, False, "x"])
                elif r < 0.06:
                    e["size"] = rnd.choice(["632", 1.5, -0, 10**20, True])
                elif r < 0.08:
                    e["content_type"] = rnd.choice([5, 0, True, [], {"a": 1}])
                elif r < 0.1:
                    e["sha256"] = rnd.choice([5, 1.5, True])
                elif r < 0.12:
                    e["subform"] = rnd.choice([5, True, []]) if subform else rnd.choice(["", "sub"])
                elif r < 0.14:
                    del e["content_type"]
                if rnd.random() < 0.1:  # an earlier entry of the same key: the last one counts
                    out.append({**e, "content_type": "old/one", "size": 1})
                out.append(e)

    for f in ("p", "s", "_under"):
        if f in cells:
            add(f, None, None, cells[f])
    for sf, kid in (("sub", "sp"), ("_sub2", "x")):
        rows = cells.get(sf)
        rows = rows.get("value") if isinstance(rows, dict) else rows
        for r, row in enumerate(rows if isinstance(rows, list) else []):
            if isinstance(row, dict) and kid in row:
                add(kid, sf, r, row[kid])
    if rnd.random() < 0.1:
        out.append(rnd.choice([{"field": "p", "path": "x"}, {"name": 5, "field": "p", "path": "x"}]))
    rnd.shuffle(out) if rnd.random() < 0.2 else None
    return out


class _Source:
    """ArchiveSource._expand without an archive (media are never opened here)."""

    def __init__(self):
        from connectors.archive import ArchiveSource

        self.src = ArchiveSource.__new__(ArchiveSource)
        self.src.reader = None

    def expand(self, block, positions):
        return self.src._expand(block, positions)


def _texts(plan, profile, block, fmt):
    """(sorted lines per part, sorted media lines, media counts) of a block, or the error's type."""
    from connectors.sql.loaders import copy_bytes
    from connectors.sql.schema import block_text

    try:
        got = block_text(plan, profile, block, fmt, copy_bytes)
    except Exception as e:  # noqa: BLE001 - compared between paths
        return type(e).__name__
    if got is None:
        return None
    spec, data, media = got
    return [sorted(d.splitlines()) for d in data], sorted(media.splitlines()), block.media_counts()


def _records_texts(plan, profile, block, fmt):
    from connectors.sql.loaders import copy_bytes
    from connectors.sql.schema import MEDIA_COLUMNS, records_rows, text_spec

    spec = text_spec(plan, profile, block.form.fields, fmt)
    try:
        rows, media = records_rows(plan, profile, block.records())
    except Exception as e:  # noqa: BLE001
        return type(e).__name__
    data = [sorted(copy_bytes(rows[p], spec.cols[i], fmt).splitlines()) if rows.get(p) else []
            for i, p in enumerate(spec.parts)]
    return data, sorted(copy_bytes(media, MEDIA_COLUMNS, fmt).splitlines() if media else []), \
        (len(media), sum(counted_bytes(m["size"]) for m in media))


@pytest.mark.parametrize("dialect,wide", [("postgresql", 0), ("mysql", 0), ("access", 300), ("postgresql", 40)])
def test_block_text_of_lines_is_what_decoded_payloads_give(dialect, wide):
    from connectors.sql.capabilities import profile_for
    from connectors.sql.loaders import MYSQL_TEXT, PG_TEXT
    from connectors.sql.planner import NamePlanner
    from connectors.sql.schema import FIXED_NAMES, plan_form

    profile = profile_for(dialect)
    fmt = MYSQL_TEXT if dialect == "mysql" else PG_TEXT
    form = _form(wide)
    plan = plan_form(form, [], NamePlanner(profile), profile, {x.lower() for x in FIXED_NAMES}, "t")
    if dialect == "access":
        assert len(plan.main.parts) > 1  # continuation tables
    src = _Source()
    C.raw_stats(True)
    rnd = random.Random(zlib.crc32(f"{dialect} {wide}".encode()))
    blocks = compared = 0
    for b in range(150 if not wide else 60):
        hostile = rnd.choice([0.0, 0.0, 0.01, 0.05, 0.3])
        docs = [_payload(rnd, b * 100 + i, wide, hostile) for i in range(rnd.randint(1, 10))]
        if rnd.random() < 0.05 and len(docs) > 1:
            docs[-1] = dict(docs[0])  # the same submission twice: the records' path
        style = rnd.choice([0, 0.02, 0.3])
        lines = [line(d, rnd, style) for d in docs]
        decoded = [fastjson.loads(x) for x in lines]
        sids = [submission_id(d) for d in decoded]
        if not all(sids):
            continue
        ents = [_entries(rnd, d) if rnd.random() < 0.8 else None for d in decoded]
        ent_lines = [None if e is None else [line(x, rnd, style) for x in e] for e in ents]
        ent_decoded = [None if e is None else [fastjson.loads(x) for x in e] for e in ent_lines]
        raw = SubmissionBlock(form, lines, sids, ent_lines, src.expand)
        dec = SubmissionBlock(form, decoded, sids, ent_decoded, src.expand)
        got, want = _texts(plan, profile, raw, fmt), _texts(plan, profile, dec, fmt)
        if isinstance(got, str) or isinstance(want, str):  # a block with broken submissions fails either
            assert isinstance(got, str) and isinstance(want, str), (got, want)  # way (which one is named may differ)
            continue
        assert got == want, (docs, ent_lines)
        if isinstance(got, tuple):
            assert got == _records_texts(plan, profile, raw, fmt)
            compared += len(docs)
        blocks += 1
    assert blocks > 30 and compared > 150
    first, second, left = C.raw_stats()
    assert first > 60 and second > 20 and left > 20, (first, second, left)  # every way was taken


def test_block_text_of_lines_takes_both_passes():
    """With the interpreter released first, then holding it for what needs Python's converters,
    or else left to the records' path."""
    from connectors.sql.capabilities import profile_for
    from connectors.sql.loaders import PG_TEXT
    from connectors.sql.planner import NamePlanner
    from connectors.sql.schema import ID_LEN, KEY_LEN, plan_form, text_spec
    from exporter.records import checkbox_texts

    profile = profile_for("postgresql")
    form = _form()
    plan = plan_form(form, [], NamePlanner(profile), profile, set(), "t")
    spec = text_spec(plan, profile, form.fields, PG_TEXT)

    def run(doc) -> tuple:
        raw = json.dumps(doc).encode()
        C.raw_stats(True)
        C.block_text(spec.c_spec, [raw], [doc["id"]], [None], checkbox_texts(form),
                     ("9", KEY_LEN, ID_LEN, "application/octet-stream"))
        return C.raw_stats()

    assert run({"id": "1", "fields": {"n": "12.5", "d": "2026-01-04", "g": "45.5,5", "b": "Non"}}) == (1, 0, 0)
    assert run({"id": "1", "fields": {"n": "12,5"}}) == (0, 1, 0)  # typed by Python's converter
    assert run({"id": "1", "fields": {"d": "not a date"}}) == (0, 1, 0)  # kept aside in unparsed_text
    assert run({"id": "1", "update_time": "2026-01-04 07:00:00+02:00"}) == (0, 1, 0)  # an offset: kept aside
    assert run({"id": "1", "fields": {"n": 12.5}}) == (0, 0, 1)  # a number: the records' path
    assert run({"id": "1", "fields": "x"}) == (0, 0, 1)
