"""MariaDB/MySQL through LOAD DATA LOCAL INFILE (the default loader with PyMySQL), against the
real MariaDB: same tables as the multi-row INSERT loader for hostile values, fresh loads and
re-runs with edits; a value the server would only warn about in LOCAL mode still fails loudly;
the server cannot make the client send a file it did not offer; a server with local_infile off
gets INSERT statements; a batch that loses a deadlock is written again."""
from __future__ import annotations

import contextlib
import logging

import pymysql
import pytest
import sqlalchemy as sa

from connectors.sql import create_sink
from connectors.sql.capabilities import profile_for
from connectors.sql.loaders import LoadDataLoader
from exporter.errors import SinkError, TransientSinkError

from .conftest import MY_ADMIN, _my_db
from .records_fixture import account_records, ctx, form, media_for, run_export, submission

TABLE = "visite_de_chantier_1001"
CHILD = "visite_de_chantier_1001__lignes"
HOSTILE = ["tab\there", "line\nbreak\r\nwindows", "back\\slash \\N \\t", "\\N", "NULL", "nul\x00byte",
           "émoji 🚀 日本語", "'quotes\" `ticks`", "x" * 100_000, "", "trailing\\"]
VOLATILE = {"updated_at", "started_at", "ended_at"}  # wall-clock times of the run itself


def _stream(n: int = len(HOSTILE), edit: bool = False) -> list:
    f = form(extra_fields={"note": {"type": "textarea"}})
    recs: list = [*account_records(), f]
    for i in range(n):
        sid = str(i + 1)
        text = HOSTILE[i % len(HOSTILE)] + ("-edited" if edit and i % 2 else "")
        s = submission(f, sid, nom=text, rows=(i % 3), extra={"note": {"value": text[::-1]}},
                       update="2024-03-02 10:00:00" if edit else "2024-03-01 10:00:00")
        recs += [s, *media_for(s)]
    return recs


def _snapshot(db) -> dict[str, list[dict]]:
    out = {}
    for t in sorted(db.tables()):
        out[t] = [{k: v for k, v in r.items() if k not in VOLATILE} for r in db.rows(t)]
    return out


@contextlib.contextmanager
def _multirow_db():
    with _my_db("mysql", "mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4") as db:
        db.options = {"loader": "multirow"}
        yield db


def test_load_data_writes_what_multirow_inserts_write(my_db):
    sink = create_sink(my_db.url, my_db.options)
    run_export(sink, _stream(), batch=40)
    assert sink._loader.name == "loaddata" and sink._loader.enabled
    assert sink._loader.loaded_rows > 40 and sink._loader.fallbacks == 0  # a fresh load never falls back
    with _multirow_db() as other:
        ref = create_sink(other.url, other.options)
        run_export(ref, _stream(), batch=40)
        assert ref._loader.name == "multirow"
        want = _snapshot(other)
    got = _snapshot(my_db)
    assert got == want
    names = sorted(r["nom"] for r in got[TABLE])
    assert names == sorted(HOSTILE)  # every hostile text stored as it was, NUL and "\N" included


def test_rerun_with_edits_merges_like_multirow(my_db):
    sink = create_sink(my_db.url, my_db.options)
    run_export(sink, _stream(), batch=40)
    again = create_sink(my_db.url, my_db.options)
    run_export(again, _stream(edit=True), run="20240302T100000Z", batch=40)
    assert again._loader.fallbacks > 0  # existing keys: merged by INSERT ... ON DUPLICATE KEY UPDATE
    with _multirow_db() as other:
        run_export(create_sink(other.url, other.options), _stream(), batch=40)
        run_export(create_sink(other.url, other.options), _stream(edit=True), run="20240302T100000Z", batch=40)
        want = _snapshot(other)
    got = _snapshot(my_db)
    assert got == want
    assert sum(r["nom"].endswith("-edited") for r in got[TABLE]) == len(HOSTILE) // 2


@pytest.fixture
def infile_conn(my_db):
    engine = sa.create_engine(my_db.url, connect_args={"local_infile": True})
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE narrow (k INT PRIMARY KEY, v VARCHAR(3))")
        conn.commit()
        yield conn
    engine.dispose()


def test_a_value_the_server_would_only_warn_about_still_fails(infile_conn):
    # LOCAL mode turns "Data too long" into a warning and truncates: the load is rolled back and
    # the INSERT statement gets the server's strict-mode error
    # (and what was loaded before in the same transaction goes with it)
    conn = infile_conn
    loader = LoadDataLoader(conn, profile_for("mysql"))
    table = sa.Table("narrow", sa.MetaData(), autoload_with=conn)
    conn.rollback()
    with conn.begin():
        loader.insert(table, [{"k": 1, "v": "abc"}])
    assert loader.loaded_rows == 1
    with pytest.raises(pymysql.err.DataError, match="1406"):  # the sink makes it one SinkError line
        with conn.begin():
            loader.insert(table, [{"k": 2, "v": "ab"}])
            loader.insert(table, [{"k": 3, "v": "abcdef"}])
    assert loader.loaded_rows == 2 and loader.fallbacks == 1
    assert conn.exec_driver_sql("SELECT k, v FROM narrow ORDER BY k").fetchall() == [(1, "abc")]


