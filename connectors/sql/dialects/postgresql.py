"""PostgreSQL: ``postgresql://user@host:5432/db`` (driver psycopg 3; ``postgres://`` too), and
through ODBC ``postgresql+pyodbc://...`` (psqlODBC; our SQLAlchemy dialect, :mod:`..pg_pyodbc`,
registered here).

psycopg 3 is the one PostgreSQL driver: a ``postgresql+psycopg2://`` URL (the form earlier
versions documented) is served by it, with a one-line notice, so scheduled jobs keep working.
With psycopg, rows go in with binary ``COPY ... FROM STDIN`` (:mod:`..pg_copy`), on a background
thread; any other driver takes the generic loader. Media bytes are appended to the row in 8 MB
chunks (``content || chunk``), so no whole file is held in memory.
"""
from __future__ import annotations

import logging
from functools import cache

import sqlalchemy as sa
from sqlalchemy.dialects import registry as sa_dialects

from exporter.model import Blob

from .base import Dialect, Loader, SqlProfile, capabilities, reserved, reserved_from, row_of

# SQLAlchemy ships no PostgreSQL dialect for pyodbc: ours (imported only when a URL names it)
sa_dialects.register("postgresql.pyodbc", "exporter.connectors.sql.pg_pyodbc", "PGDialect_pyodbc")

CHUNK = 8 << 20  # media bytes per statement when appending a BLOB

log = logging.getLogger("exporter.sql")


class PostgreSQL(Dialect):
    names = ("postgresql", "postgres")
    default_driver = "psycopg"

    def error_text(self, error: BaseException) -> str:
        """The server's own message and hint (psycopg's ``diag``), without the statement excerpt
        (``LINE 2: CREATE TABLE ... ^``) the full text adds; a connection failure, which has no
        server message, keeps libpq's text."""
        diag = getattr(error, "diag", None)
        primary = getattr(diag, "message_primary", None)
        if not primary:
            return super().error_text(error)
        parts = [primary, getattr(diag, "message_detail", None), getattr(diag, "message_hint", None)]
        return " ".join(" ".join(p.split()) for p in parts if p)

    @cache  # noqa: B019 - one instance per module, for the life of the process
    def profile(self) -> SqlProfile:
        words = reserved_from("sqlalchemy.dialects.postgresql.base", "RESERVED_WORDS")
        return SqlProfile(
            "PostgreSQL", capabilities(max_identifier_length=63, max_columns=1600, transactional_ddl=True,
                                       reserved_words=reserved(words), rows_per_batch=5000, parallel_writers=True,
                                       tested="real PostgreSQL 15 (psycopg 3, and pyodbc + psqlODBC)"),
            # psqlODBC under fast_executemany fails on bytea and long texts and drops fractional
            # seconds (tested): it stays off
            max_params=30000, odbc_fast_executemany=False,
            schema_lock_sql="SELECT pg_advisory_xact_lock(:k)", late_constraints=True, reflects_many=True)

    def url(self, url: sa.URL) -> sa.URL:
        if url.get_backend_name() == "postgres":  # an alias SQLAlchemy no longer knows
            url = url.set(drivername="postgresql" + ("+" + url.get_driver_name() if "+" in url.drivername else ""))
        if "+" in url.drivername and url.get_driver_name() == "psycopg2":
            log.warning("postgresql+psycopg2:// is served by psycopg 3 now (postgresql+psycopg://, or plain "
                        "postgresql://): the same database, nothing to change")
            url = url.set(drivername="postgresql+psycopg")
        return super().url(url)

    def loader(self, conn: sa.Connection, profile: SqlProfile, forced: str | None = None,
               rows_per_batch: int | None = None) -> Loader:
        from ..loaders import GenericLoader

        if conn.dialect.driver == "psycopg" and forced in (None, "copy"):
            from ..pg_copy import CopyLoader

            return CopyLoader(conn, profile, rows_per_batch)
        # PostgreSQL texts cannot hold NUL. psycopg refuses such a value, but psqlODBC silently
        # cuts the text at the NUL (and a cut key could match another row): refuse it here.
        return GenericLoader(conn, profile, rows_per_batch, refuse_nul=conn.dialect.driver != "psycopg")

    def store_content(self, conn: sa.Connection, table: sa.Table, key: str, media: Blob, size: int,
                      max_bytes: int, schema: str | None) -> None:
        where = row_of(table, key)
        conn.execute(table.update().where(where).values(content=b""))
        stmt = table.update().where(where).values(
            content=table.c.content.op("||")(sa.bindparam("chunk", type_=sa.LargeBinary)))
        with media.open() as fh:
            while chunk := fh.read(CHUNK):
                conn.execute(stmt, {"chunk": chunk})


dialect = PostgreSQL()
