"""SQLite (embedded; the default destination): ``sqlite:///path.db``.

Everything goes through SQLAlchemy's ``executemany`` (the generic loader). SQLite has no decimal
type: numbers are stored as their exact decimal text in a NUMERIC column. Media bytes are written
in place with ``blobopen`` (no whole file in memory).
"""
from __future__ import annotations

from decimal import Decimal
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from exporter.errors import SinkError
from exporter.model import Blob

from ..loaders import driver_connection
from .base import Dialect, SqlProfile, blob_context, capabilities, reserved, reserved_from, row_of


class SQLiteDecimal(TypeDecorator):
    """SQLite has no decimal type: store the exact decimal text in a NUMERIC column."""

    impl = sa.Numeric
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else str(value)

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(str(value))


class SQLite(Dialect):
    names = ("sqlite",)

    @cache  # noqa: B019 - one instance per module, for the life of the process
    def profile(self) -> SqlProfile:
        words = reserved_from("sqlalchemy.dialects.sqlite.base", "SQLiteIdentifierPreparer.reserved_words")
        # SQLITE_MAX_COLUMN defaults to 2000; identifiers are unlimited (we still cap them)
        return SqlProfile("SQLite", capabilities(max_identifier_length=128, max_columns=2000, transactional_ddl=True,
                                                 reserved_words=reserved(words), rows_per_batch=1000,
                                                 tested="real (embedded)"),
                          numeric_precision=None, max_params=999, column_types={"number": SQLiteDecimal})

    def new_database_file(self, url: sa.URL) -> Path | None:
        db = url.database or ""
        if not db or db == ":memory:" or db.startswith("file:"):
            return None
        path = Path(db).expanduser().resolve()
        if not path.parent.is_dir():
            raise SinkError(f"directory {path.parent} does not exist")
        return None if path.exists() else path

    def configure_engine(self, engine: sa.Engine, profile: SqlProfile) -> None:
        super().configure_engine(engine, profile)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _rec):  # pragma: no cover - exercised by every sqlite test
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN cover DDL too
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover
            conn.exec_driver_sql("BEGIN")

    def secure_delete(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql("PRAGMA secure_delete=ON")
        conn.commit()

    def store_content(self, conn: sa.Connection, table: sa.Table, key: str, media: Blob, size: int,
                      max_bytes: int, schema: str | None) -> None:
        """A zero-filled blob of the media's size, then its bytes written into it in place."""
        where = row_of(table, key)
        conn.execute(table.update().where(where).values(content=sa.func.zeroblob(size)))
        rowid: int = conn.execute(sa.select(sa.literal_column("rowid")).select_from(table).where(where)).scalar_one()
        raw = driver_connection(conn)
        with raw.blobopen(table.name, "content", rowid, name=schema or "main") as blob:
            written = 0
            for chunk in media.iter_bytes(1 << 20):
                if written + len(chunk) > size:
                    raise SinkError(f"{media.kind} changed size while being stored", context=blob_context(media))
                blob.write(chunk)
                written += len(chunk)


dialect = SQLite()
