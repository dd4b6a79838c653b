"""``postgresql+pyodbc``: PostgreSQL through pyodbc and the psqlODBC driver.

SQLAlchemy ships no PostgreSQL dialect for pyodbc; this one is SQLAlchemy's own pyodbc connector
(:class:`~sqlalchemy.connectors.pyodbc.PyODBCConnector`) on top of its PostgreSQL dialect
(:class:`~sqlalchemy.dialects.postgresql.base.PGDialect`), so SQL, DDL and reflection are exactly
those of the other PostgreSQL drivers. It is registered when :mod:`connectors.sql` is imported::

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

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy import util
from sqlalchemy.connectors.pyodbc import PyODBCConnector
from sqlalchemy.dialects.postgresql.array import ARRAY as PGARRAY
from sqlalchemy.dialects.postgresql.base import INTERVAL, UUID, PGDialect
from sqlalchemy.dialects.postgresql.json import JSON, JSONB
from sqlalchemy.dialects.postgresql.pg_catalog import INT2VECTOR, OIDVECTOR, _SpaceVector
from sqlalchemy.dialects.postgresql.types import REGCONFIG
from sqlalchemy.engine import interfaces

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


class _PGTime_pyodbc(sqltypes.Time):
    """``TIME`` bound as text (``?::TIME``): an ODBC TIME_STRUCT would drop microseconds (pyodbc
    reads them back in full)."""

    render_bind_cast = True

    def bind_processor(self, dialect):
        def process(value):
            if isinstance(value, dt.time):
                return value.isoformat()
            return value

        return process


_INTERVAL_PART = re.compile(r"([+-]?\d+)\s+(year|mon|day)s?|([+-]?)(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")


def parse_pg_interval(text: str) -> dt.timedelta:
    """A ``timedelta`` from PostgreSQL's default interval output (``1 year 2 mons -3 days
    04:05:06.5``); a year counts 365 days and a month 30, as psycopg2 does."""
    days = 0
    seconds = 0.0
    matched = False
    for m in _INTERVAL_PART.finditer(text):
        matched = True
        if m.group(1) is not None:
            n = int(m.group(1))
            days += n * {"year": 365, "mon": 30, "day": 1}[m.group(2)]
        else:
            secs = int(m.group(4)) * 3600 + int(m.group(5)) * 60 + float(m.group(6))
            seconds += -secs if m.group(3) == "-" else secs
    if not matched and text.strip() not in ("00:00:00", ""):
        raise ValueError(f"not a PostgreSQL interval: {text!r}")
    return dt.timedelta(days=days, seconds=seconds)


class _PGInterval_pyodbc(INTERVAL):
    """psqlODBC returns intervals as text and pyodbc cannot bind a ``timedelta``."""

    render_bind_cast = True

    @classmethod
    def adapt_emulated_to_native(cls, interval, **kw):  # sa.Interval -> this class, not INTERVAL
        return cls(precision=interval.second_precision)

    def bind_processor(self, dialect):
        def process(value):
            if isinstance(value, dt.timedelta):
                return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
            return value

        return process

    def result_processor(self, dialect, coltype):
        def process(value):
            if isinstance(value, str):
                return parse_pg_interval(value)
            return value

        return process


class _PGBoolean_pyodbc(sqltypes.Boolean):
    """Booleans read back even when psqlODBC is told ``BoolsAsChar=1`` (``'1'``/``'0'``)."""

    render_bind_cast = True

    def result_processor(self, dialect, coltype):
        def process(value):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "t", "true", "y", "yes", "on")
            return None if value is None else bool(value)

        return process


class _PGUuid_pyodbc(UUID):
    """pyodbc hands ``uuid`` columns back as text; ``as_uuid`` columns get :class:`uuid.UUID`."""

    render_bind_cast = True

    def bind_processor(self, dialect):
        def process(value):
            return None if value is None else str(value)

        return process

    def result_processor(self, dialect, coltype):
        as_uuid = self.as_uuid

        def process(value):
            if value is None:
                return None
            if as_uuid:
                return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
            return str(value)

        return process


class _PGBytea_pyodbc(sqltypes.LargeBinary):
    """``bytea`` parameters carry their type: psqlODBC sends bytes in binary form only where the
    server says the parameter is ``bytea`` - untyped (e.g. in a ``VALUES`` list) they would be read
    as text and refused."""

    render_bind_cast = True


# psqlODBC prepares statements on the server and sends text parameters as "unknown": where the
# server cannot infer a type (function arguments such as json_build_object(?, ..), VALUES lists)
# the parameter needs an explicit "?::type". These are the casts SQLAlchemy's psycopg (3) dialect
# renders, for the same reason.
class _PGString_pyodbc(sqltypes.String):
    render_bind_cast = True


class _PGInteger_pyodbc(sqltypes.Integer):
    render_bind_cast = True


class _PGSmallInteger_pyodbc(sqltypes.SmallInteger):
    render_bind_cast = True


class _PGBigInteger_pyodbc(sqltypes.BigInteger):
    render_bind_cast = True


class _PGDate_pyodbc(sqltypes.Date):
    render_bind_cast = True


class _PGTimeStamp_pyodbc(sqltypes.DateTime):
    render_bind_cast = True


class _PGJSON_pyodbc(JSON):
    render_bind_cast = True


class _PGJSONB_pyodbc(JSONB):
    render_bind_cast = True


class _PGJSONIntIndexType_pyodbc(sqltypes.JSON.JSONIntIndexType):
    __visit_name__ = "json_int_index"
    render_bind_cast = True


class _PGJSONStrIndexType_pyodbc(sqltypes.JSON.JSONStrIndexType):
    __visit_name__ = "json_str_index"
    render_bind_cast = True


class _PGREGCONFIG_pyodbc(REGCONFIG):
    render_bind_cast = True


# ------------------------------------------------------------------ arrays
# psqlODBC hands arrays over as their text form ("{a,"b c",NULL}") and pyodbc cannot bind a list:
# both directions go through PostgreSQL's array literal syntax.


def parse_pg_array(text: str) -> list:
    """The nested lists of strings (``None`` for NULL) of a PostgreSQL array literal."""
    i = text.index("=") + 1 if text.startswith("[") else 0  # "[0:1]={...}": explicit bounds

    def skip_ws(j: int) -> int:
        while j < len(text) and text[j].isspace():
            j += 1
        return j

    def parse(j: int) -> tuple[list, int]:
        if text[j] != "{":
            raise ValueError(f"not a PostgreSQL array: {text[:40]!r}")
        out: list = []
        j = skip_ws(j + 1)
        if text[j] == "}":
            return out, j + 1
        while True:
            j = skip_ws(j)
            c = text[j]
            if c == "{":
                val, j = parse(j)
            elif c == '"':
                j += 1
                buf = []
                while text[j] != '"':
                    if text[j] == "\\":
                        j += 1
                    buf.append(text[j])
                    j += 1
                val, j = "".join(buf), j + 1
            else:
                k = j
                while text[j] not in ",}":
                    j += 1
                token = text[k:j].strip()
                val = None if token.upper() == "NULL" else token
            out.append(val)
            j = skip_ws(j)
            if text[j] == ",":
                j += 1
            elif text[j] == "}":
                return out, j + 1
            else:
                raise ValueError(f"not a PostgreSQL array: {text[:40]!r}")

    return parse(skip_ws(i))[0]


def _array_element(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, (list, tuple)):
        return "{" + ",".join(_array_element(x) for x in v) + "}"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, (dt.date, dt.time)):
        s = v.isoformat()
    elif isinstance(v, (bytes, bytearray, memoryview)):
        s = "\\x" + bytes(v).hex()
    else:
        s = str(v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_pg_array(value: Any) -> str:
    """The PostgreSQL array literal of a (nested) Python list; elements always quoted."""
    return _array_element(list(value))


def _from_text(item_type: Any):
    """How one array element's text becomes the Python value pyodbc would have given."""
    if isinstance(item_type, sqltypes.Boolean):
        return lambda s: s.lower() in ("t", "true", "1")
    if isinstance(item_type, sqltypes.Integer):
        return int
    if isinstance(item_type, sqltypes.Float):
        return float
    if isinstance(item_type, sqltypes.Numeric):
        return Decimal
    if isinstance(item_type, sqltypes.DateTime):
        return dt.datetime.fromisoformat
    if isinstance(item_type, sqltypes.Date):
        return dt.date.fromisoformat
    if isinstance(item_type, sqltypes.Time):
        return dt.time.fromisoformat
    return None


