"""``erase_xml``: a form's XML document filtered line by line, as the XML writer lays it out."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from exporter.connectors.remote.erase_xml import filter_xml, read_submissions
from exporter.formats.xml_writer import NAMESPACE, XmlStream

from exporter.errors import SinkError


def document(subs: list[tuple[str, dict, str | None]]) -> str:
    buf = io.StringIO()
    x = XmlStream(buf)
    x.declaration()
    x.start("form", {"xmlns": NAMESPACE, "id": "1"})
    for sid, meta, extra in subs:
        x.start("submission", {"id": sid})
        for k, v in meta.items():
            x.element("meta", {"name": k}, v)
        if extra:
            x.element("extra", {}, extra)
        x.start("subform", {"name": "rows"})
        x.start("row", {"index": 0})
        x.element("text", {"name": "t"}, f"answer of {sid}\nsecond line </submission>")
        x.end("row")
        x.end("subform")
        x.end("submission")
    x.end("form")
    return buf.getvalue()


def test_filter_and_read(tmp_path):
    src, dst = tmp_path / "s.xml", tmp_path / "d.xml"
    doc = document([
        ("1", {"user_id": "7", "user_name": "Ann\x01 Lee", "login": "ann\nlee", "email": ""}, None),
        ("2", {"user_id": "8", "update_user_id": "7", "update_user_name": "Ann Lee"},
         '{"other":1,"update_user_ref1":"R-7"}'),
        ('3"&<', {"user_id": "9"}, None),
    ])
    src.write_text(doc, "utf-8", newline="")
    subs = read_submissions(src, "s.xml")
    assert subs["1"] == ({"user_id": "7", "user_name": "Ann\x01 Lee", "login": "ann\nlee", "email": ""}, {}, 1)
    assert subs["2"][1] == {"other": 1, "update_user_ref1": "R-7"} and '3"&<' in subs
    filter_xml(src, dst, "s.xml", {"1"}, {"2": ["update_user_id"]})
    out = dst.read_text("utf-8")
    expected = document([("2", {"user_id": "8", "update_user_id": "7"}, '{"other":1}'),
                         ('3"&<', {"user_id": "9"}, None)])
    assert out == expected  # what the writer gives without them, byte for byte
    # the person's metadata on several lines, escaped, or empty (self-closed) goes too
    filter_xml(src, dst, "s.xml", set(), {"1": ["user_id"]})
    got = read_submissions(dst, "d.xml")
    assert got["1"][0] == {"user_id": "7"} and got["2"] == subs["2"]
    ET.parse(dst)


def test_a_document_not_laid_out_by_the_writer_is_refused(tmp_path):
    src = tmp_path / "s.xml"
    src.write_text('<?xml version="1.0"?><form xmlns="urn:exporter:forms:1"><submission id="1"/></form>', "utf-8")
    with pytest.raises(SinkError, match="not laid out as the XML writer writes it"):
        filter_xml(src, tmp_path / "d.xml", "s.xml", {"1"}, {})
    cut = tmp_path / "cut.xml"
    cut.write_text(document([("1", {"user_id": "7"}, None)]).rsplit("  </submission>", 1)[0], "utf-8")
    with pytest.raises(SinkError, match="ends inside a submission"):
        filter_xml(cut, tmp_path / "d.xml", "cut.xml", {"1"}, {})
