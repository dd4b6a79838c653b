"""MariaDB and MySQL: ``mysql+pymysql://user@host:3306/db`` (``mariadb+pymysql://`` too), and
through ODBC ``mysql+pyodbc://...``.

With PyMySQL rows go in with INSERT statements (:mod:`..mysql_insert`: a JSON document per chunk
of rows read by ``JSON_TABLE`` on MariaDB 10.6+, multi-row VALUES elsewhere); any other driver
takes the generic loader. DDL commits on its own here, so the schema lock is a session lock
(``GET_LOCK``) released once the schema step is committed. Media bytes go in as one value, up to
the server's ``max_allowed_packet``.
"""
from __future__ import annotations

from functools import cache

import sqlalchemy as sa

from exporter.model import Blob

from .base import Dialect, Loader, SqlProfile, capabilities, reserved, reserved_from

LOCK_ERRNOS = frozenset({1205, 1213})  # lock wait timeout, deadlock


class MySQL(Dialect):
    names = ("mysql", "mariadb")
    default_driver = "pymysql"

    @cache  # noqa: B019 - one instance per module, for the life of the process
    def profile(self) -> SqlProfile:
        from sqlalchemy.dialects import mysql

        words = reserved_from("sqlalchemy.dialects.mysql.reserved_words", "RESERVED_WORDS_MYSQL",
                              "RESERVED_WORDS_MARIADB")
        # InnoDB allows 1017 columns, but a row keeps up to 40 bytes of every TEXT inline and must
        # fit in ~8 KB: 190 columns per table keeps any row loadable; wider forms are split.
        return SqlProfile(
            "MariaDB/MySQL", capabilities(max_identifier_length=64, max_columns=190, transactional_ddl=False,
                                          case_insensitive=True, reserved_words=reserved(words),
                                          rows_per_batch=2000, parallel_writers=True,
                                          tested="real MariaDB 10.11 (PyMySQL and ODBC)"),
            numeric_precision=65, numeric_scale=10, max_params=30000,
            # MariaDB Connector/ODBC 3.1 garbles strings under fast_executemany (tested)
            odbc_fast_executemany=False,
            schema_lock_sql="SELECT GET_LOCK(CONCAT('exporter_schema_', :k), 3600)",
            schema_unlock_sql="SELECT RELEASE_LOCK(CONCAT('exporter_schema_', :k))",
            table_options=(("mysql_engine", "InnoDB"), ("mysql_charset", "utf8mb4"), ("mysql_collate", "utf8mb4_bin")),
            column_types={"text": mysql.LONGTEXT, "binary": mysql.LONGBLOB},
            # a batch that loses an InnoDB deadlock to another worker is written again, so its
            # failure must come before its commit returns (in the background it would come with
            # the next batch, too late)
            background_in_workers=False,
            # the server's work on INSERT statements is long enough to overlap with the next batch
            background_load=True)

    def loader(self, conn: sa.Connection, profile: SqlProfile, forced: str | None = None,
               rows_per_batch: int | None = None) -> Loader:
        # "loaddata": the name of an earlier loader, read as this one
        if conn.dialect.driver == "pymysql" and forced in (None, "multirow", "loaddata"):
            from ..mysql_insert import MultiRowLoader

            # JSON_TABLE (MariaDB 10.6+) reads the rows of a chunk from one JSON document; MySQL
            # 8's JSON_TABLE, untested here, gets the VALUES statements
            version = tuple(conn.dialect.server_version_info or ())
            mariadb = bool(getattr(conn.dialect, "is_mariadb", False))  # (SQLAlchemy's MySQL dialects)
            json_table = mariadb and version >= (10, 6)
            return MultiRowLoader(conn, profile, rows_per_batch, json_table=json_table)
        return super().loader(conn, profile, forced, rows_per_batch)

    def lost_a_lock(self, error: BaseException) -> bool:
        first = error.args[0] if getattr(error, "args", None) else None
        return first in LOCK_ERRNOS or super().lost_a_lock(error)  # PyMySQL: the errno comes first

    def store_content(self, conn: sa.Connection, table: sa.Table, key: str, media: Blob, size: int,
                      max_bytes: int, schema: str | None) -> None:
        packet = conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or 0
        super().store_content(conn, table, key, media, size, min(max_bytes, int(packet) - (64 << 10)), schema)


dialect = MySQL()
