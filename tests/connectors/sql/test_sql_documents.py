"""Vendor documents in SQL (issue 16): the ``documents`` table (form, submission, kind, export id,
field, name, content type, size, sha256, path; the bytes with ``--media-in-db``), on every
backend; an edited submission's documents replace their rows, a hard deletion removes them."""
from __future__ import annotations

import hashlib

import pytest

from tests.connectors.conftest_kizeo import serve
from tests.connectors.test_kizeo_documents import LAYOUT, SIDS, _cli, _served, _submission
from tests.connectors.test_kizeo_documents import account as account  # noqa: F401 - the fixture

pytestmark = pytest.mark.network


def _export(srv, db, *more: str) -> None:
    opts = [a for k, v in db.options.items() for a in ("-o", f"{k}={str(v).lower()}")]
    _cli("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--vendor-pdf", "--vendor-exports",
         "--media-in-db", "--to", db.url, *opts, *more)


def _content(value) -> bytes:
    return bytes(value) if value is not None else b""


def test_the_documents_table_holds_every_document_and_its_bytes(account, db):
    with serve(account) as srv:
        _export(srv, db, "--incremental", "cursor")
        served = {(sid, kind, key): _served(srv, path) for sid in SIDS for kind, key, path in (
            ("pdf", None, f"/forms/81/data/{sid}/pdf"), ("export", "11", f"/forms/81/data/{sid}/exports/11"),
            ("export", "12", f"/forms/81/data/{sid}/exports/12"))}
        pictures = {name: _served(srv, f"/forms/81/data/1/form_pictures/{name}") for name in LAYOUT}
        rows = db.rows("documents")
        got = {(r["submission_id"], r["kind"], r["export_id"]): r for r in rows if r["kind"] != "form_picture"}
        assert got.keys() == served.keys()
        for k, (data, name) in served.items():
            r = got[k]
            assert (r["form_id"], r["name"], r["size"], r["sha256"], r["field"]) == (
                "81", name, len(data), hashlib.sha256(data).hexdigest(), None)
            assert _content(r["content"]) == data and r["path"] is None
        assert {r["field"]: (_content(r["content"]), r["name"], r["submission_id"], r["export_id"])
                for r in rows if r["kind"] == "form_picture"} == {
            n: (d, name, None, None) for n, (d, name) in pictures.items()}
        assert "ix_documents_submission" in {ix["name"] for ix in _indexes(db, "documents")}

        # an edited submission: its documents replace their rows (new bytes), nothing else moves
        before = {r["document_key"]: r["sha256"] for r in rows}
        srv.put_submission("81", _submission("2", "2026-07-01 10:00:00", "Titre 2 modifié"))
        _export(srv, db, "--incremental", "cursor")
        after = {r["document_key"]: (r["submission_id"], r["sha256"], _content(r["content"]))
                 for r in db.rows("documents")}
        assert after.keys() == before.keys()
        changed = {v[0] for k, v in after.items() if v[1] != before[k]}
        assert changed == {"2"}
        assert any(v[2] == _served(srv, "/forms/81/data/2/pdf")[0] for v in after.values())

        # a submission erased on the service: --deletions hard removes its documents with it
        srv.delete_submission("81", "3")
        _export(srv, db, "--deletions", "hard", "--max-deletions", "1")
        assert {r["submission_id"] for r in db.rows("documents")} == {"1", "2", "4", None}


def _indexes(db, table: str) -> list[dict]:
    import sqlalchemy as sa

    with db.engine().connect() as c:
        return sa.inspect(c).get_indexes(table, schema=db.schema)


def test_with_media_dir_the_documents_are_files_beside_the_database(account, sqlite_db, tmp_path):
    media = tmp_path / "media"
    with serve(account) as srv:
        _cli("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--vendor-pdf", "--to", sqlite_db.url,
             "-o", f"media_dir={media}")
        pdf, name = _served(srv, "/forms/81/data/1/pdf")
    rows = {(r["submission_id"], r["kind"]): r for r in sqlite_db.rows("documents")}
    r = rows[("1", "pdf")]
    assert r["content"] is None and r["path"].startswith("documents/81/1/pdf/")
    assert (media / r["path"]).read_bytes() == pdf and r["name"] == name
    assert (media / rows[(None, "form_picture")]["path"]).is_file()
