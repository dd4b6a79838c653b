"""Vendor documents, opt-in (issue 16): each submission's standard PDF (``--vendor-pdf``), its custom
Word/Excel exports (``--vendor-exports``), and each form's layout pictures (``fixed_image`` fields),
read from the fake service over real HTTP as the vendor documents the routes, in every destination."""
from __future__ import annotations

import pytest
from exporter.connectors.kizeo.client import attachment_filename

from exporter.model import PDF, Document, DocumentRef, blob_bytes


@pytest.mark.parametrize("header, want", [
    ('attachment; filename="Visite 1.pdf"', "Visite 1.pdf"),
    ("attachment; filename=plain.pdf", "plain.pdf"),
    # RFC 5987: filename* wins over the ASCII fallback, whatever their order
    ("attachment; filename=\"rates.pdf\"; filename*=UTF-8''%E2%82%AC%20rates%20%C3%A9t%C3%A9.pdf", "€ rates été.pdf"),
    ("attachment; filename*=UTF-8''%E2%82%AC.pdf; filename=\"fallback.pdf\"", "€.pdf"),
    ("attachment; filename*=iso-8859-1'fr'%A3%20prix.pdf", "£ prix.pdf"),
    ("attachment; filename*0*=UTF-8''%C3%A9t%C3%A9; filename*1=.docx", "été.docx"),
    ('attachment; filename="Rapport \\"X\\".docx"', 'Rapport "X".docx'),
    # hostile names come back as given: whoever stores them makes them safe
    ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "../../etc/passwd"),
    ("attachment; filename=CON", "CON"),
    ("attachment; filename*=UTF-8''%FF.pdf", "\ufffd.pdf"),
    ("inline", None), ('attachment; filename=""', None), (None, None), ("", None),
])
def test_the_file_name_of_a_content_disposition(header, want):
    assert attachment_filename(header) == want


def test_a_document_is_spooled_and_weighs_its_bytes():
    data = b"%PDF-1.4 " + bytes(range(256)) * 8000  # 2 MB: past the in-memory part of the spool
    doc = Document.spooled(DocumentRef("1", "2", PDF), "application/pdf", iter([data[:10], data[10:]]), name="x.pdf")
    assert (doc.size, doc.name, doc.kind) == (len(data), "x.pdf", "document")
    assert b"".join(doc.iter_bytes()) == data and b"".join(doc.iter_bytes()) == data
    assert blob_bytes(doc) == len(data) and doc._spool._rolled
