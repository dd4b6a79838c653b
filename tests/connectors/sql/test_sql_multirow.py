"""MariaDB/MySQL through INSERT statements (the loader with PyMySQL), against the real MariaDB:
hostile values, fresh loads and re-runs with edits give the same tables whether the statements
run on the background thread or in step with the batches; rows read by JSON_TABLE are stored as
``INSERT ... VALUES`` stores them; a value the server would truncate fails loudly; the connection
never lets the server ask for a client file (no ``LOAD DATA LOCAL``); a batch that loses a
deadlock is written again."""
from __future__ import annotations

import logging

import pymysql
import pytest
import sqlalchemy as sa
from exporter.connectors.sql import create_sink
from exporter.connectors.sql.dialects import profile_for
from exporter.connectors.sql.dialects.mysql import dialect as mysql_dialect
from exporter.connectors.sql.mysql_insert import MultiRowLoader

from exporter.errors import SinkError, TransientSinkError

from .conftest import _my_db
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


def test_background_and_in_step_loads_write_the_same_tables_also_on_reruns(my_db):
    sink = create_sink(my_db.url, my_db.options)
    run_export(sink, _stream(), batch=40)
    assert sink._loader.name == "multirow"
    first = _snapshot(my_db)
    assert sorted(r["nom"] for r in first[TABLE]) == sorted(HOSTILE)  # every hostile text as it was, NUL and "\\N" included
    run_export(create_sink(my_db.url, my_db.options), _stream(edit=True), run="20240302T100000Z", batch=40)
    with _my_db("mysql", "mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4") as other:
        opts = {**other.options, **IN_STEP}
        run_export(create_sink(other.url, opts), _stream(), batch=40)
        assert _snapshot(other) == first
        run_export(create_sink(other.url, opts), _stream(edit=True), run="20240302T100000Z", batch=40)
        want = _snapshot(other)
    got = _snapshot(my_db)
    assert got == want
    assert sum(r["nom"].endswith("-edited") for r in got[TABLE]) == len(HOSTILE) // 2


@pytest.fixture
def narrow(my_db):
    engine = sa.create_engine(my_db.url)
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE narrow (k INT PRIMARY KEY, v VARCHAR(3))")
        conn.commit()
        yield conn
    engine.dispose()


@pytest.mark.parametrize("json_table", [True, False], ids=["json_table", "values"])
def test_a_value_the_column_cannot_hold_fails(narrow, json_table):
    # strict mode: "Data too long" is an error, not a truncation (the sink makes it one SinkError line),
    # and what was inserted before in the same transaction goes with it; also when JSON_TABLE
    # reads the rows (its own conversion to the column's type would truncate with a warning)
    conn = narrow
    loader = MultiRowLoader(conn, profile_for("mysql"), json_table=json_table)
    table = sa.Table("narrow", sa.MetaData(), autoload_with=conn)
    conn.rollback()
    with conn.begin():
        loader.insert(table, ["k", "v"], [(1, "abc")])
    with pytest.raises(pymysql.err.DataError, match="1406"):
        with conn.begin():
            loader.insert(table, ["k", "v"], [(2, "ab")])
            loader.insert(table, ["k", "v"], [(3, "abcdef")])
    assert conn.exec_driver_sql("SELECT k, v FROM narrow ORDER BY k").fetchall() == [(1, "abc")]


def test_the_server_cannot_ask_for_a_client_file(my_db, tmp_path):
    """The sink's connection is opened without ``local_infile``: a ``LOAD DATA LOCAL`` request
    (which a server may send in answer to any statement) is never answered with a file."""
    secret = tmp_path / "secret.txt"
    secret.write_text("7\tsecret\n")
    sink = create_sink(my_db.url, my_db.options)
    sink.open(ctx())
    try:
        raw = sink._conn.connection.driver_connection
        assert raw._local_infile is False
        with raw.cursor() as cur:
            cur.execute("CREATE TABLE narrow (k INT PRIMARY KEY, v VARCHAR(10))")
            with pytest.raises((pymysql.err.MySQLError, RuntimeError)):
                cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE narrow")
    finally:
        sink.close(False)
    assert "narrow" not in my_db.tables() or my_db.rows("narrow") == []


#: loads in step with the batches, as in the workers of a parallel export (the ones that meet deadlocks)
IN_STEP = {"background_load": False}


def _deadlock_on(monkeypatch, calls: set[int]):
    """Make the loader's n-th statement run (1-based, for n in ``calls``) fail the way InnoDB fails
    a deadlock victim: error 1213, the transaction rolled back by the server."""
    real = MultiRowLoader._run
    seen = {"n": 0}

    def run(self, table, cols, rows, merge_on=None):
        seen["n"] += 1
        if seen["n"] in calls:
            self.conn.connection.driver_connection.rollback()
            raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock; try restarting "
                                                     "transaction")
        return real(self, table, cols, rows, merge_on)
    monkeypatch.setattr(MultiRowLoader, "_run", run)
    return seen


def test_a_batch_that_loses_a_deadlock_is_written_again(my_db, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="exporter.retry")
    with _my_db("mysql", "mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4") as other:
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
    from exporter.connectors.sql.sink import WRITE_ATTEMPTS

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


