"""The ``postgresql+pyodbc`` dialect (connectors/sql/pg_pyodbc.py) against the real PostgreSQL
through Debian's psqlODBC: type round trips (checked through psycopg too), RETURNING,
insertmanyvalues, reflection, transactions and savepoints, session settings."""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import exporter.connectors.sql.dialects.postgresql  # noqa: F401  (registers postgresql+pyodbc)
import pytest
import sqlalchemy as sa
from exporter.connectors.sql.pg_pyodbc_types import format_pg_array, parse_pg_array
from sqlalchemy.dialects import postgresql

from tests.conftest import require_service

from .conftest import odbc_drivers


def connect_string(url: str) -> str:
    engine = sa.create_engine(url)
    (cs,), kwargs = engine.dialect.create_connect_args(engine.url)
    assert kwargs == {}
    return cs


def test_connection_strings():
    assert connect_string("postgresql+pyodbc://bob@db.example:6543/sales") == (
        "DRIVER={PostgreSQL Unicode};Servername=db.example;Port=6543;Database=sales;UID=bob;"
        "BoolsAsChar=0;Protocol=7.4-0")
    cs = connect_string("postgresql+pyodbc://bob:p%3Bw%7Dd@h/db?driver=PostgreSQL+ANSI&sslmode=verify-full"
                        "&boolsaschar=1")
    assert cs == ("DRIVER={PostgreSQL ANSI};Servername=h;Database=db;UID=bob;PWD={p;w}}d};sslmode=verify-full;"
                  "boolsaschar=1;Protocol=7.4-0")
    assert connect_string("postgresql+pyodbc://bob@mydsn").startswith("DSN=mydsn;UID=bob;")
    assert connect_string("postgresql+pyodbc:///?odbc_connect=DSN%3Dx%3BUID%3Dy") == "DSN=x;UID=y"


@pytest.mark.parametrize("value", [
    [], ["a", "b c", None, 'q"uote', "back\\slash", "", "NULL", "{br,ace}"], [[1, 2], [3, None]],
    [True, False], ["é🙂"],
])
def test_array_literals_round_trip(value):
    text = format_pg_array(value)
    parsed = parse_pg_array(text)

    def as_text(v):
        if isinstance(v, list):
            return [as_text(x) for x in v]
        if isinstance(v, bool):
            return "t" if v else "f"
        return None if v is None else str(v)

    assert parsed == as_text(value)
    assert parse_pg_array("[0:1]={x,y}") == ["x", "y"]
    assert parse_pg_array('{ a , "b" }') == ["a", "b"]


@pytest.fixture
def pg(pg_odbc_db):
    engine = sa.create_engine(pg_odbc_db.url)
    try:
        yield engine, pg_odbc_db
    finally:
        engine.dispose()


def _table(schema: str) -> sa.Table:
    return sa.Table(
        "kinds", sa.MetaData(schema=schema),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.Numeric(38, 10)), sa.Column("f", sa.Float), sa.Column("big", sa.BigInteger),
        sa.Column("s", sa.Unicode(40)), sa.Column("txt", sa.UnicodeText), sa.Column("d", sa.Date),
        sa.Column("tm", sa.Time), sa.Column("ts", sa.DateTime), sa.Column("b", sa.Boolean),
        sa.Column("by", sa.LargeBinary), sa.Column("u", sa.Uuid), sa.Column("j", sa.JSON),
        sa.Column("tags", postgresql.ARRAY(sa.Text)), sa.Column("nums", sa.ARRAY(sa.Integer)),
        sa.Column("days", sa.ARRAY(sa.Date)), sa.Column("iv", sa.Interval),
        sa.Column("color", sa.Enum("red", "green", name=f"color_{schema}", schema=schema)),
    )


ROWS = [
    {"n": Decimal("12.5"), "f": 1.25, "big": 2 ** 62, "s": "🙂 'q' \"dq\" \\ %s %% ?", "txt": "é" * (1 << 20),
     "d": dt.date(2024, 2, 29), "tm": dt.time(8, 30, 1, 123456), "ts": dt.datetime(2024, 2, 29, 8, 30, 15, 654321),
     "b": True, "by": b"\x00\xff\x00binary" * 3, "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
     "j": {"a": [1, "é", None]}, "tags": ["x", 'y "z"', None, "back\\slash", "a,b"], "nums": [1, -2, None],
     "days": [dt.date(2024, 1, 1)], "iv": dt.timedelta(days=-3, hours=4, microseconds=5), "color": "red"},
    {"n": None, "f": None, "big": None, "s": None, "txt": None, "d": None, "tm": None, "ts": None, "b": None,
     "by": None, "u": None, "j": None, "tags": None, "nums": None, "days": None,
     "iv": None, "color": None},
    {"n": Decimal("-0.0000000001"), "f": -2.0, "big": -1, "s": "", "txt": "tab\there\nnewline\r\n", "d": dt.date(1, 1, 1),
     "tm": dt.time(23, 59, 59), "ts": dt.datetime(1999, 12, 31, 23, 59, 59), "b": False, "by": b"",
     "u": uuid.UUID(int=0), "j": [], "tags": [], "nums": [], "days": [], "iv": dt.timedelta(0), "color": "green"},
]


