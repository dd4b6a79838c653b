"""Databases for the SQL sink tests: SQLite in a temp dir, and for PostgreSQL / MariaDB a fresh
schema or database with a random name per test, dropped afterwards. In CI (CI=true) a missing
server or ODBC driver fails the test; elsewhere it skips."""
from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from tests.conftest import port_open, require_service

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_ODBC = "postgresql+pyodbc://postgres@127.0.0.1:5432/test?driver=PostgreSQL+Unicode"
MY_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/test"


@dataclass
class Db:
    kind: str
    url: str
    options: dict = field(default_factory=dict)
    schema: str | None = None
    _engine: sa.Engine | None = field(default=None, repr=False)

    def engine(self) -> sa.Engine:
        """An engine of the test's own, to look at what the sink wrote (PyMySQL / psycopg for ODBC
        runs: what pyodbc wrote is read back through another driver)."""
        if self._engine is None:
            url = self.url
            if self.kind == "mysql_odbc":
                url = self.url.replace("+pyodbc", "+pymysql").split("?")[0]
            elif self.kind == "postgresql_pyodbc":
                url = PG_ADMIN
            self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool if self.kind == "sqlite" else None)
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def rows(self, table: str, order: str | None = None) -> list[dict]:
        with self.engine().connect() as c:
            t = sa.Table(table, sa.MetaData(schema=self.schema), autoload_with=c)
            cols = [order] if order else [x.name for x in t.primary_key.columns]
            q = sa.select(t).order_by(*[t.c[x] for x in cols])
            return [dict(r._mapping) for r in c.execute(q)]

    def columns(self, table: str) -> list[str]:
        with self.engine().connect() as c:
            return [x["name"] for x in sa.inspect(c).get_columns(table, schema=self.schema)]

    def tables(self) -> set[str]:
        with self.engine().connect() as c:
            return set(sa.inspect(c).get_table_names(schema=self.schema))

    def execute(self, sql: str) -> None:
        with self.engine().begin() as c:
            c.exec_driver_sql(sql)


def _random(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


@pytest.fixture
def sqlite_db(tmp_path) -> Db:
    return Db("sqlite", f"sqlite:///{tmp_path / 'export.db'}")


def odbc_drivers() -> list[str]:
    """The ODBC drivers unixODBC knows (none without pyodbc)."""
    import importlib

    try:
        return importlib.import_module("pyodbc").drivers()
    except ImportError:
        return []


def _pg_schema(kind: str, url: str):
    require_service(port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = _random("exp")
    admin = sa.create_engine(PG_ADMIN)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    db = Db(kind, url, {"schema": name}, schema=name)
    try:
        yield db
    finally:
        db.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()


@pytest.fixture
def pg_db():
    yield from _pg_schema("postgresql", PG_ADMIN)


@pytest.fixture
def pg_odbc_db():
    """PostgreSQL through pyodbc and Debian's psqlODBC driver (apt-get install odbc-postgresql)."""
    require_service("PostgreSQL Unicode" in odbc_drivers(),
                    "the PostgreSQL ODBC driver (apt-get install unixodbc odbc-postgresql)")
    yield from _pg_schema("postgresql_pyodbc", PG_ODBC)


def _my_database():
    require_service(port_open("127.0.0.1", 3306), "MariaDB on 127.0.0.1:3306")
    name = _random("exp")
    admin = sa.create_engine(MY_ADMIN)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return admin, name


@contextlib.contextmanager
def _my_db(kind: str, url: str):
    """A fresh MariaDB database for one test (``url`` has ``{name}``), dropped afterwards."""
    admin, name = _my_database()
    db = Db(kind, url.format(name=name))
    try:
        yield db
    finally:
        db.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE `{name}`")
        admin.dispose()


@pytest.fixture
def my_db():
    with _my_db("mysql", "mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4") as db:
        yield db


@pytest.fixture
def my_odbc_db():
    require_service("MariaDB Unicode" in odbc_drivers(), "the MariaDB ODBC driver (apt-get install odbc-mariadb)")
    with _my_db("mysql_odbc", "mysql+pyodbc://root@127.0.0.1:3306/{name}?driver=MariaDB+Unicode&charset=utf8mb4") as db:
        yield db


@pytest.fixture(params=["sqlite", "postgresql", "postgresql_background", "postgresql_generic", "postgresql_pyodbc",
                        "mysql", "mysql_in_step", "mysql_odbc"])
def db(request) -> Db:
    """Every real backend the sink supports here. ``postgresql_generic`` runs the executemany path
    that SQL Server and Access use; ``postgresql_pyodbc`` and ``mysql_odbc`` run it through pyodbc
    and Debian's psqlODBC / MariaDB ODBC drivers, the way SQL Server is reached. ``postgresql``
    loads in step with the batches (its default), ``postgresql_background`` on a background thread
    (``background_load=true``). ``mysql`` loads
    with multi-row INSERTs on a background thread (its default), ``mysql_in_step`` in step with
    the batches (``background_load=false``, as the workers of a parallel export do)."""
    kind = request.param
    if kind == "postgresql_pyodbc":
        return request.getfixturevalue("pg_odbc_db")
    if kind == "sqlite":
        return request.getfixturevalue("sqlite_db")
    if kind == "postgresql":
        return request.getfixturevalue("pg_db")
    if kind == "postgresql_background":
        d = request.getfixturevalue("pg_db")
        d.options = {**d.options, "background_load": True}
        return d
    if kind == "postgresql_generic":
        d = request.getfixturevalue("pg_db")
        d.options = {**d.options, "loader": "generic"}
        return d
    if kind == "mysql_odbc":
        return request.getfixturevalue("my_odbc_db")
    if kind == "mysql_in_step":
        d = request.getfixturevalue("my_db")
        d.options = {**d.options, "background_load": False}
        return d
    return request.getfixturevalue("my_db")
