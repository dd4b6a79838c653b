import datetime as dt
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import pytest
from exporter.formats.base import get_writer_class
from exporter.formats.xml_writer import NAMESPACE, XmlWriter
from lxml import etree

from exporter.model import GeoPoint
from exporter.records import parse_form, parse_submission
from tests.formats.conftest import (
    BAD_FIELD,
    CONTROL,
    FORM_ID,
    LONE_SURROGATE,
    LONG_TEXT,
    MULTILINE,
    abandon_writer,
    run_writer,
)

XSD = Path(__file__).resolve().parents[2] / "formats" / "exporter-forms.xsd"
NS = {"x": NAMESPACE}
Q = f"{{{NAMESPACE}}}"


def _unescape(text: str) -> str:
    """Independent decoder for escaped="true" elements (see the XSD's documentation)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1] == "\\":
            out.append("\\")
            i += 2
        elif text[i] == "\\" and text[i + 1] == "u":
            out.append(chr(int(text[i + 2:i + 6], 16)))
            i += 6
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _text(el) -> str:
    t = el.text or ""
    return _unescape(t) if el.get("escaped") == "true" else t


def _name(el) -> str:
    n = el.get("name")
    return _unescape(n) if el.get("escaped") == "true" else n


def _doc(root: Path):
    (d,) = [p for p in (root / "forms").iterdir() if p.name.startswith(FORM_ID)]
    return d / "submissions.xml"


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(XSD)))


def test_registry_and_packaged_schema():
    from exporter.formats.xml_writer import schema_text

    assert get_writer_class("xml") is XmlWriter
    assert schema_text() == XSD.read_text("utf-8")


def test_documents_validate_against_the_xsd(dataset, tmp_path, schema):
    run_writer(XmlWriter, tmp_path, {}, dataset.records())
    docs = list((tmp_path / "forms").rglob("submissions.xml"))
    assert len(docs) == 2
    for p in docs:
        doc = etree.parse(str(p))
        assert schema.validate(doc), schema.error_log
        ET.parse(p)  # a second, independent parser agrees it is well-formed
        loc = doc.getroot().get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation").split()[1]
        assert (p.parent / loc).resolve() == (tmp_path / "exporter-forms.xsd").resolve()
    assert (tmp_path / "exporter-forms.xsd").read_text("utf-8") == XSD.read_text("utf-8")


def test_values_round_trip(dataset, tmp_path):
    run_writer(XmlWriter, tmp_path, {}, dataset.records())
    root = etree.parse(str(_doc(tmp_path))).getroot()
    assert root.get("id") == FORM_ID and root.get("name") == dataset.form.name
    fields = [_name(f) for f in root.find("x:fields", NS)]
    assert fields == [f.name for f in dataset.form.fields]
    subs = root.findall("x:submission", NS)
    assert [s.get("id") for s in subs] == [s.id for s in dataset.submissions]
    for el, sub in zip(subs, dataset.submissions, strict=False):
        meta = {m.get("name"): _text(m) for m in el.findall("x:meta", NS)}
        assert meta == {k: v for k, v in sub.meta.items() if v is not None}
        values = {_name(v): v for v in el if v.tag not in (Q + "meta", Q + "subform")}
        assert list(values) == [f.name for f in dataset.form.value_fields()]
        for f in dataset.form.value_fields():
            v, t, node = sub.values[f.name], sub.text[f.name], values[f.name]
            tag = node.tag[len(Q):]
            if v is None:
                if t is None:
                    assert tag == "null" and node.get("kind") == f.kind
                else:
                    assert tag == "untyped" and _text(node) == t and node.get("kind") == f.kind
            elif isinstance(v, bool):
                assert tag == "boolean" and node.text == ("true" if v else "false")
                assert (node.get("text") or node.text) == t or t.lower() in ("1", "0", "true", "false")
            elif isinstance(v, Decimal):
                assert tag == "number" and Decimal(node.text) == v
            elif isinstance(v, dt.datetime):
                assert tag == "datetime" and dt.datetime.fromisoformat(node.text) == v
            elif isinstance(v, dt.date):
                assert tag == "date" and dt.date.fromisoformat(node.text) == v
            elif isinstance(v, dt.time):
                assert tag == "time" and dt.time.fromisoformat(node.text) == v
            elif isinstance(v, GeoPoint):
                assert tag == "geoloc" and float(node.get("lat")) == v.latitude and float(node.get("lon")) == v.longitude
            elif isinstance(v, tuple):
                assert tag == "media" and [fl.get("name") for fl in node] == list(v)
                for fl in node:
                    target = (_doc(tmp_path).parent / fl.get("path")).resolve()
                    assert target.parent == (_doc(tmp_path).parent / "media" / sub.id).resolve()
            else:
                assert tag in ("text", "choice") and _text(node) == v, f.name
            if node.get("text") is not None:  # original text kept where it differs
                assert node.get("text") == t


def test_hostile_text(dataset, tmp_path):
    run_writer(XmlWriter, tmp_path, {}, dataset.records())
    root = etree.parse(str(_doc(tmp_path))).getroot()
    by_id = {s.get("id"): s for s in root.findall("x:submission", NS)}

    def val(sid, name):
        (node,) = [v for v in by_id[sid] if v.get("name") is not None and _name(v) == name and v.tag != Q + "meta"]
        return node

    assert _text(val("1001", "comment")) == MULTILINE  # CR survives (written as &#13;)
    assert _text(val("1002", "comment")) == LONG_TEXT
    ctl = val("1002", BAD_FIELD)
    assert ctl.get("escaped") == "true" and "\\u0007" in ctl.text  # visible, flagged, not dropped
    assert _text(ctl) == CONTROL
    assert _text(val("1003", BAD_FIELD)) == LONE_SURROGATE
    assert val("1003", "amount").text == "12345678901234567890.123456789"
    assert val("1001", "done").get("text") == "Oui"
    assert val("1002", "name").text == dataset.submissions[1].values["name"]  # RTL + emoji verbatim


def test_subform_rows(dataset, tmp_path):
    run_writer(XmlWriter, tmp_path, {}, dataset.records())
    root = etree.parse(str(_doc(tmp_path))).getroot()
    s1 = root.find("x:submission[@id='1001']", NS)
    lines = s1.find("x:subform[@name='lines']", NS)
    rows = lines.findall("x:row", NS)
    assert [r.get("index") for r in rows] == ["0", "1"]
    r0 = {v.get("name"): v for v in rows[0]}
    assert r0["qty"].text == "12.50" and r0["when"].text == "2024-05-02" and r0["when"].get("text") == "02/05/2024"
    assert r0["pic"][0].get("path") == "media/1001/row0.jpg"
    r1 = {v.get("name"): v for v in rows[1]}
    assert r1["qty"].tag == Q + "untyped" and r1["qty"].text == "not a number"
    assert "deco" not in r0  # layout fields hold no value
    assert s1.find("x:subform[@name='empty_sub']", NS) is not None


def test_escaped_names_and_schema(tmp_path, schema):
    form = parse_form({"id": "7", "name": "ctl\x01name", "fields": {"a\x02b\\c": {"type": "number"}}})
    sub = parse_submission(form, {"id": "s\x03", "fields": {"a\x02b\\c": {"value": "x\\y\x04"}}})
    run_writer(XmlWriter, tmp_path, {}, [form, sub])
    (p,) = (tmp_path / "forms").rglob("submissions.xml")
    doc = etree.parse(str(p))
    assert schema.validate(doc), schema.error_log
    root = doc.getroot()
    assert root.get("escaped") == "true" and _unescape(root.get("name")) == "ctl\x01name"
    s = root.find("x:submission", NS)
    assert _unescape(s.get("id")) == "s\x03"
    (u,) = s.findall("x:untyped", NS)
    assert _name(u) == "a\x02b\\c" and _text(u) == "x\\y\x04"


def test_failed_run_leaves_nothing(dataset, tmp_path):
    abandon_writer(XmlWriter, tmp_path, {}, list(dataset.records())[:12])
    assert not list(tmp_path.rglob("*.xml")) and not list(tmp_path.rglob("*.partial"))


def test_streams_without_building_a_tree(tmp_path, schema):
    """10,000 submissions: the document is written as they come (checked: valid, complete)."""
    form = parse_form({"id": "8", "name": "big", "fields": {"n": {"type": "number"}, "t": {"type": "text"}}})

    def records():
        yield form
        for i in range(10_000):
            yield parse_submission(form, {"id": str(i), "fields": {"n": {"value": str(i)}, "t": {"value": "é" * 50}}})

    run_writer(XmlWriter, tmp_path, {}, records())
    (p,) = (tmp_path / "forms").rglob("submissions.xml")
    n = 0
    for _, el in etree.iterparse(str(p), tag=Q + "submission"):
        n += 1
        el.clear()
    assert n == 10_000
    assert schema.validate(etree.parse(str(p)))
    assert re.search(r'<number name="n">9999</number>', p.read_text("utf-8"))
