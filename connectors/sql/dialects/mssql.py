"""Microsoft SQL Server: ``mssql+pyodbc://user@dsn``.

Rows go in with ``executemany`` and pyodbc's ``fast_executemany`` (the generic loader). No SQL
Server runs here: the tests compile every statement with SQLAlchemy's ``mssql`` dialect.
"""
from __future__ import annotations

from functools import cache

from .base import Dialect, SqlProfile, capabilities, reserved, reserved_from


class SQLServer(Dialect):
    names = ("mssql",)
    default_driver = "pyodbc"

    @cache  # noqa: B019 - one instance per module, for the life of the process
    def profile(self) -> SqlProfile:
        from sqlalchemy.dialects import mssql

        words = reserved_from("sqlalchemy.dialects.mssql.base", "RESERVED_WORDS")
        return SqlProfile(
            "SQL Server", capabilities(max_identifier_length=128, max_columns=1024, transactional_ddl=True,
                                       case_insensitive=True, reserved_words=reserved(words), rows_per_batch=1000,
                                       tested="statements compiled (mssql dialect)"),
            max_params=2000, add_column="ADD", column_types={"datetime": mssql.DATETIME2})


dialect = SQLServer()
