"""A refused or failed command leaves no debris: no empty folder, no empty database; but a folder or
a database that existed before is never removed."""
from __future__ import annotations

import socket
import sqlite3

import pytest
from click.testing import CliRunner
from exporter.connectors.kizeo.client import KizeoClient

from exporter.cli import cli
from exporter.testing.fake_server import FakeKizeoServer

TOKEN = "tok-0123456789abcdef"


def invoke(*args, token=TOKEN):
    return CliRunner().invoke(cli, ["-q", *args], env={"KZ_TOKEN": token}, catch_exceptions=False)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def service(sample_archive):
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        yield srv.base_url


def existing(tmp_path):
    """A folder holding a file and a database holding a table, there before the run."""
    folder, db = tmp_path / "kept", tmp_path / "kept.db"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE mine (x)")
    return folder, db


@pytest.mark.parametrize("case", ["wrong token", "unreachable service"])
def test_a_refused_source_creates_nothing_and_removes_nothing(case, service, tmp_path, monkeypatch):
    orig = KizeoClient.__init__
    monkeypatch.setattr(KizeoClient, "__init__", lambda self, *a, **kw: orig(self, *a, **{**kw, "sleep": lambda s: None}))
    url = service if case == "wrong token" else f"http://127.0.0.1:{unused_port()}/rest/v3"
    out, db = tmp_path / "new" / "out", tmp_path / "new.db"
    r = invoke("export", "-s", url, "--token-env", "KZ_TOKEN", "--timeout", "5", "--to", str(out),
               "--to", f"sqlite:///{db}", token="wrong-token-value")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "new").exists() and not db.exists()
    folder, kept = existing(tmp_path)
    r = invoke("export", "-s", url, "--token-env", "KZ_TOKEN", "--timeout", "5", "--to", str(folder),
               "--to", f"sqlite:///{kept}", token="wrong-token-value")
    assert r.exit_code == 1
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    with sqlite3.connect(kept) as con:
        assert [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["mine"]


def test_a_usage_error_found_by_a_destination_leaves_no_folder_nor_database(sample_archive, tmp_path):
    out, db = tmp_path / "out", tmp_path / "x.db"
    for order in ([str(out), f"sqlite:///{db}"], [f"sqlite:///{db}", str(out)]):
        r = invoke("export", "-s", str(sample_archive), "--to", order[0], "--to", order[1], "--format", "csv",
                   "-o", "csv_delimiter=abc")
        assert r.exit_code == 2 and "csv_delimiter" in r.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_unreachable_database_leaves_no_folder(sample_archive, tmp_path):
    out = tmp_path / "a" / "out"
    r = invoke("export", "-s", str(sample_archive), "--to", str(out), "--to",
               f"mysql+pymysql://root@127.0.0.1:{unused_port()}/x", "--format", "csv")
    assert r.exit_code == 1 and "cannot connect" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_with_an_unknown_format_creates_nothing(tmp_path):
    r = invoke("demo", "--out", str(tmp_path / "demo"), "--format", "parquet")
    assert r.exit_code == 2 and "parquet" in r.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "demo").mkdir()
    r = invoke("demo", "--out", str(tmp_path / "demo"), "--format", "json,parquet")
    assert r.exit_code == 2
    assert list((tmp_path / "demo").iterdir()) == []