def test_the_server_cannot_read_a_file_the_client_did_not_offer(infile_conn, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("7\tsecret\n")
    conn = infile_conn
    LoadDataLoader(conn, profile_for("mysql"))  # registers this connection's streams
    conn.rollback()
    with pytest.raises(sa.exc.OperationalError, match="did not offer"):
        conn.exec_driver_sql(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE narrow")
    conn.rollback()
    assert conn.exec_driver_sql("SELECT COUNT(*) FROM narrow").scalar() == 0


def test_server_without_local_infile_gets_insert_statements(my_db, caplog):
    caplog.set_level(logging.INFO, logger="exporter.sql")
    admin = sa.create_engine(MY_ADMIN)
    try:
        with admin.begin() as c:
            before = c.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar()
            c.exec_driver_sql("SET GLOBAL local_infile = 0")
        sink = create_sink(my_db.url, my_db.options)
        run_export(sink, _stream(4), batch=40)
        assert sink._loader.name == "loaddata" and not sink._loader.enabled and sink._loader.loaded_rows == 0
        assert len(my_db.rows(TABLE)) == 4
        assert any("local_infile = 0" in r.getMessage() for r in caplog.records)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"SET GLOBAL local_infile = {int(before)}")
        admin.dispose()


def test_a_pymysql_without_the_file_request_hook_never_opens_local_infile(my_db, monkeypatch):
    # PyMySQL 1.1 answers file requests in a class of its own: no guard, so no local_infile at all
    import pymysql.connections as pc

    monkeypatch.delattr(pc, "_send_local_file")
    sink = create_sink(my_db.url, my_db.options)
    sink.open(ctx())
    try:
        assert sink._conn.connection.driver_connection._local_infile is False
        assert not sink._loader.enabled
    finally:
        sink.close(True)
    run_export(sink, _stream(4), batch=40)
    assert len(my_db.rows(TABLE)) == 4


#: loads in step with the batches, as in the workers of a parallel export (the ones that meet deadlocks)
IN_STEP = {"background_load": False}


def _deadlock_on(monkeypatch, calls: set[int]):
    """Make the loader's n-th LOAD DATA (1-based, for n in ``calls``) fail the way InnoDB fails a
    deadlock victim: error 1213, the transaction rolled back by the server."""
    real = LoadDataLoader._load
    seen = {"n": 0}

    def load(self, table, cols, rows):
        seen["n"] += 1
        if seen["n"] in calls:
            self.conn.connection.driver_connection.rollback()
            raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock; try restarting "
                                                     "transaction")
        return real(self, table, cols, rows)
    monkeypatch.setattr(LoadDataLoader, "_load", load)
    return seen


def test_a_batch_that_loses_a_deadlock_is_written_again(my_db, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="exporter.retry")
    with _multirow_db() as other:
        run_export(create_sink(other.url, other.options), _stream(), batch=6)
        want = _snapshot(other)
    seen = _deadlock_on(monkeypatch, {9, 10, 16})  # twice in a row (the second while planning again), once later
    sink = create_sink(my_db.url, {**my_db.options, **IN_STEP})
    run_export(sink, _stream(), batch=6)
    assert _snapshot(my_db) == want and seen["n"] > 16
    retries = [r.getMessage() for r in caplog.records if "writing a batch failed" in r.getMessage()]
    assert len(retries) == 3 and all("Deadlock found" in m for m in retries), retries
    assert my_db.rows("runs")[0]["submissions"] == len(HOSTILE)  # counted once


def test_a_batch_that_keeps_losing_deadlocks_fails_without_committing_it(my_db, monkeypatch):
    from connectors.sql.sink import WRITE_ATTEMPTS

    f_records = _stream(4)
    seen = _deadlock_on(monkeypatch, set(range(1, 1000)))
    with pytest.raises(TransientSinkError, match="Deadlock found"):
        run_export(create_sink(my_db.url, {**my_db.options, **IN_STEP}), f_records, batch=40)
    assert seen["n"] == WRITE_ATTEMPTS  # the first load of each attempt failed
    assert my_db.rows("users") == [] and my_db.rows("export_state") == []
    assert my_db.rows("runs")[0]["status"] == "failed"


def test_an_overlapped_load_that_loses_a_deadlock_fails_the_run_cleanly(my_db, monkeypatch):
    """In one process the loads run in the background; a deadlock there (another program writing
    the same tables) comes with the next batch, too late to write its batch again: the run fails
    in one line, and what it committed before is whole."""
    _deadlock_on(monkeypatch, {9})
    with pytest.raises(SinkError, match="Deadlock found") as ei:
        run_export(create_sink(my_db.url, my_db.options), _stream(), batch=6)
    assert not isinstance(ei.value, TransientSinkError)
    assert my_db.rows("runs")[0]["status"] == "failed"
    subs = {r["submission_id"] for r in my_db.rows(TABLE)}
    assert {r["submission_id"] for r in my_db.rows(CHILD)} <= subs
    assert {r["submission_id"] for r in my_db.rows("media")} <= subs