def test_rows_go_to_pymysql_as_tuples_when_the_placeholders_allow():
    """The compiled statement's named placeholders become positional (the row tuples are sent
    without a dict per row) when each value appears exactly once; a row's values are then put in
    the placeholders' order (SQLAlchemy lists the columns in the table's order). Otherwise the
    rows go as named parameters."""
    from exporter.connectors.sql.mysql_insert import _positional

    sql = "INSERT INTO `t` (`a`, `b%%`) VALUES (%(p0)s, %(p1)s) ON DUPLICATE KEY UPDATE `a` = VALUES(`a`)"
    assert _positional(sql, 2) == (
        "INSERT INTO `t` (`a`, `b%%`) VALUES (%s, %s) ON DUPLICATE KEY UPDATE `a` = VALUES(`a`)", None)
    odd = "INSERT INTO `%%(p0)s` (`a`, `b`) VALUES (%(p0)s, %(p1)s)"  # a name that looks like a placeholder
    assert _positional(odd, 2) is None
    assert _positional("INSERT INTO t (a) VALUES (%(p0)s)", 2) is None  # a value with no placeholder
    swapped = _positional("INSERT INTO t (b, c, a) VALUES (%(p1)s, %(p2)s, %(p0)s)", 3)
    assert swapped is not None
    sql_pos, reorder = swapped
    assert sql_pos == "INSERT INTO t (b, c, a) VALUES (%s, %s, %s)"
    assert reorder is not None and reorder(("A", "B", "C")) == ("B", "C", "A")


@pytest.fixture
def typed(my_db):
    """Two tables of every column kind the sink writes, and a loader on a connection to them."""
    engine = sa.create_engine(my_db.url)
    md = sa.MetaData()
    from exporter.connectors.sql.columns import sa_type

    profile = profile_for("mysql")
    kinds = ["id", "text", "number", "double", "date", "time", "datetime", "boolean", "int", "bigint"]
    tables = [sa.Table(name, md, *(sa.Column(k, sa_type(k, profile), primary_key=k == "id") for k in kinds),
                       mysql_charset="utf8mb4", mysql_collate="utf8mb4_bin") for name in ("by_json", "by_values")]
    md.create_all(engine)
    with engine.connect() as conn:
        loader = mysql_dialect.loader(conn, profile)
        conn.rollback()  # (the loader asked the server a setting)
        assert isinstance(loader, MultiRowLoader)
        yield conn, loader, tables, kinds
    engine.dispose()


def test_rows_sent_as_json_are_stored_as_the_values_statements_store_them(typed):
    """On MariaDB 10.6+ the rows go as one JSON document per statement (read back by JSON_TABLE,
    every value converted by the INSERT as a quoted literal would be); the tables hold exactly
    what multi-row ``INSERT ... VALUES`` statements store."""
    import datetime as dt
    from decimal import Decimal

    conn, loader, (by_json, by_values), kinds = typed
    assert loader.json_table  # the dialect's choice on MariaDB 10.11
    rows = [(str(i), text, number, double, date, time, when, flag, small, big)
            for i, (text, number, double, date, time, when, flag, small, big) in enumerate([
                *((h, None, None, None, None, None, None, None, None) for h in HOSTILE),
                ("x", Decimal("12345678901234567890.0123456789"), 1.5e-300, dt.date(1900, 1, 1),
                 dt.time(23, 59, 59), dt.datetime(2024, 2, 29, 23, 59, 59, 999999), True, -2 ** 31, 2 ** 63 - 1),
                ("y", Decimal("-1E+5"), -0.0, dt.date(9999, 12, 31), dt.time(0, 0), dt.datetime(1970, 1, 1), False, 0, 0),
                ("z", Decimal("0.00000000001"), 1 / 3, None, None, None, None, None, None),  # rounded to 10 places
            ])]
    with conn.begin():
        loader.insert(by_json, kinds, rows)
        loader.json_table = False
        loader.insert(by_values, kinds, rows)
    got_json = conn.execute(sa.select(by_json).order_by(by_json.c.id)).all()
    assert got_json == conn.execute(sa.select(by_values).order_by(by_values.c.id)).all()
    stored = {r[0]: r for r in got_json}
    assert [stored[str(i)][1] for i in range(len(HOSTILE))] == HOSTILE
    x = stored[str(len(HOSTILE))]
    assert x[7] is True and x[2] == Decimal("12345678901234567890.0123456789") and x[9] == 2 ** 63 - 1


def test_json_rows_are_cut_to_fit_a_statement_and_a_value_json_cannot_carry_goes_as_values(typed, monkeypatch):
    conn, loader, (by_json, _), kinds = typed
    loader.max_stmt = 64 << 10  # a document of these rows would not fit: cut in halves until it does
    sent: list[int] = []
    many = loader._many
    monkeypatch.setattr(loader, "_many", lambda *a: (sent.append(len(a[2])), many(*a)))
    rows = [(str(i), "é" * 2000) + (None,) * 8 for i in range(200)]
    rows.append(("lone", "\ud800" + "x", *(None,) * 8))  # a lone surrogate: orjson refuses it
    with pytest.raises(UnicodeEncodeError):  # as the VALUES statement fails on it
        with conn.begin():
            loader.insert(by_json, kinds, rows)
    assert sent and sent[0] <= len(rows)  # the chunk holding it went the VALUES way
    def statements() -> int:
        return int(conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_insert_select'").one()[1])
    with conn.begin():
        before = statements()
        loader.insert(by_json, kinds, rows[:-1])
        assert statements() - before >= 2 * len(rows) * 4000 // (64 << 10)  # a hex digit per half byte
    assert conn.execute(sa.select(sa.func.count()).select_from(by_json)).scalar() == 200
