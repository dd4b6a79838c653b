"""URLs, secrets and connection failures: one clear SinkError/ConfigError, never a password."""
from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa
from exporter.connectors.sql import create_sink

from exporter.errors import ConfigError, SinkError
from exporter.registry import create_sink as registry_create_sink

from .records_fixture import FORM_ID, ctx, full_stream, run_export


def test_registry_routes_every_sql_scheme(tmp_path):
    for url in (f"sqlite:///{tmp_path}/a.db", "postgresql+psycopg://u@h/db", "postgres://u@h/db",
                "mysql+pymysql://u@h/db", "mariadb+pymysql://u@h/db", "mssql+pyodbc://u@dsn",
                "access+pyodbc://@dsn", "postgresql+pyodbc://u@h/db?driver=PostgreSQL+Unicode"):
        sink = registry_create_sink(url, {})
        assert type(sink).__name__ == "SqlSink"
    assert create_sink("postgres://u@h/db", {}).url.drivername == "postgresql+psycopg"
    assert create_sink("mysql://u@h/db", {}).url.drivername == "mysql+pymysql"


def test_psycopg2_urls_are_served_by_psycopg_with_one_notice(caplog, pg_db):
    """psycopg 3 is the one PostgreSQL driver; the postgresql+psycopg2:// URLs of existing cron
    jobs keep working (the same database, one notice line) and load the same rows."""
    old = pg_db.url.replace("+psycopg:", "+psycopg2:")
    assert "+psycopg2:" in old
    with caplog.at_level("WARNING", logger="exporter.sql"):
        sink = create_sink(old, pg_db.options)
    assert sink.url.drivername == "postgresql+psycopg"
    notices = [r.getMessage() for r in caplog.records if "psycopg2" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0] and "psycopg 3" in notices[0]
    run_export(sink, full_stream())
    assert sink._loader.name == "copy"
    assert [r["submission_id"] for r in pg_db.rows("visite_de_chantier_1001")] == ["1", "2", "3"]


def test_password_from_env_file_or_url_env_is_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("EXP_TEST_PW", "s3cret-env")
    s = create_sink("postgresql://bob@db.example/x", {"password_env": "EXP_TEST_PW"})
    assert s.url.password == "s3cret-env" and "s3cret" not in s.name and "s3cret" not in repr(s)
    pw = tmp_path / "pw"
    pw.write_text("s3cret-file\n")
    s = create_sink("mysql+pymysql://bob@db.example/x", {"password_file": str(pw)})
    assert s.url.password == "s3cret-file" and "s3cret" not in s.name
    monkeypatch.setenv("EXP_TEST_URL", "postgresql://bob:s3cret-url@db.example/x")
    s = create_sink("", {"url_env": "EXP_TEST_URL"})
    assert s.url.password == "s3cret-url" and "s3cret" not in s.name
    with pytest.raises(ConfigError, match="EXP_MISSING"):
        create_sink("postgresql://bob@h/x", {"password_env": "EXP_MISSING"})
    with pytest.raises(ConfigError, match="password file"):
        create_sink("postgresql://bob@h/x", {"password_file": str(tmp_path / "none")})
    with pytest.raises(ConfigError):
        create_sink("", {"url_env": "EXP_MISSING"})


def test_sqlite_missing_directory(tmp_path):
    sink = create_sink(f"sqlite:///{tmp_path}/nope/x.db", {})
    with pytest.raises(SinkError, match="does not exist"):
        sink.open(ctx())


def test_unreachable_server_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("EXP_TEST_PW", "hunter2-secret")
    sink = create_sink("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=3",
                       {"password_env": "EXP_TEST_PW"})
    with pytest.raises(SinkError) as ei:
        sink.open(ctx())
    msg = str(ei.value)
    assert "cannot connect" in msg and "hunter2" not in msg and "\n" not in msg
    with pytest.raises(SinkError):
        sink.load_state()


@pytest.fixture
def my_user(my_db):
    """A MariaDB account with a password and only SELECT on the test database."""
    user, pw = f"exp_{secrets.token_hex(4)}", "pw-" + secrets.token_hex(8)
    db = my_db.url.rsplit("/", 1)[1].split("?")[0]
    admin = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/test")
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{pw}'")
        c.exec_driver_sql(f"GRANT SELECT ON `{db}`.* TO '{user}'@'%%'")
    try:
        yield user, pw, db
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()


def test_wrong_password_and_missing_permission(my_user, monkeypatch):
    user, pw, db = my_user
    monkeypatch.setenv("EXP_TEST_PW", "wrong-" + pw)
    sink = create_sink(f"mysql+pymysql://{user}@127.0.0.1:3306/{db}", {"password_env": "EXP_TEST_PW"})
    with pytest.raises(SinkError) as ei:
        sink.open(ctx())
    assert "Access denied" in str(ei.value) and pw not in str(ei.value)
    monkeypatch.setenv("EXP_TEST_PW", pw)
    sink = create_sink(f"mysql+pymysql://{user}@127.0.0.1:3306/{db}", {"password_env": "EXP_TEST_PW"})
    with pytest.raises(SinkError) as ei:
        sink.open(ctx())
    msg = str(ei.value)
    assert "CREATE command denied" in msg and "table users" in msg and pw not in msg