class _PGARRAY_pyodbc(PGARRAY):
    render_bind_cast = True

    def bind_processor(self, dialect):
        base = super().bind_processor(dialect)

        def process(value):
            if value is None or isinstance(value, str):
                return value
            if base is not None:
                value = base(value)
            return format_pg_array(value)

        return process

    def result_processor(self, dialect, coltype):
        base = super().result_processor(dialect, coltype)
        conv = _from_text(self.item_type)

        def leaves(v):
            if isinstance(v, list):
                return [leaves(x) for x in v]
            return v if v is None or conv is None else conv(v)

        def process(value):
            if isinstance(value, str):
                value = leaves(parse_pg_array(value))
            return base(value) if base is not None else value

        return process


class _PGINT2VECTOR_pyodbc(_SpaceVector, INT2VECTOR):
    pass


class _PGOIDVECTOR_pyodbc(_SpaceVector, OIDVECTOR):
    pass


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

    colspecs = util.update_copy(
        PGDialect.colspecs,
        {
            sqltypes.String: _PGString_pyodbc,
            sqltypes.Integer: _PGInteger_pyodbc,
            sqltypes.SmallInteger: _PGSmallInteger_pyodbc,
            sqltypes.BigInteger: _PGBigInteger_pyodbc,
            sqltypes.Date: _PGDate_pyodbc,
            sqltypes.DateTime: _PGTimeStamp_pyodbc,
            sqltypes.Time: _PGTime_pyodbc,
            sqltypes.Interval: _PGInterval_pyodbc,
            INTERVAL: _PGInterval_pyodbc,
            sqltypes.Boolean: _PGBoolean_pyodbc,
            sqltypes.LargeBinary: _PGBytea_pyodbc,
            sqltypes.JSON: _PGJSON_pyodbc,
            JSON: _PGJSON_pyodbc,
            JSONB: _PGJSONB_pyodbc,
            sqltypes.JSON.JSONIntIndexType: _PGJSONIntIndexType_pyodbc,
            sqltypes.JSON.JSONStrIndexType: _PGJSONStrIndexType_pyodbc,
            REGCONFIG: _PGREGCONFIG_pyodbc,
            sqltypes.ARRAY: _PGARRAY_pyodbc,
            PGARRAY: _PGARRAY_pyodbc,
            INT2VECTOR: _PGINT2VECTOR_pyodbc,
            OIDVECTOR: _PGOIDVECTOR_pyodbc,
            sqltypes.Uuid: _PGUuid_pyodbc,
            UUID: _PGUuid_pyodbc,
        },
    )

    # ------------------------------------------------------------------ connecting
    def create_connect_args(self, url):
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
