"""The documents the service makes of submissions (--vendor-pdf) show the data as served: a
pseudonymised export leaves them out (layout pictures stay), and forget removes those of the
submissions that go or that name the person, in files folders and SQL databases."""
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
    out, db, media = tmp_path / "files", tmp_path / "x.db", tmp_path / "media"
    with FakeKizeoServer(str(roles_archive), TOKEN) as srv:
        r = invoke("-q", "export", "-s", srv.base_url, "--token-env", "TK", "--vendor-pdf", "--to", out,
                   "--to", f"sqlite:///{db}", "-o", f"media_dir={media}")
        assert r.exit_code == 0, r.output
    deliveries = next((out / "forms").glob("1002-*"))
    inspections = next((out / "forms").glob("1001-*"))
    for d in (deliveries / "documents" / "800001", inspections / "documents" / RECIPIENT_OF,
              inspections / "documents" / EDITED):
        assert d.is_dir()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as c:
        before = c.exec_driver_sql("SELECT COUNT(*) FROM documents").scalar()
    r = invoke("forget", "--to", out, "--to", f"sqlite:///{db}", "-o", f"media_dir={media}", "--user", PERSON,
               "--apply")
    assert r.exit_code == 0, r.output
    assert "10 documents made by the service" in r.output  # 9 submissions that go, 1 that names them
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