def test_types_round_trip_through_pyodbc_and_psycopg(pg):
    engine, db = pg
    t = _table(db.schema)
    rows = [{"id": i, **r} for i, r in enumerate(ROWS, 1)]
    with engine.begin() as c:
        t.create(c)
        c.execute(t.insert(), rows[:1])  # single row
        c.execute(t.insert(), rows[1:])  # executemany -> one multi-row INSERT (insertmanyvalues)
    with engine.connect() as c:
        back = [dict(r._mapping) for r in c.execute(sa.select(t).order_by(t.c.id))]
    j_null = {**rows[1], "j": None}  # JSON None is stored as JSON null and read back as None
    assert back == [rows[0], j_null, rows[2]]
    # what pyodbc wrote, read through psycopg (another driver) with the same table definition
    with db.engine().connect() as c:
        other = [dict(r._mapping) for r in c.execute(sa.select(t).order_by(t.c.id))]
    assert other == [rows[0], j_null, rows[2]]
    with engine.connect() as c:  # JSON paths and array/enum comparisons bind through pyodbc too
        assert c.execute(sa.select(t.c.id).where(t.c.j["a"][1].as_string() == "é")).scalar() == 1
        assert c.execute(sa.select(t.c.id).where(t.c.tags.contains(["a,b"]))).scalar() == 1
        assert c.execute(sa.select(t.c.id).where(t.c.color == "green")).scalar() == 3
        assert c.execute(sa.select(sa.literal(["p", None, 'q"'], sa.ARRAY(sa.Text)))).scalar() == ["p", None, 'q"']


def test_returning_and_insertmanyvalues_keep_parameter_order(pg):
    engine, db = pg
    md = sa.MetaData(schema=db.schema)
    t = sa.Table("ret", md, sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
                 sa.Column("name", sa.Unicode(20)), sa.Column("at", sa.DateTime, server_default=sa.func.now()))
    with engine.begin() as c:
        md.create_all(c)
        first = c.execute(t.insert().returning(t.c.id, t.c.at), {"name": "first"}).one()
        assert first.id == 1 and isinstance(first.at, dt.datetime)
        names = [f"n{i}" for i in range(250)]
        got = c.execute(t.insert().returning(t.c.id, t.c.name, sort_by_parameter_order=True),
                        [{"name": n} for n in names]).all()
        assert [r.name for r in got] == names and [r.id for r in got] == list(range(2, 252))
        upd = c.execute(t.update().where(t.c.id <= 3).values(name="u").returning(t.c.id)).scalars().all()
        assert sorted(upd) == [1, 2, 3]
        assert c.execute(t.delete().where(t.c.name == "u")).rowcount == 3


def test_reflection(pg):
    engine, db = pg
    md = sa.MetaData(schema=db.schema)
    parent = sa.Table("parent", md, sa.Column("a", sa.Unicode(10), primary_key=True),
                      sa.Column("b", sa.Integer, primary_key=True), sa.Column("c", sa.Numeric(12, 3)),
                      sa.Column("flag", sa.Boolean, nullable=False, server_default=sa.true()),
                      sa.UniqueConstraint("c", name="parent_c_key"))
    sa.Table("child", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("a", sa.Unicode(10)),
             sa.Column("b", sa.Integer), sa.ForeignKeyConstraint(["a", "b"], [parent.c.a, parent.c.b]),
             sa.Index("child_ab", "a", "b"))
    with engine.begin() as c:
        md.create_all(c)
    with engine.connect() as c:
        insp = sa.inspect(c)
        assert insp.default_schema_name == "public"
        assert set(insp.get_table_names(schema=db.schema)) == {"parent", "child"}
        assert insp.has_table("parent", schema=db.schema) and not insp.has_table("nope", schema=db.schema)
        cols = {x["name"]: x for x in insp.get_columns("parent", schema=db.schema)}
        assert isinstance(cols["a"]["type"], sa.VARCHAR) and cols["a"]["type"].length == 10
        assert isinstance(cols["c"]["type"], sa.NUMERIC) and (cols["c"]["type"].precision, cols["c"]["type"].scale) == (12, 3)
        assert isinstance(cols["flag"]["type"], sa.BOOLEAN) and cols["flag"]["nullable"] is False
        assert insp.get_pk_constraint("parent", schema=db.schema)["constrained_columns"] == ["a", "b"]
        assert [u["column_names"] for u in insp.get_unique_constraints("parent", schema=db.schema)] == [["c"]]
        (fk,) = insp.get_foreign_keys("child", schema=db.schema)
        assert fk["constrained_columns"] == ["a", "b"] and fk["referred_columns"] == ["a", "b"]
        assert fk["referred_table"] == "parent"
        (ix,) = insp.get_indexes("child", schema=db.schema)
        assert ix["name"] == "child_ab" and ix["column_names"] == ["a", "b"]
        again = sa.Table("parent", sa.MetaData(schema=db.schema), autoload_with=c)
        assert [x.name for x in again.primary_key.columns] == ["a", "b"]


