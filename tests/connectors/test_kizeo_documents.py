"""Vendor documents, opt-in (issue 16): each submission's standard PDF (``--vendor-pdf``), its custom
Word/Excel exports (``--vendor-exports``), and each form's layout pictures (``fixed_image`` fields),
read from the fake service over real HTTP as the vendor documents the routes, in every destination."""
from __future__ import annotations

import hashlib
import logging
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from exporter.connectors.archive.reader import ArchiveReader
from exporter.connectors.archive.sink import ArchiveSink
from exporter.connectors.archive.verify import verify
from exporter.connectors.files import FilesSink
from exporter.connectors.kizeo import WebSource
from exporter.connectors.kizeo.client import attachment_filename

from exporter.cli import cli
from exporter.model import PDF, Account, Checkpoint, Document, DocumentRef, Media, blob_bytes
from exporter.naming import safe_filename
from exporter.pipeline import batches, new_run_id, run
from exporter.records import parse_form, parse_submission
from exporter.sinks import RunContext
from exporter.testing.fake_faults import Faults
from tests.connectors.conftest_kizeo import TOKEN, make_client, serve


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


# ---- against the fake service ------------------------------------------------------------------

#: a form whose name is hostile (the service names its documents after it), with layout pictures
#: (one in a sub-form) and custom exports: two live, one deleted, one the service cannot produce
FORM = {
    "id": "81", "name": "Contrôle / ../../etc", "update_time": "2026-06-01 00:00:00",
    "fields": {
        "logo": {"caption": "Logo", "type": "fixed_image"},
        "titre": {"caption": "Titre", "type": "text"},
        "plan": {"caption": "Plan d'accès", "type": "fixed_image"},
        "photo": {"caption": "Photo", "type": "photo"},
        "lignes": {"caption": "Lignes", "type": "subform", "fields": {
            "picto": {"type": "fixed_image"}, "x": {"type": "text"}}},
    },
    "exports": [
        {"form_id": "81", "name": "Rapport", "type": "word", "id": "11", "is_default": True, "deleted": False,
         "json": {"exportName": "Rapport", "file": "rapport.docx", "showInvisible": False},
         "computedNames": {"word": "Rapport été", "pdf": "Rapport été (PDF)"}},
        {"form_id": "81", "name": "Tableau", "type": "excel", "id": "12", "is_default": False, "deleted": False,
         "json": {"exportName": "Tableau", "file": "tableau.xlsx"}, "computedNames": {"word": "Tableau"}},
        {"form_id": "81", "name": "Ancien", "type": "word", "id": "13", "deleted": True,
         "json": {"exportName": "Ancien", "file": "ancien.docx"}},
        {"form_id": "81", "name": "Cassé", "type": "word", "id": "14", "deleted": False,
         "json": {"exportName": "Cassé", "file": ""}},  # no template file: the service cannot make it
    ],
}
SIDS = ("1", "2", "3", "4")
LAYOUT = ("logo", "plan", "picto")
PHOTO = b"\xff\xd8\xff" + b"photo" * 300


def _submission(sid: str, update: str, titre: str) -> dict:
    return {"id": sid, "record_number": sid, "form_id": "81", "user_id": "7",
            "create_time": f"2026-06-0{sid} 08:00:00", "update_time": update,
            "fields": {"titre": {"value": titre}, "photo": {"value": f"p{sid}.jpg" if sid == "1" else ""},
                       "lignes": {"value": [{"x": {"value": "a"}}]}}}


def _build(path: Path) -> Path:
    sink = ArchiveSink(path)
    sink.open(RunContext(run_id=new_run_id(), source="fixture"))
    sink.write([Account(source="fixture", raw={"source": "fixture"})])
    form = parse_form(FORM)
    sink.write([form])
    for sid in SIDS:
        sub = parse_submission(form, _submission(sid, f"2026-06-0{sid} 09:00:00", f"Titre {sid}"))
        recs = [sub] + [Media.spooled(ref, "image/jpeg", iter([PHOTO])) for ref in sub.media]
        sink.write(recs)
    sink.write([Checkpoint("81", "2026-06-04 09:00:00")])
    sink.commit()
    sink.close(True)
    return path


