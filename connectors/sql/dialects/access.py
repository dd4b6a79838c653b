"""Microsoft Access: ``access+pyodbc://@dsn`` (the ``sqlalchemy-access`` dialect).

Rows go in with ``executemany`` (the generic loader). Yes/No columns cannot hold NULL, so
booleans are 0/1 integers. No Access engine runs on Linux: the tests compile every statement with
``sqlalchemy-access``.
"""
from __future__ import annotations

from functools import cache

from .base import Dialect, SqlProfile, capabilities, reserved, reserved_from


class Access(Dialect):
    names = ("access",)
    default_driver = "pyodbc"

    @cache  # noqa: B019 - one instance per module, for the life of the process
    def profile(self) -> SqlProfile:
        words = reserved_from("sqlalchemy_access.base", "AccessIdentifierPreparer.reserved_words")
        return SqlProfile(
            "Access", capabilities(max_identifier_length=64, max_columns=255, transactional_ddl=False,
                                   case_insensitive=True, reserved_words=reserved(words), forbidden_chars=".!`[]",
                                   rows_per_batch=500, tested="statements compiled (sqlalchemy-access dialect)"),
            numeric_precision=28, numeric_scale=10, boolean_as_int=True, max_params=500, odbc_fast_executemany=False)


dialect = Access()
