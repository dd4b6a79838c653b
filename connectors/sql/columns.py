"""The column types of the export schema: the portable SQLAlchemy type of each kind of column,
which a dialect's profile may replace (``SqlProfile.column_types``), and what each field kind stores."""
from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from exporter.model import BOOLEAN, DATE, DATETIME, GEOLOC, NUMBER, TIME, FieldDef

from .dialects.base import SqlProfile

KEY_LEN = 64  # width of the hash-like key columns (media_key, lineage_key, sha256)
ID_LEN = 191  # ids, indexable in MySQL utf8mb4 and within SQL Server's 900-byte key limit
#: the form's main-table column set when a submission is gone from the service (soft deletion);
#: no leading underscore (Access refuses one), like the other fixed columns
DELETED_AT = "deleted_at"

#: the portable type of each kind of column
PORTABLE_TYPES: dict[str, Any] = {
    "id": lambda: sa.Unicode(ID_LEN),
    "key": lambda: sa.String(KEY_LEN),
    "short": lambda: sa.Unicode(32),
    "text": sa.UnicodeText,
    "double": sa.Double,
    "date": sa.Date,
    "time": sa.Time,
    "datetime": sa.DateTime,
    "int": sa.Integer,
    "bigint": sa.BigInteger,
    "binary": sa.LargeBinary,
}


def sa_type(sql_kind: str, profile: SqlProfile) -> sa.types.TypeEngine:
    """The SQLAlchemy type of a column of kind ``sql_kind`` in ``profile``'s dialect."""
    own = profile.column_types.get(sql_kind)
    if own is not None:
        return own()
    if sql_kind == "number":
        return sa.Numeric(profile.numeric_precision, profile.numeric_scale, asdecimal=True)
    if sql_kind == "boolean":
        return sa.SmallInteger() if profile.boolean_as_int else sa.Boolean(create_constraint=False)
    try:
        return PORTABLE_TYPES[sql_kind]()
    except KeyError:
        raise ValueError(sql_kind) from None


def type_family(t: Any) -> str:
    """Coarse family of a reflected or declared type, to tell compatible shapes apart."""
    if isinstance(t, TypeDecorator):
        t = t.impl_instance if hasattr(t, "impl_instance") else t.impl
    if isinstance(t, (sa.Boolean, sa.Integer, sa.Numeric, sa.Float)):
        return "number"
    if isinstance(t, (sa.DateTime, sa.Date, sa.Time)):
        return "temporal"
    if isinstance(t, (sa.LargeBinary, sa.types._Binary)):
        return "binary"
    if isinstance(t, (sa.String, sa.Enum)):
        return "text"
    return "any"


#: sql kinds of a field kind, with the part they store: [(part, sql_kind)]
def field_parts(f: FieldDef) -> list[tuple[str, str]]:
    if f.kind == GEOLOC:
        return [("lat", "double"), ("lon", "double")]
    return [("value", {NUMBER: "number", DATE: "date", TIME: "time", DATETIME: "datetime",
                       BOOLEAN: "boolean"}.get(f.kind, "text"))]


META_TIMES = {"create_time", "update_time", "answer_time", "update_answer_time", "start_time", "end_time"}


def lineage_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
