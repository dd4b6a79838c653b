"""``postgresql+pyodbc``: PostgreSQL through pyodbc and the psqlODBC driver.

SQLAlchemy ships no PostgreSQL dialect for pyodbc; this one is SQLAlchemy's own pyodbc connector
(:class:`~sqlalchemy.connectors.pyodbc.PyODBCConnector`) on top of its PostgreSQL dialect
(:class:`~sqlalchemy.dialects.postgresql.base.PGDialect`), so SQL, DDL and reflection are exactly
those of the other PostgreSQL drivers. It is registered with SQLAlchemy when the PostgreSQL dialect
module (:mod:`.dialects.postgresql`) is imported, as the SQL sink does for every URL::

    postgresql+pyodbc://user@host:5432/db?driver=PostgreSQL+Unicode   # DSN-less
    postgresql+pyodbc://user@mydsn                                     # a DSN from odbc.ini
    postgresql+pyodbc:///?odbc_connect=<url-quoted connection string>  # verbatim

``driver`` defaults to ``PostgreSQL Unicode`` (the name Debian, Ubuntu and RHEL register; on
Windows it is ``PostgreSQL Unicode(x64)``). Other query keys go to psqlODBC as connection
attributes (``sslmode=verify-full``, ``ConnSettings=...``). Unless the URL says otherwise the
dialect asks psqlODBC for booleans as booleans (``BoolsAsChar=0``) and for PostgreSQL's own error
semantics (``Protocol=7.4-0``: a failed statement aborts the transaction, no hidden savepoint per
statement), which is what SQLAlchemy's transaction and savepoint handling expects.

Driver facts the dialect deals with (each one checked against psqlODBC 13 and PostgreSQL 15):

* psqlODBC prepares statements on the server and sends text parameters as type "unknown": where
  PostgreSQL cannot infer a type (``json_build_object(?, ..)`` in reflection, ``VALUES`` lists)
  the statement fails, so parameters carry a cast (``?::VARCHAR``, ``?::BYTEA`` ...), the set
  SQLAlchemy's psycopg (3) dialect renders for the same reason, plus ``bytea`` and ``uuid``.
* pyodbc binds ``datetime.time`` as an ODBC ``TIME_STRUCT``, which has no fractional seconds: times
  are bound as ISO text (``?::TIME``), so microseconds survive.
* arrays and intervals come back as text, and pyodbc binds neither a list nor a ``timedelta``:
  both go through PostgreSQL's literal syntax (``{a,"b c",NULL}``, ``1 day 02:03:04``).
* the ANSI driver (``PostgreSQL ANSI``) is switched to UTF-8 both ways on connect.
* pyodbc ``fast_executemany`` is *not* safe with psqlODBC (bytea parameters fail to bind, texts
  longer than ``MaxLongVarcharSize`` fail, timestamps silently lose their fractional seconds):
  the dialect never turns it on, and the SQL sink's profile keeps it off.
* executemany of an ``INSERT`` is rewritten by SQLAlchemy into multi-row ``INSERT .. VALUES``
  pages ("insertmanyvalues"), as for psycopg2: one round trip per page instead of one per row.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import util
from sqlalchemy.connectors.pyodbc import PyODBCConnector
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import URL, interfaces

from .pg_pyodbc_types import COLSPECS

# connection attributes the dialect sets unless the URL gives them (keys compared case-insensitively)
_DEFAULT_ATTRS = {"BoolsAsChar": "0", "Protocol": "7.4-0"}
# SQLSTATEs of a lost or refused connection (ODBC 08xxx, PostgreSQL admin shutdown / crash)
_DISCONNECT_STATES = ("08S01", "08001", "08003", "08006", "08007", "57P01", "57P02", "57P03")


def _quote_attr(value: Any) -> str:
    """A connection-string value, braced when it holds ``;``, ``}`` or starts with ``{``."""
    s = str(value)
    if ";" in s or "}" in s or s.startswith("{") or s != s.strip():
        s = "{" + s.replace("}", "}}") + "}"
    return s


def _driver_attr(name: Any) -> str:
    """``DRIVER={name}``: a driver name is always braced (it holds spaces)."""
    return "DRIVER={" + str(name).replace("}", "}}") + "}"


class PGDialect_pyodbc(PyODBCConnector, PGDialect):
    """PostgreSQL through pyodbc + psqlODBC (see the module docstring)."""

    driver = "pyodbc"
    supports_statement_cache = True
    pyodbc_driver_name = "PostgreSQL Unicode"

    supports_unicode_statements = True
    supports_unicode_binds = True
    supports_native_decimal = True
    supports_sane_rowcount = True
    supports_sane_multi_rowcount = False
    supports_server_side_cursors = False
    # INSERT executemany -> multi-row VALUES pages (PostgreSQL takes at most 65535 parameters)
    use_insertmanyvalues = True
    use_insertmanyvalues_wo_returning = True
    insertmanyvalues_max_parameters = 32700
    # the PostgreSQL dialect renders "?::type" only for the types below that ask for it
    bind_typing = interfaces.BindTyping.RENDER_CASTS

    colspecs = util.update_copy(PGDialect.colspecs, COLSPECS)

    # ------------------------------------------------------------------ connecting
    def create_connect_args(self, url: URL) -> interfaces.ConnectArgsType:
        opts = url.translate_connect_args(username="user")
        opts.update(url.query)
        connect_args: dict[str, Any] = {}
        for param in ("ansi", "unicode_results", "autocommit"):
            if param in opts:
                connect_args[param] = util.asbool(opts.pop(param))
        if "odbc_connect" in opts:  # the caller's connection string, verbatim
            return ((opts.pop("odbc_connect"),), connect_args)

        parts: list[str] = []
        if "dsn" in opts or ("host" in opts and "database" not in opts):
            dsn, host = opts.pop("dsn", None), opts.pop("host", None)
            parts.append("DSN=" + _quote_attr(dsn or host or ""))
            if dsn and host:  # ?dsn=x with a host: the host overrides the DSN's server
                parts.append("Servername=" + _quote_attr(host))
            if "port" in opts:
                parts.append(f"Port={int(opts.pop('port'))}")
            driver = opts.pop("driver", None)
            if driver:
                parts.append(_driver_attr(driver))
        else:
            driver = opts.pop("driver", self.pyodbc_driver_name)
            parts.append(_driver_attr(driver))
            if "host" in opts:
                parts.append("Servername=" + _quote_attr(opts.pop("host")))
            if "port" in opts:
                parts.append(f"Port={int(opts.pop('port'))}")
            if "database" in opts:
                parts.append("Database=" + _quote_attr(opts.pop("database")))
        if "user" in opts:
            parts.append("UID=" + _quote_attr(opts.pop("user")))
        if opts.get("password"):
            parts.append("PWD=" + _quote_attr(opts.pop("password")))
        opts.pop("password", None)
        given = {k.lower() for k in opts}
        for key, value in _DEFAULT_ATTRS.items():
            if key.lower() not in given:
                opts[key] = value
        parts.extend(f"{k}={_quote_attr(v)}" for k, v in opts.items())
        return ((";".join(parts),), connect_args)

    def on_connect(self):
        super_connect = super().on_connect()

        def on_connect(conn):
            if super_connect is not None:
                super_connect(conn)
            # the ANSI driver talks the client encoding in single bytes: make that UTF-8 both ways
            # (the Unicode driver uses UTF-16 wide calls, pyodbc's default)
            name = ""
            try:
                name = conn.getinfo(self.loaded_dbapi.SQL_DRIVER_NAME) or ""
            except self.loaded_dbapi.Error:  # pragma: no cover - every ODBC driver answers it
                pass
            if name.lower().startswith("psqlodbca"):
                conn.setdecoding(self.loaded_dbapi.SQL_CHAR, encoding="utf-8")
                conn.setencoding(encoding="utf-8")
                cur = conn.cursor()
                cur.execute("SET client_encoding TO 'UTF8'")
                cur.close()
                if not conn.autocommit:
                    conn.commit()

        return on_connect

    def is_disconnect(self, e, connection, cursor):
        if isinstance(e, self.loaded_dbapi.Error) and e.args and str(e.args[0]) in _DISCONNECT_STATES:
            return True
        return super().is_disconnect(e, connection, cursor)

    # ------------------------------------------------------------------ server facts
    def _get_server_version_info(self, connection):
        # "select version()", as every PostgreSQL dialect, not SQL_DBMS_VER ("15.0.20" for 15.2)
        return PGDialect._get_server_version_info(self, connection)

    # ------------------------------------------------------------------ session characteristics
    def get_isolation_level_values(self, dbapi_conn):
        return ("AUTOCOMMIT", "READ COMMITTED", "READ UNCOMMITTED", "REPEATABLE READ", "SERIALIZABLE")

    def _session_set(self, dbapi_connection, sql: str) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()
        if not dbapi_connection.autocommit:
            dbapi_connection.commit()

    def set_isolation_level(self, dbapi_connection, level):
        level = level.replace("_", " ")
        if level == "AUTOCOMMIT":
            dbapi_connection.autocommit = True
            return
        if dbapi_connection.autocommit:
            dbapi_connection.autocommit = False
        self._session_set(dbapi_connection, f"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {level}")

    def get_isolation_level(self, dbapi_connection):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("show transaction isolation level")
            val = cursor.fetchone()[0]
        finally:
            cursor.close()
        return val.upper()

    def _show_bool(self, dbapi_connection, setting: str) -> bool:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"show {setting}")
            return cursor.fetchone()[0] == "on"
        finally:
            cursor.close()

    def set_readonly(self, connection, value):
        self._session_set(connection, "SET SESSION CHARACTERISTICS AS TRANSACTION "
                          + ("READ ONLY" if value else "READ WRITE"))

    def get_readonly(self, connection):
        return self._show_bool(connection, "transaction_read_only")

    def set_deferrable(self, connection, value):
        self._session_set(connection, "SET SESSION CHARACTERISTICS AS TRANSACTION "
                          + ("DEFERRABLE" if value else "NOT DEFERRABLE"))

    def get_deferrable(self, connection):
        return self._show_bool(connection, "transaction_deferrable")


dialect = PGDialect_pyodbc

__all__ = ["PGDialect_pyodbc", "dialect"]
