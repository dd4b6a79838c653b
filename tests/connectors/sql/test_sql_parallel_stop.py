"""``--jobs N`` stopped by SIGTERM: the parent stops its workers, every process rolls back and exits,
the run is recorded as interrupted, and a re-run gives what an uninterrupted run gives."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from .conftest import PG_ADMIN, _pg_schema
from .test_sql_parallel import _content, export

ROOT = Path(__file__).resolve().parents[3]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    ppid = int(fh.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_sigterm_stops_the_workers_rolls_back_and_a_rerun_equals_a_clean_run(pg_db, sample_archive):
    gen = _pg_schema("postgresql", PG_ADMIN)
    clean = next(gen)
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        p = subprocess.Popen([sys.executable, "-m", "exporter", "-q", "export", "-s", str(sample_archive), "--to", pg_db.url,
                              "-o", f"schema={pg_db.schema}", "--jobs", "2", "--batch-size", "1"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 60
        workers: list[int] = []
        while not workers:  # a worker: a child of the fork server, itself a child of the CLI
            assert p.poll() is None and time.monotonic() < end, p.communicate()
            workers = [w for c in descendants(p.pid) for w in descendants(c)]
            time.sleep(0.02)
        # the workers write the sample account's forms in a few tenths of a second: the signal must
        # come while they do (past the run's end it finds the interpreter finishing, and no handler)
        time.sleep(0.05)
        tree = descendants(p.pid)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 143, err
        assert err.splitlines() == ["interrupted by SIGTERM: rolled back; nothing was committed after the last "
                                    "completed batch"]
        deadline = time.monotonic() + 10
        while any(map(running, tree)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [t for t in tree if running(t)] == []
        assert [(r["status"], r["message"]) for r in pg_db.rows("runs")] == [("interrupted", "interrupted by SIGTERM")]
        r = export(pg_db, sample_archive, "--jobs", "2")
        assert r.exit_code == 0, r.output
        assert export(clean, sample_archive).exit_code == 0
        assert _content(pg_db) == _content(clean)
    finally:
        next(gen, None)


def test_a_connection_cut_mid_copy_is_dropped_not_reset(pg_db, caplog):
    """A stop signal inside a COPY leaves the connection mid-protocol: its rollback fails, so it is
    dropped (the server rolls back with it) instead of handed back to the pool, whose reset would
    fail again and log a traceback over the one-line message."""
    import logging

    from exporter.connectors.sql import create_sink

    from .records_fixture import account_records, ctx

    sink = create_sink(pg_db.url, {**pg_db.options, "background_load": False})
    sink.open(ctx())
    sink.write(list(account_records()))
    raw = sink._conn.connection.dbapi_connection
    raw.execute("CREATE TEMP TABLE cut (x int)")
    pg = raw.pgconn  # a COPY whose end was sent and its answer never read, as a signal in copy_end's wait leaves it
    pg.send_query(b"COPY cut FROM STDIN")
    while pg.is_busy():
        pg.consume_input()
    pg.get_result()
    pg.put_copy_data(b"1\n")
    pg.put_copy_end()
    with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
        sink.close(False)
    assert not [r for r in caplog.records if r.name.startswith("sqlalchemy")], caplog.text
    with sa.create_engine(pg_db.url).connect() as con:  # nothing of the run's open batch was kept
        assert con.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                                   "AND datname = current_database() AND pid <> pg_backend_pid()")).scalar() == 0