@pytest.fixture(scope="module")
def account(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("docs") / "arch")


def _cli(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), env={"KZ_TOKEN": TOKEN}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def _served(srv, path: str) -> tuple[bytes, str | None]:
    with make_client(srv) as c:
        d = c.download(path)
        return b"".join(d.chunks), d.filename


def _form_dir(root: Path) -> Path:
    (d,) = (root / "forms").iterdir()
    return d


def test_the_client_reads_the_routes_the_vendor_documents(account):
    with serve(account) as srv, make_client(srv) as c:
        assert [e["id"] for e in c.exports("81")] == ["11", "12", "13", "14"]
        d = c.download(c.pdf_path("81", "1"))
        data = b"".join(d.chunks)
        # the service names it in UTF-8 (filename*), with an ASCII fallback (filename)
        assert d.filename == "Contrôle / ../../etc 1.pdf" and d.content_type == "application/pdf"
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        d = c.download(c.export_path("81", "1", "12"))
        assert d.filename == "Tableau 1.xlsx" and d.content_type.endswith("spreadsheetml.sheet")
        assert b"".join(d.chunks) != data
        d = c.download(c.form_picture_path("81", "1", "logo"))
        assert d.content_type == "image/png" and b"".join(d.chunks).startswith(b"\x89PNG")
        # the same request twice: the same bytes (deterministic)
        assert _served(srv, c.pdf_path("81", "1"))[0] == data


