"""What each SQL dialect can do, declared as data.

The planner (identifier lengths, reserved words, columns per table), the schema builder (types)
and the loader choice read a :class:`SqlProfile`; nothing else looks at the dialect's name.
Reserved words come from the SQLAlchemy dialects themselves, so they follow the installed version.
"""
from __future__ import annotations

from dataclasses import dataclass

from exporter.capabilities import Capabilities

# SQL:2016 reserved words that every dialect refuses or warns about (added to each dialect's list)
_COMMON_RESERVED = frozenset(
    """
all alter and any as asc between by case check column constraint create cross current_date
current_time current_timestamp current_user default delete desc distinct drop else end except
exists false fetch for foreign from full grant group having in index inner insert intersect
into is join key left like limit not null of offset on or order outer primary references right
select session_user set some table then to true union unique update user using values when
where with window
"""
    .split()
)


def _reserved(dialect: str) -> frozenset[str]:
    words: set[str] = set(_COMMON_RESERVED)
    try:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS
            words |= set(RESERVED_WORDS)
        elif dialect == "mysql":
            from sqlalchemy.dialects.mysql.reserved_words import (
                RESERVED_WORDS_MARIADB,
                RESERVED_WORDS_MYSQL,
            )
            words |= set(RESERVED_WORDS_MYSQL) | set(RESERVED_WORDS_MARIADB)
        elif dialect == "mssql":
            from sqlalchemy.dialects.mssql.base import RESERVED_WORDS
            words |= set(RESERVED_WORDS)
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer
            words |= set(SQLiteIdentifierPreparer.reserved_words)
        elif dialect == "access":
            from sqlalchemy_access.base import AccessIdentifierPreparer
            words |= set(AccessIdentifierPreparer.reserved_words)
    except ImportError:  # pragma: no cover - dialect package missing: common list only
        pass
    return frozenset(w.lower() for w in words)


@dataclass(frozen=True)
class SqlProfile:
    """A dialect's capabilities plus the SQL specifics the schema builder and loaders need."""

    dialect: str  # sqlite, postgresql, mysql, mssql, access
    capabilities: Capabilities
    #: loader used when the driver allows it: "generic" (executemany), "copy" (PostgreSQL COPY
    #: + merge), "multirow" (MySQL multi-row INSERT .. ON DUPLICATE KEY UPDATE)
    loader: str = "generic"
    #: DECIMAL(precision, scale) used for number fields
    numeric_precision: int = 38
    numeric_scale: int = 10
    #: store booleans as 0/1 integers (Access Yes/No columns cannot hold NULL)
    boolean_as_int: bool = False
    #: most bound parameters in one statement (IN lists are cut to stay under it)
    max_params: int = 999
    #: names are measured in bytes (PostgreSQL NAMEDATALEN) - planner names are ASCII anyway
    identifier_bytes: bool = False
    #: with pyodbc, send executemany parameter arrays in one round trip (``fast_executemany``)
    odbc_fast_executemany: bool = True
    #: a statement taking a lock (bind ``:k``, a 63-bit integer) that serialises schema changes and
    #: name planning between processes writing the same schema at once: held until the transaction
    #: ends, or, when ``schema_unlock_sql`` is set, a session lock released by that statement once
    #: the schema step is committed (MySQL, whose DDL commits on its own; its ``GET_LOCK`` selects 1
    #: when taken, 0 after its timeout)
    schema_lock_sql: str | None = None
    schema_unlock_sql: str | None = None
    #: tables a run creates get their foreign keys, and the media table its secondary index, once
    #: the run has loaded them (``ALTER TABLE ... ADD FOREIGN KEY``, ``CREATE INDEX``): one check of
    #: all rows instead of one per row in every batch. The run's owner adds them when the run ends,
    #: and adds any still missing (a run that stopped) when a run starts.
    late_constraints: bool = False


def _caps(**kw) -> Capabilities:
    base = {"transactions": True, "streaming": True, "rename": True, "stores_media": True, "max_name_length": None}
    base.update(kw)
    return Capabilities(**base)


def profile_for(dialect: str) -> SqlProfile:
    """The profile of a SQLAlchemy dialect name (``mariadb`` counts as ``mysql``)."""
    d = {"mariadb": "mysql", "postgres": "postgresql"}.get(dialect, dialect)
    if d == "sqlite":
        # SQLITE_MAX_COLUMN defaults to 2000; identifiers are unlimited (we still cap them)
        return SqlProfile(d, _caps(max_identifier_length=128, max_columns=2000, transactional_ddl=True,
                                   reserved_words=_reserved(d), rows_per_batch=1000,
                                   tested="real (embedded)"), max_params=999)
    if d == "postgresql":
        return SqlProfile(d, _caps(max_identifier_length=63, max_columns=1600, transactional_ddl=True,
                                   reserved_words=_reserved(d), rows_per_batch=5000, parallel_writers=True,
                                   tested="real PostgreSQL 15 (psycopg2, and pyodbc + psqlODBC)"),
                          # COPY needs psycopg2; postgresql+pyodbc (connectors.sql.pg_pyodbc) takes the
                          # generic loader, and psqlODBC under fast_executemany fails on bytea and long
                          # texts and drops fractional seconds (tested): it stays off
                          loader="copy", max_params=30000, identifier_bytes=True, odbc_fast_executemany=False,
                          schema_lock_sql="SELECT pg_advisory_xact_lock(:k)", late_constraints=True)
    if d == "mysql":
        # InnoDB allows 1017 columns, but a row keeps up to 40 bytes of every TEXT inline and must
        # fit in ~8 KB: 190 columns per table keeps any row loadable; wider forms are split.
        return SqlProfile(d, _caps(max_identifier_length=64, max_columns=190, transactional_ddl=False,
                                   case_insensitive=True, reserved_words=_reserved(d),
                                   rows_per_batch=2000, parallel_writers=True,
                                   tested="real MariaDB 10.11 (PyMySQL and ODBC)"),
                          loader="multirow", numeric_precision=65, numeric_scale=10, max_params=30000,
                          # MariaDB Connector/ODBC 3.1 garbles strings under fast_executemany (tested)
                          odbc_fast_executemany=False,
                          schema_lock_sql="SELECT GET_LOCK(CONCAT('exporter_schema_', :k), 3600)",
                          schema_unlock_sql="SELECT RELEASE_LOCK(CONCAT('exporter_schema_', :k))")
    if d == "mssql":
        return SqlProfile(d, _caps(max_identifier_length=128, max_columns=1024, transactional_ddl=True,
                                   case_insensitive=True, reserved_words=_reserved(d),
                                   rows_per_batch=1000, tested="statements compiled (mssql dialect)"),
                          max_params=2000)
    if d == "access":
        return SqlProfile(d, _caps(max_identifier_length=64, max_columns=255, transactional_ddl=False,
                                   case_insensitive=True, reserved_words=_reserved(d),
                                   forbidden_chars=".!`[]", rows_per_batch=500,
                                   tested="statements compiled (sqlalchemy-access dialect)"),
                          numeric_precision=28, numeric_scale=10, boolean_as_int=True, max_params=500,
                          odbc_fast_executemany=False)
    raise ValueError(f"no SQL profile for dialect {dialect!r}")
