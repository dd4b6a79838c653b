"""Life-cycle corners found in review: a run stopped at the edges of its steps."""
from __future__ import annotations

import signal
import sqlite3

import pytest
from click.testing import CliRunner
from exporter.connectors.sql.sink import SqlSink

from exporter.cli import cli
from exporter.errors import Interrupted


@pytest.mark.parametrize(("error", "status", "code"), [
    (RuntimeError("injected right after the run's row"), "failed", 1),
    (Interrupted(signal.SIGTERM), "interrupted", 143),
])
def test_a_run_stopped_right_after_its_row_is_committed_records_why(error, status, code, sample_archive, tmp_path,
                                                                    monkeypatch):
    db = tmp_path / "x.db"
    args = ["-q", "export", "-s", str(sample_archive), "--to", f"sqlite:///{db}", "--form", "1001"]
    assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
    orig = SqlSink._commit_tx

    def commit_tx(self):
        orig(self)
        if self._ctx is not None:
            with sqlite3.connect(db) as con:
                row = con.execute("SELECT status FROM runs WHERE run_id = ?", (self._ctx.run_id,)).fetchone()
            if row == ("running",):  # the signal comes as the COMMIT of the run's row returns
                raise error
    monkeypatch.setattr(SqlSink, "_commit_tx", commit_tx)
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT status, message FROM runs ORDER BY run_id").fetchall()
    assert rows[0] == ("ok", None)
    assert rows[1][0] == status and rows[1][1] and rows[1][1] in lines[0], rows


def test_a_stop_signal_rebuilt_by_a_library_keeps_its_signal_and_one_line():
    """reportlab re-raises an error from inside a flowable as ``type(e)(text)`` (annotateException):
    a SIGTERM landing in a PDF's layout came back as Interrupted("...interrupted by SIGTERM") and
    the CLI died on ``128 + str`` with a traceback instead of exiting 143 in one line."""
    import io

    from reportlab.platypus import Flowable, KeepTogether, SimpleDocTemplate

    class Stopped(Flowable):
        def wrap(self, aw, ah):
            raise Interrupted(signal.SIGTERM)

    with pytest.raises(Interrupted) as info:
        SimpleDocTemplate(io.BytesIO()).build([KeepTogether([Stopped()])])
    e = info.value
    assert e.exit_code == 143 and e.signum == signal.SIGTERM
    assert str(e) == "interrupted by SIGTERM"


def test_a_stop_signal_inside_a_docx_save_leaves_no_exception_ignored(tmp_path, monkeypatch):
    """A SIGTERM landing in python-docx's save between two writes (not in a write of the file it
    was given): the half-built ZipFile, freed later, found its spool closed and printed
    "Exception ignored in ZipFile.__del__ ... I/O operation on closed file" under the one line."""
    import datetime as dt
    import gc
    import io
    import sys
    import types
    import zipfile

    from docx import Document
    from exporter.formats.docx_writer import DocxWriter

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(repr(u.exc_value)))
    orig = zipfile.ZipFile.writestr
    calls = {"n": 0}

    def writestr(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupted(signal.SIGTERM)
        return orig(self, *args, **kwargs)
    monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)
    fake = types.SimpleNamespace(_tmp=str(tmp_path))
    with pytest.raises(Interrupted):
        DocxWriter._save(fake, Document(), io.BytesIO(), dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "t")
    gc.collect()
    assert seen == []



def test_a_live_run_in_another_pid_namespace_with_the_same_host_name_is_never_taken_for_dead():
    """A container sharing the host's name (docker --network host, a fixed hostname) and the
    output folder or database: its pids mean nothing here. Its live run (pid 1 in there) was
    taken for a dead or recycled pid here, so its temporary files were removed and its SQL run
    marked abandoned by a run outside it."""
    import os
    import shutil
    import subprocess
    import sys

    from exporter import owner
    from tests.conftest import require_service

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import sys, time; from exporter import owner; print(owner.owner(), flush=True); sys.stdin.read()"
    ok = shutil.which("unshare") and subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"],
                                                     capture_output=True).returncode == 0
    require_service(bool(ok), "unshare -p (a new pid namespace needs root)")
    p = subprocess.Popen(["unshare", "-p", "-f", "--mount-proc", sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": root})
    try:
        theirs = p.stdout.readline().strip()
        assert theirs.startswith("1.")  # the first process of its namespace
        assert not owner.is_dead(theirs)
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    assert not owner.is_dead(owner.owner())