def test_every_document_is_stored_under_its_submission_and_in_the_archive(account, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    out, arch = tmp_path / "out", tmp_path / "arch"
    with serve(account) as srv:
        _cli("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--vendor-pdf", "--vendor-exports",
             "--to", str(out), "--to", f"archive://{arch}")
        want = {}
        for sid in SIDS:
            for folder, path in (("pdf", f"/forms/81/data/{sid}/pdf"), ("export-11", f"/forms/81/data/{sid}/exports/11"),
                                 ("export-12", f"/forms/81/data/{sid}/exports/12")):
                want[(sid, folder)] = _served(srv, path)
        pictures = {name: _served(srv, f"/forms/81/data/1/form_pictures/{name}") for name in LAYOUT}
        assert srv.request_count("/forms/81/data/*/exports/13") == 0  # a deleted template is not asked for
        assert srv.request_count("/forms/81/data/*/form_pictures/*") == len(LAYOUT) + len(LAYOUT)  # once (+ ours)
    # the one the service cannot make: a warning with its id, the run goes on
    assert "custom export 14 of submission 1" in caplog.text
    form_dir = _form_dir(out)
    for (sid, folder), (data, name) in want.items():
        files = list((form_dir / "documents" / sid / folder).iterdir())
        assert [f.name for f in files] == [safe_filename(name)] and files[0].read_bytes() == data
        assert files[0].resolve().parent == (form_dir / "documents" / sid / folder).resolve()  # no way out
    assert not list(form_dir.glob("documents/*/export-14")) and not list(form_dir.glob("documents/*/export-13"))
    for name, (data, served_name) in pictures.items():
        (f,) = (form_dir / "form_pictures" / name).iterdir()
        assert f.read_bytes() == data and f.name == safe_filename(served_name)
    # the archive: every file, one index line each, verified
    assert verify(arch) == []
    r = ArchiveReader(arch)
    lines = list(r.jsonl("forms/81/documents.jsonl"))
    assert r.manifest["counts"]["documents"] == len(want) + len(LAYOUT) == len(lines)
    files = r.files()
    for line in lines:
        assert files[line["path"]] == {"sha256": line["sha256"], "size": line["size"]}
        key = (line["submission_id"], line["kind"], line["key"])
        if line["kind"] == "form_picture":
            assert line["submission_id"] is None and pictures[line["key"]][1] == line["name"]
        else:
            folder = "pdf" if line["kind"] == "pdf" else f"export-{line['key']}"
            assert want[(line["submission_id"], folder)][1] == line["name"], key
            assert hashlib.sha256(want[(line["submission_id"], folder)][0]).hexdigest() == line["sha256"]
    r.close()


def test_without_the_flags_no_document_is_asked_for_but_layout_pictures_are(account, tmp_path):
    with serve(account) as srv:
        _cli("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--to", str(tmp_path / "out"))
        assert srv.request_count("/forms/81/data/*/pdf") == srv.request_count("/forms/81/exports") == 0
        assert srv.request_count("/forms/81/data/*/exports/*") == 0
    form_dir = _form_dir(tmp_path / "out")
    assert not (form_dir / "documents").exists()
    assert sorted(p.name for p in (form_dir / "form_pictures").iterdir()) == sorted(LAYOUT)


def test_a_document_the_service_cannot_produce_is_a_warning_with_its_id(account, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    faults = Faults(fail_paths={"/forms/81/data/2/pdf": 404, "/forms/81/data/3/pdf": 504,
                                "/forms/81/data/4/pdf": 500,  # the service's PDF maker failed on that one
                                "/forms/81/exports": 501, "/forms/81/data/1/form_pictures/plan": 501})
    with serve(account, faults) as srv:
        src = WebSource(make_client(srv), vendor_pdf=True, vendor_exports=True)
        sink = FilesSink(tmp_path / "out")
        summary = run(src, [sink], RunContext(run_id=new_run_id(), source=src.description))
        assert srv.request_count("/forms/81/data/3/pdf") == 6  # a timeout is retried first
        assert srv.request_count("/forms/81/data/4/pdf") == 1  # a failure of the service's own: not retried
    assert summary.status == "ok" and summary.counts["document"] == 1 + 2  # pdf 1, logo and picto
    for what in ("standard PDF of submission 2", "standard PDF of submission 3", "standard PDF of submission 4",
                 "lists no custom exports",
                 "layout picture of field 'plan'"):
        assert what in caplog.text
    form_dir = _form_dir(tmp_path / "out")
    assert sorted(p.name for p in (form_dir / "documents").iterdir()) == ["1"]


def test_an_incremental_run_refetches_only_the_documents_of_an_edited_submission(account, tmp_path):
    out = tmp_path / "out"

    def export(srv, *more):
        _cli("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--vendor-pdf", "--vendor-exports",
             "--incremental", "cursor", "--to", str(out), *more)

    with serve(account) as srv:
        export(srv)
        assert srv.request_count("/forms/81/data/*/pdf") == 4
        before = {p: p.read_bytes() for p in _form_dir(out).glob("documents/*/*/*")}
        edited = _submission("2", "2026-07-01 10:00:00", "Titre 2 modifié")
        srv.put_submission("81", edited)
        srv.requests.clear()
        export(srv)
        asked = sorted(p for _, p in srv.requests if "/pdf" in p or "/exports/" in p)
        assert asked == ["/forms/81/data/2/exports/11", "/forms/81/data/2/exports/12",
                         "/forms/81/data/2/exports/14", "/forms/81/data/2/pdf"]
        new_pdf = _served(srv, "/forms/81/data/2/pdf")[0]
        srv.requests.clear()
        export(srv)  # nothing changed: nothing asked
        assert not [p for _, p in srv.requests if "/pdf" in p or "/exports/" in p]
    after = {p: p.read_bytes() for p in _form_dir(out).glob("documents/*/*/*")}
    assert after.keys() == before.keys()
    changed = sorted(p.relative_to(_form_dir(out)).parts[1] for p in after if after[p] != before[p])
    assert changed == ["2", "2", "2"]
    assert next(p for p in after if p.parts[-3:-1] == ("2", "pdf")).read_bytes() == new_pdf


def test_unread_mode_asks_documents_of_the_unread_submissions_only(account, tmp_path):
    with serve(account) as srv:
        args = ("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--vendor-pdf", "--incremental", "unread",
                "--action", "docs", "--to", str(tmp_path / "out"))
        _cli(*args)
        assert srv.request_count("/forms/81/data/*/pdf") == 4
        srv.put_submission("81", _submission("3", "2026-07-02 10:00:00", "Titre 3 modifié"))
        srv.requests.clear()
        _cli(*args)
        assert [p for _, p in srv.requests if p.endswith("/pdf")] == ["/forms/81/data/3/pdf"]


def test_documents_never_start_a_batch():
    form = parse_form(FORM)
    sub = parse_submission(form, _submission("1", "2026-06-01 09:00:00", "t"))
    doc = Document.spooled(DocumentRef("81", "1", PDF), "application/pdf", iter([b"x" * 100]), name="a.pdf")
    stream = [form, sub, doc, doc, sub, doc, Checkpoint("81", None)]
    got = list(batches(stream, batch_size=1, batch_bytes=10))
    assert [[r.kind for r in b] for b in got] == [["form", "submission", "document", "document"],
                                                  ["submission", "document", "checkpoint"]]


def test_documents_stream_and_memory_stays_flat(account, tmp_path):
    """10 submissions with a 3 MB PDF and two 3 MB exports each (90 MB): what Python holds at its
    peak stays far below one form's documents."""
    with serve(account, document_bytes=3 << 20) as srv:
        for sid in range(5, 11):
            srv.put_submission("81", _submission(str(sid), f"2026-06-0{min(sid, 9)} 10:00:00", f"n{sid}"))
        tracemalloc.start()
        try:
            src = WebSource(make_client(srv), vendor_pdf=True, vendor_exports=True)
            summary = run(src, [FilesSink(tmp_path / "out")], RunContext(run_id=new_run_id(), source="x"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert summary.counts["document"] == 10 * 3 + len(LAYOUT) and summary.media_bytes > 90e6
    assert peak < 30e6, peak
    sizes = {p.stat().st_size for p in _form_dir(tmp_path / "out").glob("documents/*/*/*")}
    assert sizes == {3 << 20}


def test_the_archive_round_trips_documents_and_deletions_seen(account, tmp_path):
    first, second = tmp_path / "a1", tmp_path / "a2"
    # submission 4: listed, then gone when asked (deleted during the export): a deletion seen
    with serve(account, Faults(fail_paths={"/forms/81/data/4": 501})) as srv:
        _cli("archive", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--vendor-pdf", "--vendor-exports",
             "--out", str(first))
    _cli("archive", "-s", str(first), "--vendor-pdf", "--vendor-exports", "--out", str(second))
    r1, r2 = ArchiveReader(first), ArchiveReader(second)
    try:
        assert r1.files() == r2.files()  # every file byte for byte (their hashes)
        assert r1.manifest["format_version"] == 2 and r1.manifest["counts"] == r2.manifest["counts"]
        assert [x["submission_id"] for x in r1.jsonl("forms/81/deleted.jsonl")] == ["4"]
        assert r1.manifest["counts"]["deleted"] == 1
        assert any(p.startswith("forms/81/documents/") for p in r1.files())
    finally:
        r1.close()
        r2.close()
    assert verify(first) == [] and verify(second) == []
    # verify covers them: a document changed, an index line removed
    doc = next(p for p in first.rglob("*") if p.is_file() and "/documents/" in p.as_posix())
    doc.write_bytes(doc.read_bytes() + b"x")
    assert any(str(doc.relative_to(first)) in p for p in verify(first))
    index = second / "forms/81/documents.jsonl"
    index.write_text("".join(index.read_text("utf-8").splitlines(keepends=True)[1:]), "utf-8")
    assert any("documents.jsonl" in p for p in verify(second))
