"""XML: one well-formed document per form, streamed, valid against the published schema
``formats/exporter-forms.xsd`` (namespace ``urn:exporter:forms:1``; a copy is written at the root
of the output directory and referenced by ``xsi:schemaLocation``).

Files (relative to the output directory)::

    <aggregate dir>/submissions.xml                  <form> with <fields> and one <submission> each
    exporter-forms.xsd                               the schema

Each value is an element named after its kind (``number``, ``date``, ``boolean``, ``geoloc``,
``media``...) carrying the field name in ``@name``; ``untyped`` keeps the original text of a value
that did not type, ``null`` marks a missing one, ``@text`` the original text when it differs from
the canonical content. Characters XML 1.0 forbids are never dropped: the element gets
``escaped="true"`` and, in it only, ``\\`` is written ``\\\\`` and each forbidden character
``\\uXXXX``. Carriage returns are written as ``&#13;`` so parsers keep them.

The document is written as the records arrive (no DOM in memory).
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from importlib import resources
from typing import IO

from exporter.formats.base import FormatLimits, FormStreamWriter, OutputDir, submission_form
from exporter.formats.tabular import decimal_text, media_links, relative

from exporter.model import SUBFORM, Account, FieldDef, Form, GeoPoint, Submission, Value, extra_json

NAMESPACE = "urn:exporter:forms:1"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_FILE = "exporter-forms.xsd"
FORMAT_VERSION = "1"

_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TEXT_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;",
                           "\n": "&#10;", "\t": "&#9;"})


def schema_text() -> str:
    """The published XSD, read from the package."""
    return resources.files("exporter.formats").joinpath(SCHEMA_FILE).read_text("utf-8")


def _encode(s: str) -> str:
    return _FORBIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", s.replace("\\", "\\\\"))


def decode(s: str) -> str:
    """Inverse of the escaping used in ``escaped="true"`` elements."""
    return re.sub(r"\\(\\|u[0-9a-fA-F]{4})", lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)), s)


class XmlStream:
    """A minimal streaming XML writer: elements are written as they are opened and closed, with
    indentation; every string goes through the forbidden-character rule of the schema."""

    def __init__(self, fh: IO[str]):
        self.fh = fh
        self.stack: list[str] = []

    @staticmethod
    def _prepare(attrs: dict, text: str | None) -> tuple[dict, str | None]:
        strings = [v for v in attrs.values() if isinstance(v, str)] + ([text] if text else [])
        if not any(_FORBIDDEN.search(s) for s in strings):
            return attrs, text
        attrs = {k: (_encode(v) if isinstance(v, str) else v) for k, v in attrs.items()}
        attrs["escaped"] = "true"
        return attrs, (_encode(text) if text else text)

    @staticmethod
    def _attrs(attrs: dict) -> str:
        return "".join(f' {k}="{str(v).translate(_ATTR_ESC)}"' for k, v in attrs.items() if v is not None)

    def declaration(self) -> None:
        self.fh.write('<?xml version="1.0" encoding="UTF-8"?>\n')

    def start(self, tag: str, attrs: dict | None = None) -> None:
        attrs, _ = self._prepare(attrs or {}, None)
        self.fh.write(f"{'  ' * len(self.stack)}<{tag}{self._attrs(attrs)}>\n")
        self.stack.append(tag)

    def end(self, tag: str) -> None:
        opened = self.stack.pop()
        assert opened == tag, (opened, tag)
        self.fh.write(f"{'  ' * len(self.stack)}</{tag}>\n")

    def element(self, tag: str, attrs: dict | None = None, text: str | None = None) -> None:
        attrs, text = self._prepare(attrs or {}, text)
        pad = "  " * len(self.stack)
        if text is None or text == "":
            self.fh.write(f"{pad}<{tag}{self._attrs(attrs)}/>\n")
        else:
            self.fh.write(f"{pad}<{tag}{self._attrs(attrs)}>{text.translate(_TEXT_ESC)}</{tag}>\n")


_CANONICAL_KINDS = {"number", "date", "time", "datetime", "boolean", "geoloc", "media"}


class XmlWriter(FormStreamWriter):
    key = "xml"
    description = "XML: one streamed document per form, valid against the published exporter-forms.xsd"
    limits = FormatLimits()

    def __init__(self, out: OutputDir, options: dict):
        self.out = out
        self.options = options
        self._account: Account | None = None
        self._form: Form | None = None
        self._xml: XmlStream | None = None
        self._rel = ""
        self._schema_written = False

    def _on_account(self, account: Account) -> None:  # dispatched by FormStreamWriter.write
        self._account = account

    # ---- documents ---------------------------------------------------------------------
    def _start_form(self, form: Form) -> None:
        self._form = form
        if not self.aggregates:  # every XML file is an aggregate
            return
        if not self._schema_written:
            with self.out.atomic(SCHEMA_FILE, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(schema_text())
            self._schema_written = True
        self._form = form
        agg = self.out.aggregate_dir(form)
        self._rel = f"{agg}/submissions.xml"
        fh = self.out.pending(self._rel, "w", encoding="utf-8", newline="\n")
        x = self._xml = XmlStream(fh)
        x.declaration()
        acc = self._account
        x.start("form", {
            "xmlns": NAMESPACE, "xmlns:xsi": XSI,
            "xsi:schemaLocation": f"{NAMESPACE} {relative(SCHEMA_FILE, agg)}",
            "format_version": FORMAT_VERSION, "id": form.id, "name": form.name, "class": form.class_,
            "update_time": form.update_time,
            "exported_at": acc.exported_at if acc else None, "source": acc.source if acc else None,
        })
        x.start("fields")
        for f in form.fields:
            self._field(x, f)
        x.end("fields")

    def _field(self, x: XmlStream, f: FieldDef) -> None:
        attrs = {"name": f.name, "type": f.type, "kind": f.kind, "caption": f.caption or None,
                 "subtype": f.subtype, "required": "true" if f.required else None, "list_id": f.list_id}
        if f.children:
            x.start("field", attrs)
            for c in f.children:
                self._field(x, c)
            x.end("field")
        else:
            x.element("field", attrs)

    def _finish_form(self) -> None:
        if self._xml is not None:
            self._xml.end("form")
            self.out.finish(self._rel)
        self._xml, self._form = None, None

    def _value(self, x: XmlStream, form: Form, sub: Submission, f: FieldDef, value: Value, text: str | None,
               base: str, subform: str | None = None, row: int | None = None) -> None:
        name = f.name
        if value is None or (isinstance(value, Decimal) and not value.is_finite()):
            if text is None:
                x.element("null", {"name": name, "kind": f.kind})
            elif f.kind in _CANONICAL_KINDS:
                x.element("untyped", {"name": name, "kind": f.kind}, text)
            else:
                x.element("choice" if f.kind == "choice" else "text", {"name": name}, text)
            return
        if isinstance(value, bool):
            content = "true" if value else "false"
            tag = "boolean"
        elif isinstance(value, Decimal):
            content, tag = decimal_text(value), "number"
        elif isinstance(value, dt.datetime):
            content, tag = value.isoformat(), "datetime"
        elif isinstance(value, dt.date):
            content, tag = value.isoformat(), "date"
        elif isinstance(value, dt.time):
            content, tag = value.isoformat(), "time"
        elif isinstance(value, GeoPoint):
            content = f"{value.latitude},{value.longitude}"
            x.element("geoloc", {"name": name, "lat": repr(value.latitude), "lon": repr(value.longitude),
                                 "text": text if text != content else None}, content)
            return
        elif isinstance(value, tuple):
            links = media_links(self.out, form, sub, name, value, base, subform, row)
            attrs = {"name": name, "text": text if text != ", ".join(value) else None}
            if not links:
                x.element("media", attrs)
                return
            x.start("media", attrs)
            for n, p in links:
                x.element("file", {"name": n, "path": p})
            x.end("media")
            return
        else:
            x.element("choice" if f.kind == "choice" else "text", {"name": name}, str(value))
            return
        x.element(tag, {"name": name, "text": text if text != content else None}, content)

    def _write_submission(self, sub: Submission) -> None:
        form = submission_form(self._form, sub)
        x = self._xml
        if x is None:
            return
        base = self.out.aggregate_dir(form)
        x.start("submission", {"id": sub.id})
        for k, v in sub.meta.items():
            if v is not None:
                x.element("meta", {"name": k}, v)
        extra = extra_json(sub.extra)
        if extra is not None:
            x.element("extra", {}, extra)
        for f in form.fields:
            if f.kind == SUBFORM:
                x.start("subform", {"name": f.name})
                for row in sub.subforms.get(f.name, []):
                    x.start("row", {"index": row.index})
                    for c in f.children:
                        if c.has_value:
                            self._value(x, form, sub, c, row.values.get(c.name), row.text.get(c.name), base,
                                        f.name, row.index)
                    x.end("row")
                x.end("subform")
            elif f.has_value:
                self._value(x, form, sub, f, sub.values.get(f.name), sub.text.get(f.name), base)
        x.end("submission")

