"""Unread mode never loses data on a crash (issue 16): the CLI, run as a process against the fake
web service with ``--incremental unread`` into a files destination and SQLite, is killed (SIGKILL)
while the service applies the read marks of its Nth batch; the next normal run must leave every
submission and every media in every destination exactly once: the files' aggregates and media, and
the database."""
import csv
import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from exporter.connectors.archive.reader import ArchiveReader

from exporter.testing.fake_server import FakeKizeoServer

TOKEN = "tok-kill-0123456789"
ROOT = Path(__file__).resolve().parent.parent


def export(srv, out, db, batch_size):
    env = {**os.environ, "KZ_TOKEN": TOKEN, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", "-q", "export", "-s", srv.base_url, "--token-env", "KZ_TOKEN",
         "--incremental", "unread", "--action", "nightly", "--workers", "1", "--batch-size", str(batch_size),
         "--format", "json,csv", "--to", str(out), "--to", f"sqlite:///{db}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def expected(archive):
    reader = ArchiveReader(archive)
    subs = {f: sorted(str(s["id"]) for s in reader.submissions_raw(f)) for f in ("1001", "1002", "1003")}
    media = {(f, m["submission_id"], m["name"]): m["sha256"] for f in subs for m in reader.media_index(f)}
    return subs, media


def check_everything_once(out: Path, db: Path, subs, media):
    forms = {p.name.split("-", 1)[0]: p for p in (out / "forms").iterdir()}
    for fid, ids in subs.items():
        rows = list(csv.reader(io.StringIO((forms[fid] / "submissions.csv").read_bytes().decode("utf-8"))))
        assert sorted(r[0] for r in rows[1:]) == ids, fid  # each submission once in the aggregate
        lines = (forms[fid] / "submissions.jsonl").read_text("utf-8").splitlines()
        assert sorted(json.loads(line)["id"] for line in lines) == ids, fid
    for (fid, sid, name), sha in media.items():
        p = forms[fid] / "media" / sid / name
        assert p.is_file(), p
        assert hashlib.sha256(p.read_bytes()).hexdigest() == sha
    con = sqlite3.connect(db)
    try:
        for fid, table in con.execute("SELECT form_id, table_name FROM forms"):
            got = [r[0] for r in con.execute(f'SELECT submission_id FROM "{table}" ORDER BY submission_id')]
            assert got == subs[fid], fid
        rows = con.execute("SELECT form_id, submission_id, name, sha256 FROM media").fetchall()
        assert len(rows) == len(set(rows)) == len(media)
        assert {(f, s, n): h for f, s, n, h in rows} == media
    finally:
        con.close()


# (submissions per batch, the form and the count of its mark calls at which the run is killed);
# killed at form 1002's first batch, form 1001 is complete in the killed run and gets nothing in
# the next: its aggregates come only from what the killed run left marked unpublished
@pytest.mark.parametrize("batch_size,kill_at", [(2, ("1001", 3)), (1, ("1001", 1)), (5, ("1002", 1))])
def test_sigkill_between_batches_loses_nothing(sample_archive, tmp_path, batch_size, kill_at):
    subs, media = expected(sample_archive)
    out, db = tmp_path / "files", tmp_path / "db.sqlite"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        held, release = threading.Event(), threading.Event()

        def hold(fid, action, ids):  # that batch is committed everywhere and being marked read
            if (fid, sum(1 for f, _, _ in srv.marked if f == fid)) == kill_at:
                held.set()
                release.wait(30)

        srv.on_mark = hold
        proc = export(srv, out, db, batch_size)
        try:
            assert held.wait(60), proc.communicate(timeout=5)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        marked = {i for _, _, ids in srv.marked for i in ids}
        assert 0 < len(marked) < sum(map(len, subs.values()))  # killed halfway

        srv.on_mark = None
        proc = export(srv, out, db, batch_size)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        check_everything_once(out, db, subs, media)
        assert not list(out.rglob("*.partial"))  # what the killed run left half-built is gone