def test_transactions_savepoints_and_session_settings(pg):
    engine, db = pg
    assert engine.dialect.driver == "pyodbc" and engine.dialect.paramstyle == "qmark"
    md = sa.MetaData(schema=db.schema)
    t = sa.Table("tx", md, sa.Column("id", sa.Integer, primary_key=True))
    with engine.begin() as c:
        md.create_all(c)
        assert engine.dialect.server_version_info[0] >= 10
        assert engine.dialect.default_isolation_level == "READ COMMITTED"
    with engine.connect() as c:
        c.execute(t.insert(), {"id": 1})
        sp = c.begin_nested()
        with pytest.raises(sa.exc.IntegrityError):
            c.execute(t.insert(), {"id": 1})
        sp.rollback()  # PostgreSQL semantics: the transaction goes on after ROLLBACK TO SAVEPOINT
        c.execute(t.insert(), {"id": 2})
        c.rollback()
        assert c.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 0
        c.rollback()
    with engine.connect() as c:
        with pytest.raises(sa.exc.DataError):
            c.exec_driver_sql("SELECT 1/0")
        c.rollback()
        assert c.exec_driver_sql("SELECT 1").scalar() == 1
        c.rollback()
    with engine.connect().execution_options(isolation_level="SERIALIZABLE") as c:
        assert c.exec_driver_sql("SHOW transaction_isolation").scalar() == "serializable"
        c.rollback()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        assert c.connection.dbapi_connection.autocommit
        c.execute(t.insert(), {"id": 3})
    with engine.connect().execution_options(postgresql_readonly=True) as c:
        assert c.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
        c.rollback()
    with engine.connect() as c:  # the pool handed the connection back reset
        assert not c.connection.dbapi_connection.autocommit
        assert c.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"
        assert c.exec_driver_sql("SHOW transaction_read_only").scalar() == "off"
        assert c.execute(sa.select(t.c.id)).scalars().all() == [3]


def test_ansi_driver_round_trips_unicode(pg):
    require_service("PostgreSQL ANSI" in odbc_drivers(), "the PostgreSQL ANSI ODBC driver (odbc-postgresql)")
    _engine, db = pg
    engine = sa.create_engine(db.url.replace("PostgreSQL+Unicode", "PostgreSQL+ANSI"))
    try:
        t = sa.Table("ansi", sa.MetaData(schema=db.schema), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("s", sa.UnicodeText))
        value = "🙂 é こんにちは " + "ü" * 100_000
        with engine.begin() as c:
            assert "psqlodbca" in c.connection.dbapi_connection.getinfo(__import__("pyodbc").SQL_DRIVER_NAME)
            t.create(c)
            c.execute(t.insert(), [{"id": 1, "s": value}, {"id": 2, "s": None}])
        with engine.connect() as c:
            assert c.execute(sa.select(t.c.s).order_by(t.c.id)).scalars().all() == [value, None]
    finally:
        engine.dispose()


def test_dsn_from_odbc_ini(pg, tmp_path, monkeypatch):
    """``postgresql+pyodbc://user@DSN``: the server, port and database come from odbc.ini."""
    _engine, db = pg
    ini = tmp_path / "odbc.ini"
    ini.write_text("[exp_test_dsn]\nDriver=PostgreSQL Unicode\nServername=127.0.0.1\nPort=5432\nDatabase=test\n")
    monkeypatch.setenv("ODBCINI", str(ini))  # unixODBC's user DSN file
    engine = sa.create_engine("postgresql+pyodbc://postgres@exp_test_dsn")
    try:
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT current_database(), current_user").one() == ("test", "postgres")
            assert sa.inspect(c).has_schema(db.schema)
    finally:
        engine.dispose()
