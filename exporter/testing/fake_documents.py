"""The documents the fake Kizeo service makes (``fake_server``): a submission's standard PDF, its
custom Word/Excel exports, and a form's layout pictures, as the vendor's routes serve them::

    GET /forms/{f}/exports                              the form definition's ``exports`` templates
    GET /forms/{f}/data/{d}/pdf                         application/pdf
    GET /forms/{f}/data/{d}/exports/{exportId}          docx (type word) or xlsx (type excel)
    GET /forms/{f}/data/{d}/form_pictures/{name}        image/png, ``name`` a fixed_image field

Bytes are deterministic: the same submission (same ``update_time``) gives the same bytes, an edited
one other bytes; ``size`` (the server's ``document_bytes``) makes every document that big, else
each is a few kilobytes. Names follow the service's habit of naming a document after its form and
record (``<form name> <record number>.pdf``), so a hostile form name gives a hostile file name;
each goes in ``Content-Disposition`` as RFC 6266 wants it: an ASCII ``filename`` fallback and the
UTF-8 ``filename*`` (RFC 5987).

Chosen where the documentation is silent: an export template without a file (``json.file``
empty) cannot be produced: 501, as a service answers for an export it cannot make; an unknown or
deleted template is 501 like any unknown id; a picture name that is no fixed_image field of the
form is 404 like a missing media.
"""
from __future__ import annotations

import binascii
import hashlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class UnknownDocument(LookupError):
    """No such document (answered 404)."""


class CannotProduce(Exception):
    """The service cannot make this document (answered 501)."""


@dataclass
class FakeDocument:
    name: str
    content_type: str
    size: int
    chunks: Iterator[bytes]

    def headers(self) -> dict[str, str]:
        return {"Content-Disposition": content_disposition(self.name)}


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact UTF-8 one (RFC 6266, RFC 5987)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"


def templates(form: dict) -> list[dict]:
    """The form's custom export templates (``exports`` of its definition, as ``GET /forms/{f}``
    serves it)."""
    exports = form.get("exports") or []
    return [e for e in exports if isinstance(e, dict)] if isinstance(exports, list) else []


def document(form: dict, sub: dict, what: list[str], size: int = 0) -> FakeDocument:
    """The document ``what`` (``["pdf"]``, ``["exports", id]``, ``["form_pictures", name]``) of
    the nested submission ``sub`` of ``form``."""
    fid, sid = str(form.get("id")), str(sub.get("id"))
    record = str(sub.get("record_number") or sid)
    version = str(sub.get("update_time") or sub.get("create_time") or "")
    if what == ["pdf"]:
        seed = f"pdf/{fid}/{sid}/{version}"
        return FakeDocument(f"{form.get('name') or fid} {record}.pdf", "application/pdf", *_body(
            seed, size, b"%PDF-1.4\n%fake standard PDF\n", b"\n%%EOF\n"))
    if len(what) == 2 and what[0] == "exports":
        t = next((t for t in templates(form) if str(t.get("id")) == what[1] and not t.get("deleted")), None)
        if t is None:
            raise CannotProduce(f"unknown export id {what[1]} for form {fid}")
        spec = t.get("json")
        spec = spec if isinstance(spec, dict) else {}
        if not spec.get("file"):
            raise CannotProduce(f"export {what[1]} has no template file: it cannot be produced")
        names = t.get("computedNames")
        names = names if isinstance(names, dict) else {}
        base = names.get("word") or t.get("name") or spec.get("exportName") or f"export {what[1]}"
        excel = str(t.get("type")) == "excel"
        return FakeDocument(f"{base} {record}{'.xlsx' if excel else '.docx'}", XLSX if excel else DOCX, *_body(
            f"export/{fid}/{sid}/{version}/{what[1]}", size, b"PK\x03\x04", b""))
    if len(what) == 2 and what[0] == "form_pictures":
        if what[1] not in _fixed_images(form.get("fields")):
            raise UnknownDocument(f"no layout picture {what[1]} in form {fid}")
        data = _png(hashlib.sha256(f"picture/{fid}/{what[1]}".encode()).digest())
        return FakeDocument(f"{what[1]}.png", "image/png", len(data), iter([data]))
    raise UnknownDocument("no such document")


def _body(seed: str, size: int, head: bytes, tail: bytes) -> tuple[int, Iterator[bytes]]:
    """(size, chunks): ``head``, deterministic filler, ``tail``; ``size`` bytes in all (a few
    kilobytes from the seed when ``size`` is 0), generated as it is sent."""
    digest = hashlib.sha256(seed.encode()).digest()
    if size <= 0:
        size = 2000 + digest[0] * 16
    size = max(size, len(head) + len(tail))

    def chunks() -> Iterator[bytes]:
        yield head
        left, i = size - len(head) - len(tail), 0
        while left > 0:
            block = hashlib.sha256(digest + i.to_bytes(8, "big")).digest() * 2048  # 64 KiB
            yield block[:left]
            left -= min(left, len(block))
            i += 1
        yield tail

    return size, chunks()


def _fixed_images(fields) -> set[str]:
    names: set[str] = set()
    if not isinstance(fields, dict):
        return names
    for name, spec in fields.items():
        if isinstance(spec, dict):
            if str(spec.get("type")) == "fixed_image":
                names.add(str(name))
            names |= _fixed_images(spec.get("fields"))
    return names


def _png(seed: bytes) -> bytes:
    """An 8x8 PNG of one colour taken from ``seed``."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", binascii.crc32(kind + data))

    rows = b"".join(b"\x00" + seed[:3] * 8 for _ in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
