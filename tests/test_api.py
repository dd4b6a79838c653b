"""The public Python API: a stable set of names, and exports driven from Python (no subprocess)
with the same source and destination specs as the command line."""
import contextlib
import csv
import io
import sqlite3

import pytest

import exporter
from exporter import archive, export, list_forms, verify
from exporter.errors import ConfigError, SourceError
from exporter.testing.fake_server import FakeKizeoServer

TOKEN = "tok-api-0123456789abcdef"

#: the public names: changing this list is changing the API (say so in the README and the version)
PUBLIC = ["ConfigError", "ExporterError", "RunSummary", "Verification", "__version__", "archive", "export",
          "list_forms", "verify"]


def test_public_names_are_stable():
    assert sorted(exporter.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(exporter, name) is not None
    assert exporter.export.__doc__ and exporter.archive.__doc__ and exporter.verify.__doc__


def _table_counts(db):
    with contextlib.closing(sqlite3.connect(db)) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: con.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}


def test_export_from_an_archive_into_sqlite_and_files(sample_archive, tmp_path):
    db, out = tmp_path / "kizeo.db", tmp_path / "files"
    summary = export(sample_archive, [f"sqlite:///{db}", (str(out), {"csv_delimiter": ";", "csv_bom": "yes"})],
                     formats="json,csv", options={"json_per_submission": False})
    assert isinstance(summary, exporter.RunSummary) and summary.status == "ok"
    assert summary.counts["submission"] == 50 and summary.counts["form"] == 3
    assert list(summary.per_sink) == [f"sqlite:///{db}", f"files {out}"]
    assert all(c.get("submission") == 50 for c in summary.per_sink.values())
    assert _table_counts(db)["users"] > 0
    users = (out / "users.csv").read_bytes()
    assert users.startswith(b"\xef\xbb\xbfid;")  # per-destination options, typed ("yes" -> True)
    assert not any(out.rglob("submissions/*.json"))  # an option for every destination
    # again, incremental: the cursors the first run stored are read back (only the overlap window is re-read)
    again = export(sample_archive, [f"sqlite:///{db}"], incremental="cursor")
    assert again.status == "ok" and again.counts.get("submission", 0) < 50


def test_export_from_the_fake_service(sample_archive, tmp_path, monkeypatch):
    monkeypatch.setenv("KZ_API_TOKEN", TOKEN)
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        summary = export(srv.base_url, str(tmp_path / "o"), source_options={"token_env": "KZ_API_TOKEN", "workers": "2"},
                         forms=["Bon de livraison"])
        assert [f["id"] for f in list_forms(srv.base_url, source_options={"token_env": "KZ_API_TOKEN"})] == \
            ["1001", "1002", "1003"]
    assert summary.counts["submission"] == 15 and summary.counts["form"] == 1
    rows = list(csv.reader(io.StringIO((tmp_path / "o" / "forms" / "1002-Bon de livraison" / "submissions.csv")
                                       .read_text("utf-8"))))
    assert len(rows) == 16


def test_a_wrong_token_fails_without_showing_it(sample_archive, tmp_path, monkeypatch):
    monkeypatch.setenv("KZ_API_TOKEN", "wrong-token-0123456789")
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv, pytest.raises(SourceError) as e:
        export(srv.base_url, str(tmp_path / "o"), source_options={"token_env": "KZ_API_TOKEN"})
    assert "wrong-token" not in exporter.api.__name__ + str(e.value)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kwargs, words", [
    ({"options": {"csv_delimeter": ";"}}, ["csv_delimeter", "did you mean csv_delimiter?"]),
    ({"options": {"csv_bom": "maybe"}}, ["option csv_bom", "true or false"]),
    ({"to": ["sqlite:///{tmp}/x.db?password=hunter22"]}, ["never as a value"]),
    ({"source": "https://127.0.0.1:9/rest/v3", "source_options": {"workers": 0}}, ["option workers", "1 <= workers"]),
    ({"source_options": {"skip": "users"}}, ["--skip users", "web service"]),
    ({"incremental": "unread"}, ["--action"]),
    ({"overlap": 600}, ["--overlap", "--incremental none"]),  # settings the run would ignore
    ({"incremental": "cursor", "deletions": "hard"}, ["--deletions", "--check-deletions"]),
    ({"incremental": "cursor", "max_deletions": "5"}, ["--max-deletions", "--check-deletions"]),
])
def test_bad_settings_are_config_errors_and_create_nothing(sample_archive, tmp_path, kwargs, words):
    to = [t.format(tmp=tmp_path) for t in kwargs.pop("to", [f"sqlite:///{tmp_path}/x.db", str(tmp_path / "o")])]
    with pytest.raises(ConfigError) as e:
        export(kwargs.pop("source", sample_archive), to, **kwargs)
    for w in words:
        assert w in str(e.value)
    assert "hunter22" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_archive_and_verify_from_python(sample_archive, tmp_path):
    out = tmp_path / "account.zip"
    summary = archive(sample_archive, out)
    assert summary.status == "ok" and out.is_file()
    result = verify(out)
    assert result.ok and result.files > 50 and result.counts["submissions"] == 50
    with pytest.raises(ConfigError, match="already exists"):
        archive(sample_archive, out)
    folder = tmp_path / "folder"
    archive(sample_archive, folder, forms=["1003"])
    (next(folder.rglob("*.jsonl"))).write_text("tampered\n")
    bad = verify(folder)
    assert not bad.ok and any("mismatch" in p for p in bad.problems)


def test_a_progress_object_without_stage_still_gets_a_committed_run(sample_archive, tmp_path):
    """``progress`` is any object with ``update`` and ``done`` (as before the 'finishing' stage);
    one without ``stage`` does not fail the run nor leave its destination unclosed."""
    class Counter:
        def __init__(self):
            self.batches, self.finished = 0, None

        def update(self, summary, current):
            self.batches += 1

        def done(self, summary):
            self.finished = summary.status

    progress, db = Counter(), tmp_path / "kizeo.db"
    summary = export(sample_archive, [f"sqlite:///{db}"], progress=progress)
    assert summary.status == "ok" and progress.batches > 0 and progress.finished == "ok"
    assert sum(_table_counts(db).values()) > 50
