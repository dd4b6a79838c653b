"""The documents the service makes of submissions (--vendor-pdf) show the data as served: a
pseudonymised export leaves them out (layout pictures stay), and forget removes those of the
submissions that go or that name the person, in files folders, SQL databases and account archives."""
from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner

from exporter.cli import cli
from exporter.testing.fake_server import FakeKizeoServer
from tests.privacy.conftest import EDITED, PERSON, RECIPIENT_OF

TOKEN = "tok-documents-0123"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"TK": TOKEN}, catch_exceptions=False)


def test_pseudonymised_exports_leave_the_services_documents_out(sample_archive, tmp_path):
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        r = invoke("export", "-s", srv.base_url, "--token-env", "TK", "--vendor-pdf", "--to", tmp_path / "plain")
        assert r.exit_code == 0, r.output
        r = invoke("export", "-s", srv.base_url, "--token-env", "TK", "--vendor-pdf", "--to", tmp_path / "pseudo",
                   "--pseudonymise", "users=drop")
        assert r.exit_code == 0, r.output
        assert "show the data as served: they are left out of pseudonymised destinations" in r.output
    assert list((tmp_path / "plain").glob("forms/*/documents/*/pdf/*"))
    assert not list((tmp_path / "pseudo").glob("forms/*/documents"))


def test_forget_removes_the_documents_of_what_goes_and_of_what_names_the_person(roles_archive, tmp_path):
    out, db, media, arch = tmp_path / "files", tmp_path / "x.db", tmp_path / "media", tmp_path / "acme.zip"
    with FakeKizeoServer(str(roles_archive), TOKEN) as srv:
        r = invoke("-q", "export", "-s", srv.base_url, "--token-env", "TK", "--vendor-pdf", "--to", out,
                   "--to", f"sqlite:///{db}", "-o", f"media_dir={media}", "--to", f"archive://{arch}")
        assert r.exit_code == 0, r.output
    deliveries = next((out / "forms").glob("1002-*"))
    inspections = next((out / "forms").glob("1001-*"))
    for d in (deliveries / "documents" / "800001", inspections / "documents" / RECIPIENT_OF,
              inspections / "documents" / EDITED):
        assert d.is_dir()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as c:
        before = c.exec_driver_sql("SELECT COUNT(*) FROM documents").scalar()
    archived = _archived_documents(arch)
    assert {"800000", "800001", RECIPIENT_OF, EDITED} <= archived
    r = invoke("forget", "--to", out, "--to", f"sqlite:///{db}", "-o", f"media_dir={media}", "--to", f"archive://{arch}",
               "--user", PERSON, "--apply")
    assert r.exit_code == 0, r.output
    # 9 submissions that go, 1 that names them; in each destination
    assert r.output.count("10 documents made by the service") == 3, r.output
    assert _archived_documents(arch) == archived - {"800001", RECIPIENT_OF, EDITED} - _theirs(roles_archive)
    for d in (deliveries / "documents" / "800001", inspections / "documents" / RECIPIENT_OF,
              inspections / "documents" / EDITED):
        assert not d.exists()
    assert (deliveries / "documents" / "800000").is_dir()
    with engine.connect() as c:
        left = c.exec_driver_sql("SELECT submission_id FROM documents").scalars().all()
    assert len(left) == before - 10 and not {"800001", RECIPIENT_OF, EDITED} & set(left)
    for sid in (EDITED, RECIPIENT_OF, "800001"):  # their files under media_dir too
        assert not list(media.glob(f"documents/*/{sid}"))
    assert list(media.glob("documents/1002/800000/pdf/*")) and list(media.glob(f"1001/{EDITED}/*.jpg"))


def _archived_documents(path) -> set[str]:
    """The submissions whose documents an archive holds (their index lines and their files)."""
    import zipfile

    from exporter.connectors.archive.reader import ArchiveReader

    reader = ArchiveReader(path)
    try:
        indexed = {str(d["submission_id"]) for f in reader.forms_index() for d in reader.documents_index(str(f["id"]))
                   if d["submission_id"] is not None}
    finally:
        reader.close()
    with zipfile.ZipFile(path) as z:
        stored = {n.split("/")[3] for n in z.namelist() if n.split("/")[2:3] == ["documents"]}
    assert stored == indexed
    return indexed


def _theirs(archive) -> set[str]:
    import json

    return {d["id"] for f in archive.glob("forms/*/submissions.jsonl") for d in map(json.loads, f.read_text("utf-8").splitlines())
            if PERSON in (d.get("user_id"), d.get("recipient_id"))}
