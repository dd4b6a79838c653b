"""A form's ``submissions.xml`` (``formats/xml_writer.py``) without some submissions, streamed, for
``exporter forget`` on a remote.

The XML writer puts one element per line, indented two spaces a level, and escapes every ``<`` of
a text or attribute: a line beginning ``  <submission `` or ``  </submission>`` is always the
start or end of a submission, and a line beginning ``    <meta `` or ``    <extra`` one of its
metadata. So the file is filtered line by line, in bounded memory: the submissions that go lose
their element (with their sub-form rows); in those that stay, the ``meta`` elements naming the
person are left out and their ``extra`` written again without the person's references, as the
writer leaves out a metadata that is None. The declaration, the namespaces and every other line
keep their bytes: the result is what the writer gives without them. The new file is then parsed
(``iterparse``, elements cleared as they end) to be sure it is still well-formed before it is
published. A file not laid out this way is refused, in one line.
"""
from __future__ import annotations

import html
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from exporter.formats.xml_writer import NAMESPACE, XmlStream, decode

from exporter.errors import SinkError
from exporter.model import extra_json
from exporter.privacy import personal

_START = re.compile(r'  <submission id="([^"]*)"(?: escaped="true")?>\n')
_META = re.compile(r'    <meta name="([^"]*)"( escaped="true")?/?>')
_EXTRA = re.compile(r'    <extra( escaped="true")?>(.*)</extra>\n')
_NS = f"{{{NAMESPACE}}}"


def _attr(raw: str, escaped: bool) -> str:
    text = html.unescape(raw)
    return decode(text) if escaped else text


def _check_head(fh, rel: str) -> None:
    head = fh.readline(), fh.readline()
    if head[0] != '<?xml version="1.0" encoding="UTF-8"?>\n' or not head[1].startswith(f'<form xmlns="{NAMESPACE}"'):
        raise SinkError(f"{rel} is not laid out as the XML writer writes it; export it again without the person")


def read_submissions(path: Path, rel: str) -> dict[str, tuple[dict, dict, int]]:
    """sid -> (metadata, extra, sub-form rows) of every submission of the file (streamed)."""
    with open(path, encoding="utf-8", newline="") as fh:
        _check_head(fh, rel)
    out: dict[str, tuple[dict, dict, int]] = {}
    meta: dict = {}
    extra: dict = {}
    rows = 0
    for event, el in ET.iterparse(path, events=("start", "end")):
        tag = el.tag.removeprefix(_NS)
        if event == "start":
            if tag == "submission":
                meta, extra, rows = {}, {}, 0
            continue
        escaped = el.get("escaped") == "true"
        if tag == "meta":
            text = el.text or ""
            meta[decode(el.get("name", "")) if escaped else el.get("name", "")] = decode(text) if escaped else text
        elif tag == "extra":
            text = decode(el.text or "") if escaped else (el.text or "")
            try:
                extra = json.loads(text) if text.startswith("{") else {}
            except ValueError:
                extra = {}
        elif tag == "row":
            rows += 1
        elif tag == "submission":
            sid = el.get("id", "")
            out[decode(sid) if escaped else sid] = (meta, extra, rows)
            el.clear()
    return out


def filter_xml(src: Path, dst: Path, rel: str, gone: set[str], kept: dict[str, list[str]]) -> None:
    """``src`` without the submissions in ``gone``, and without the metadata naming the person in
    those of ``kept`` (sid -> roles), written to ``dst``."""
    with open(src, encoding="utf-8", newline="") as fin, open(dst, "w", encoding="utf-8", newline="") as fout:
        _check_head(fin, rel)
        fin.seek(0)
        roles: list[str] | None = None  # the roles to blank in the submission being copied
        skipping = False  # in a submission that goes
        in_meta: bool | None = None  # in a multi-line meta element: whether it is kept
        for line in fin:
            if skipping:
                skipping = line != "  </submission>\n"
                continue
            if in_meta is not None:
                if in_meta:
                    fout.write(line)
                if line.endswith("</meta>\n"):
                    in_meta = None
                continue
            m = _START.fullmatch(line)
            if m:
                sid = _attr(m.group(1), 'escaped="true"' in line)
                if sid in gone:
                    skipping = True
                    continue
                roles = kept.get(sid)
            elif line == "  </submission>\n":
                roles = None
            elif roles:
                line = _blank_line(line, roles)
                if line.startswith("    <meta ") and not line.endswith("</meta>\n") and not line.endswith("/>\n"):
                    in_meta = _keep_meta(line, roles)
                    if not in_meta:
                        continue
            fout.write(line)
        if skipping or in_meta is not None:
            raise SinkError(f"{rel} ends inside a submission (cut short?); export it again without the person")
    _check_well_formed(dst, rel, gone)


def _keep_meta(line: str, roles: list[str]) -> bool:
    m = _META.match(line)
    if m is None:
        return True
    name = _attr(m.group(1), bool(m.group(2)))
    return not any(name in personal.ROLES[r][0] for r in roles)


def _blank_line(line: str, roles: list[str]) -> str:
    """One line of a submission that stays, without what names the person ("" when it all goes)."""
    if line.startswith("    <meta ") and line.endswith(("</meta>\n", "/>\n")):
        return line if _keep_meta(line, roles) else ""
    m = _EXTRA.fullmatch(line)
    if m is None:
        return line
    escaped = bool(m.group(1))
    text = html.unescape(m.group(2))
    try:
        extra = json.loads(decode(text) if escaped else text)
    except ValueError:
        return line
    if not isinstance(extra, dict):
        return line
    prefixes = [personal.ROLES[r][1] for r in roles]
    extra = {k: v for k, v in extra.items() if not any(personal.is_submission_ref(k, p) for p in prefixes)}
    new = extra_json(extra)
    if new is None:
        return ""
    out = io.StringIO()
    x = XmlStream(out)  # the writer's own element, at the writer's depth (form > submission)
    x.stack = ["form", "submission"]
    x.element("extra", {}, new)
    return out.getvalue()


def _check_well_formed(path: Path, rel: str, gone: set[str]) -> None:
    """Parse the new file (streamed): well-formed, and none of ``gone`` left."""
    try:
        for _event, el in ET.iterparse(path, events=("end",)):
            if el.tag == f"{_NS}submission":
                sid = el.get("id", "")
                if (decode(sid) if el.get("escaped") == "true" else sid) in gone:
                    raise SinkError(f"{rel}: submission {sid} is still there after filtering")
                el.clear()
    except ET.ParseError as e:
        raise SinkError(f"{rel} could not be filtered into a well-formed document ({e}); "
                        "export it again without the person") from None

