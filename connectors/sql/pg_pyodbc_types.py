"""Column types of the ``postgresql+pyodbc`` dialect (:mod:`.pg_pyodbc`): how values are bound
and read back through pyodbc and psqlODBC (see that module's docstring for the driver facts).

psqlODBC prepares statements on the server and sends text parameters as "unknown": where the
server cannot infer a type (function arguments such as ``json_build_object(?, ..)``, ``VALUES``
lists) the parameter needs an explicit ``?::type``. The types below ask for those casts (the set
SQLAlchemy's psycopg (3) dialect renders, for the same reason, plus ``bytea`` and ``uuid``), bind
times as text (an ODBC ``TIME_STRUCT`` drops microseconds), and read arrays and intervals from
their text form.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.dialects.postgresql.array import ARRAY as PGARRAY
from sqlalchemy.dialects.postgresql.base import INTERVAL, UUID
from sqlalchemy.dialects.postgresql.json import JSON, JSONB
from sqlalchemy.dialects.postgresql.pg_catalog import INT2VECTOR, OIDVECTOR, _SpaceVector
from sqlalchemy.dialects.postgresql.types import REGCONFIG


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
    def adapt_emulated_to_native(  # type: ignore[override]  # (as SQLAlchemy's own INTERVAL does)
            cls, interval: sqltypes.Interval, **kw: Any) -> _PGInterval_pyodbc:  # sa.Interval -> this class, not INTERVAL
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
            val: list | str | None
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


#: SQLAlchemy type -> the type the dialect uses for it (its ``colspecs``, on top of PostgreSQL's)
COLSPECS: dict[Any, Any] = {
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
}