def test_media_files_beside_the_database(sqlite_db, tmp_path):
    media_dir = tmp_path / "media"
    run_export(create_sink(sqlite_db.url, {"media_dir": str(media_dir)}), full_stream(n=1))
    rows = sqlite_db.rows("media", order="name")
    assert rows and all(r["path"] for r in rows)
    for r in rows:
        data = (media_dir / r["path"]).read_bytes()
        assert len(data) == r["size"]


def test_postgresql_pyodbc_really_goes_through_psqlodbc(pg_odbc_db):
    """postgresql+pyodbc: SQLAlchemy's pyodbc connector + our PostgreSQL dialect + psqlODBC, with
    the generic (executemany) loader, fast_executemany off, INSERTs sent as multi-row pages."""
    import pyodbc

    sink = create_sink(pg_odbc_db.url, pg_odbc_db.options)
    assert sink.url.drivername == "postgresql+pyodbc" and not sink.profile.odbc_fast_executemany
    sink.open(ctx())
    try:
        conn = sink._conn
        assert conn.dialect.name == "postgresql" and conn.dialect.driver == "pyodbc"
        assert type(conn.dialect).__module__ == "exporter.connectors.sql.pg_pyodbc"
        assert conn.dialect.paramstyle == "qmark" and conn.dialect.server_version_info >= (10,)
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, pyodbc.Connection)
        assert raw.getinfo(pyodbc.SQL_DRIVER_NAME).lower().startswith("psqlodbc")
        assert raw.getinfo(pyodbc.SQL_DBMS_NAME) == "PostgreSQL"
        assert sink._loader.name == "generic"
        seen = []

        @sa.event.listens_for(sink._engine, "before_cursor_execute")
        def _record(_conn, cursor, statement, params, _context, executemany):
            seen.append((statement, executemany, getattr(cursor, "fast_executemany", False)))

        stream = full_stream(n=3)
        sink.write(stream)
        sink.commit()
    finally:
        sink.close(True)
    assert seen and not any(fast for _s, _m, fast in seen)
    inserts = [s for s, _m, _f in seen if s.startswith("INSERT INTO") and "visite_de_chantier_1001__lignes" in s]
    assert inserts and all(s.count("(?") >= 2 for s in inserts)  # 6 child rows in one multi-row INSERT
    with pg_odbc_db.engine().connect() as c:  # read back through psycopg
        n = c.exec_driver_sql(f'SELECT count(*) FROM "{pg_odbc_db.schema}".visite_de_chantier_1001__lignes').scalar()
    assert n == 6
    assert create_sink(pg_odbc_db.url, pg_odbc_db.options).load_state() == {FORM_ID: "2024-03-01 10:00:00"}


def test_postgresql_pyodbc_unreachable_server_is_one_clear_line(pg_odbc_db, monkeypatch):
    monkeypatch.setenv("EXP_TEST_PW", "hunter2-secret")
    sink = create_sink("postgresql+pyodbc://postgres@127.0.0.1:1/test?driver=PostgreSQL+Unicode",
                       {"password_env": "EXP_TEST_PW"})
    with pytest.raises(SinkError) as ei:
        sink.open(ctx())
    msg = str(ei.value)
    assert "cannot connect" in msg and "hunter2" not in msg and "\n" not in msg


def test_a_server_error_is_its_message_without_the_statement_excerpt(pg_db):
    """PostgreSQL's text adds ``LINE 2: CREATE TABLE ... ^`` after its message: only the message
    (and the server's detail and hint) are kept."""
    sink = create_sink(pg_db.url, {"schema": pg_db.schema + "_missing"})
    with pytest.raises(SinkError) as ei:
        run_export(sink, full_stream())
    msg = str(ei.value)
    assert f'schema "{pg_db.schema}_missing" does not exist' in msg, msg
    assert "LINE" not in msg and "^" not in msg and "\n" not in msg


def test_postgresql_profile_is_cached_and_error_text_keeps_no_error():
    """``profile`` is built once per process; ``error_text`` keeps nothing: a cache on it would hold
    every error (its traceback, the rows of the failed batch) for the life of the process."""
    import gc
    import weakref

    from exporter.connectors.sql.dialects import for_backend

    pg = for_backend("postgresql")
    assert pg.profile() is pg.profile()
    class DriverError(Exception):  # (a built-in exception cannot be weakly referenced)
        pass

    error = DriverError("relation  \"x\"\n does not exist")
    gone = weakref.ref(error)
    assert pg.error_text(error) == 'relation "x" does not exist'
    del error
    gc.collect()
    assert gone() is None
