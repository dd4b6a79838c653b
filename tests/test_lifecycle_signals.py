"""Stopping a run from outside: SIGTERM / SIGHUP / SIGINT roll back cleanly; after SIGKILL the next
run cleans up. The CLI runs as a subprocess on a synthetic archive, files + SQLite."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N_SUBMISSIONS = 150
#: columns that name the run or its time, different in any two runs
RUN_COLUMNS = {"run_id", "first_run", "last_run", "updated_at", "started_at", "ended_at", "exported_at"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
    try:
        from synth_account import build
    finally:
        sys.path.remove(str(ROOT / "tests" / "benchmarks"))
    return build(tmp_path_factory.mktemp("synth") / "account", N_SUBMISSIONS, tiny_media=True)


def start(synth: Path, out: Path, db: Path, tmp: Path) -> subprocess.Popen:
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-m", "exporter", "-q", "export", "-s", str(synth), "--to", str(out),
                             "--to", f"sqlite:///{db}", "--format", "json,csv,xlsx", "--batch-size", "10"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, out: Path, submissions: int, timeout: float = 30) -> None:
    """Until ``out`` is being written (``submissions`` = 0) or holds that many submission files."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"the run ended before the signal: {proc.communicate()}"
        if submissions == 0 and any(out.glob(".exporter-run.*")):
            return
        if submissions and sum(1 for _ in out.glob("forms/*/submissions/*.json")) >= submissions:
            return
        time.sleep(0.02)
    pytest.fail("the run did not get there in time")


def leftovers(out: Path, tmp: Path | None = None) -> list[str]:
    found = [str(p) for p in out.rglob("*") if p.name.endswith(".partial") or p.name.startswith(".exporter-run.")]
    return found + ([str(p) for p in tmp.iterdir()] if tmp is not None else [])


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tables_of(db: Path) -> dict[str, list]:
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name != 'runs'")]
        out = {}
        for t in names:
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{t}")') if r[1] not in RUN_COLUMNS]
            out[t] = sorted(map(repr, con.execute(f'SELECT {", ".join(map(repr, cols))} FROM "{t}"')))
        return out


def runs_of(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
            return []
        return con.execute("SELECT status, message FROM runs ORDER BY run_id").fetchall()


@pytest.fixture(scope="module")
def clean(synth, tmp_path_factory):
    """A clean run's files and tables, to compare a re-run with."""
    d = tmp_path_factory.mktemp("clean")
    p = start(synth, d / "out", d / "x.db", d / "tmp")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return files_of(d / "out"), tables_of(d / "x.db")


@pytest.mark.parametrize(("sig", "code", "at"), [
    (signal.SIGTERM, 143, 0), (signal.SIGTERM, 143, 40), (signal.SIGTERM, 143, 100),
    (signal.SIGHUP, 129, 20), (signal.SIGINT, 130, 20)])
def test_a_stop_signal_rolls_back_and_a_rerun_equals_a_clean_run(sig, code, at, synth, clean, tmp_path):
    out, db, tmp = tmp_path / "out", tmp_path / "x.db", tmp_path / "tmp"
    p = start(synth, out, db, tmp)
    wait_for(p, out, at)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    name = signal.Signals(sig).name
    assert err.splitlines() == [f"interrupted by {name}: rolled back; nothing was committed after the last "
                                "completed batch"]
    assert leftovers(out, tmp) == []
    assert not any(out.glob("forms/*/submissions.*"))  # no aggregate file published
    runs = runs_of(db)
    # (stopped at the very start, the database may not have begun its run yet)
    assert runs == [("interrupted", f"interrupted by {name}")] or (at == 0 and runs == [])
    p = start(synth, out, db, tmp)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert leftovers(out, tmp) == []
    files, tables = clean
    got = files_of(out)
    assert sorted(got) == sorted(files)
    assert [k for k in files if got[k] != files[k]] == []
    assert tables_of(db) == tables
    assert [s for s, _ in runs_of(db)] == [s for s, _ in runs] + ["ok"]


def test_after_a_sigkill_the_next_run_removes_the_leftovers_and_marks_the_run_abandoned(synth, clean, tmp_path):
    out, db, tmp = tmp_path / "out", tmp_path / "x.db", tmp_path / "tmp"
    p = start(synth, out, db, tmp)
    wait_for(p, out, 40)
    killed = p.pid
    p.kill()
    p.wait(timeout=30)
    left = leftovers(out)
    assert any(n.endswith(".partial") for n in left) and any(".exporter-run." in n for n in left)
    assert runs_of(db) == [("running", None)]
    p = start(synth, out, db, tmp)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert leftovers(out) == []
    files, tables = clean
    got = files_of(out)
    assert sorted(got) == sorted(files) and [k for k in files if got[k] != files[k]] == []
    assert tables_of(db) == tables
    (status, message), (status2, _) = runs_of(db)
    assert (status, status2) == ("abandoned", "ok")
    assert message.startswith(f"the process ({killed}.") and "stopped without finishing" in message


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_sigterm_and_ctrl_c(sig, sample_archive):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KZ_TOKEN": "tok-0123456789abcdef"}
    p = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "-s", str(sample_archive), "--port", "0",
                          "--token-env", "KZ_TOKEN"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stderr.readline().startswith("serving ")
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0 and err == ""
