"""A forget killed (SIGKILL) in the middle of its work, then run again, completes: PostgreSQL and
MariaDB are stopped inside their transaction (waiting for a row another connection holds), so
nothing of it stays; a files folder is stopped after its plan was written and the person's own
files removed, while it waits to commit its store, and the next forget finishes that plan."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from exporter.cli import cli
from tests.privacy.conftest import PERSON, person_texts, search_files, search_sql

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def forget_process(*to: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "exporter", "-q", "forget", *to, "--user", PERSON, "--apply"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(check, proc: subprocess.Popen, what: str, seconds: float = 60, every: float = 0.02) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"forget ended before {what}: {proc.returncode} {proc.stderr.read()}")
        time.sleep(every)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def _sql_kill_and_rerun(roles_archive, db, blocked_sql: str, lock_sql: str) -> None:
    to = [db.url] + [x for k, v in db.options.items() for x in ("-o", f"{k}={v}")]
    assert invoke("-q", "export", "-s", roles_archive, "--to", *to).exit_code == 0
    needles = person_texts(roles_archive)
    engine = db.engine()
    holder = engine.connect()
    holder.begin()
    holder.exec_driver_sql(lock_sql)  # the person's users row, held: the forget waits on it
    proc = forget_process("--to", *to)
    try:
        def blocked() -> bool:
            with engine.connect() as watch:  # a new transaction each time: a fresh view of the server
                return watch.execute(sa.text(blocked_sql)).scalar() > 0

        wait_for(blocked, proc, "the forget to wait on the lock")
        kill(proc)  # its form rows were deleted in its transaction, which never committed
    finally:
        holder.rollback()
        holder.close()
    found = search_sql(engine, db.schema, needles)  # everything is still there
    assert any(" users." in f for f in found) and any("_1002." in f for f in found), found
    with engine.connect() as c:
        forms = sa.Table("forms", sa.MetaData(schema=db.schema), autoload_with=c)
        tables = [sa.Table(n, sa.MetaData(schema=db.schema), autoload_with=c)
                  for n in c.execute(sa.select(forms.c.table_name)).scalars()]
        assert sum(c.execute(sa.select(sa.func.count()).select_from(t)).scalar() for t in tables) == 50
    assert not sa.inspect(engine).has_table("erasures", schema=db.schema) or search_sql(
        engine, db.schema, ["erasure_id"]) == []
    r = invoke("forget", "--to", *to, "--user", PERSON, "--apply")
    assert r.exit_code == 0 and "9 submissions" in r.output, r.output
    assert search_sql(engine, db.schema, needles) == []
    with engine.connect() as c:
        t = sa.Table("erasures", sa.MetaData(schema=db.schema), autoload_with=c)
        assert c.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 1


def test_postgresql_killed_mid_transaction(roles_archive, pg_db):
    s = pg_db.schema
    _sql_kill_and_rerun(
        roles_archive, pg_db,
        f"SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM %{s}%users%'",
        f"SELECT * FROM \"{s}\".users WHERE user_id = '{PERSON}' FOR UPDATE")


def test_mariadb_killed_mid_transaction(roles_archive, my_db):
    _sql_kill_and_rerun(
        roles_archive, my_db,
        # (not information_schema.innodb_trx: MariaDB refreshes it only when it was not read for
        # 0.1 s, so a tight poll sees the same rows forever)
        "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'DELETE FROM users%' AND time >= 1 "
        "AND db = DATABASE()",
        f"SELECT * FROM users WHERE user_id = '{PERSON}' FOR UPDATE")


def test_files_killed_midway_then_finished(roles_archive, tmp_path):
    out = tmp_path / "files"
    assert invoke("-q", "export", "-s", roles_archive, "--to", out, "--format", "json,csv,xlsx").exit_code == 0
    needles = person_texts(roles_archive)
    form = next((out / "forms").glob("1002-*"))
    theirs = form / "media" / "800001"  # a submission of the person's
    assert theirs.is_dir()
    holder = sqlite3.connect(out / ".exporter" / "store.sqlite", isolation_level=None)
    holder.execute("BEGIN")  # a reader of the store: the forget waits for it to commit its changes
    holder.execute("SELECT COUNT(*) FROM submissions").fetchone()
    proc = forget_process("--to", str(out))
    try:
        wait_for(lambda: (out / ".exporter" / "forget.json").is_file() and not theirs.exists(), proc,
                 "the person's own files to go")
        time.sleep(0.5)  # now waiting to commit the store
        kill(proc)
    finally:
        holder.rollback()
        holder.close()
    # stopped midway: the plan is written, the own files are gone, the aggregates not yet rebuilt
    assert (out / ".exporter" / "forget.json").is_file()
    assert "akowalski" in (out / "users.csv").read_text("utf-8")
    assert "akowalski" in (form / "submissions.csv").read_text("utf-8")
    assert any(p.name.startswith(".exporter-run.") for p in out.iterdir())  # the dead run's claim

    r = invoke("forget", "--to", out, "--user", PERSON, "--apply")
    assert r.exit_code == 0, r.output
    assert search_files(out, needles) == []
    assert not (out / ".exporter" / "forget.json").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".exporter-run.") or p.name.endswith(".partial")]
    (line,) = (out / ".exporter" / "erasures.jsonl").read_text("utf-8").splitlines()
    assert json.loads(line)["erased"]["submissions"] == 9
    assert len(list((form / "submissions").glob("*.json"))) > 0  # the others' files stay
