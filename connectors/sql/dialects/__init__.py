"""SQL dialects, one module each: what differs between databases lives here and nowhere else.

Each module (``sqlite``, ``postgresql``, ``mysql``, ``mssql``, ``access``) defines a subclass of
:class:`~.base.Dialect` and an instance of it named ``dialect``. It gives:

* ``names``: the SQLAlchemy backend names it serves, and ``default_driver`` for a URL without one;
* ``profile()``: a :class:`~.base.SqlProfile`, the dialect as data: identifier length, columns per
  table, reserved words, rows per batch, decimal precision, schema lock statements, the column
  types that differ from the portable ones (``column_types``), table options...;
* ``loader(conn, profile, forced, rows_per_batch)``: the :class:`~.base.Loader` for a connection
  (the generic ``executemany`` one unless the dialect has a bulk path for that driver);
* ``store_content(...)``: how a media's bytes go into ``media.content`` (its BLOB strategy);
* ``configure_engine``, ``new_database_file``, ``url``, ``lost_a_lock``: session settings, an
  embedded database's file, URL defaults, and which driver errors are worth writing a batch again.

The SQL sink picks the module once, from the URL's backend name (:func:`for_url`), and from then on
only reads its profile and calls these methods: no code outside this package tests a dialect's
name (``tests/test_meta.py`` fails if one does). Importing a dialect module is cheap: drivers and
bulk loaders are imported inside the methods that use them.

**Adding a dialect** (DuckDB, BigQuery...) is one new module here plus its tests:

1. ``dialects/duckdb.py``: ``class DuckDB(Dialect)`` with ``names = ("duckdb",)``, a
   ``default_driver`` if its SQLAlchemy URL needs one, and ``profile()`` returning its limits and
   reserved words (``reserved_from`` reads them from its SQLAlchemy dialect); override
   ``loader()`` if it has a faster bulk path than ``executemany`` (for example its native
   appender, implementing :class:`~.base.Loader`; :class:`~.base.BackgroundLoader` too if its
   statements can run on a background thread), and ``store_content()`` if one value per BLOB does
   not suit it; end the module with ``dialect = DuckDB()``. Nothing else is edited: the module is
   found by its ``names``.
2. Register the URL scheme as a destination (``exporter/registry.py``) with its driver's pip extra.
3. Tests: run the shared SQL sink suite against it (add it to the ``db`` fixture in
   ``tests/connectors/sql/conftest.py``: real server, or statements compiled with its SQLAlchemy
   dialect as for SQL Server and Access in ``test_sql_compile.py``).
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import sqlalchemy as sa

from .base import Dialect, SqlProfile


@cache
def _by_name() -> dict[str, Dialect]:
    """Every dialect module of this package, by each backend name it serves."""
    out: dict[str, Dialect] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        d = getattr(module, "dialect", None)
        if isinstance(d, Dialect):
            out.update(dict.fromkeys(d.names, d))
    return out


def for_backend(backend: str) -> Dialect:
    """The dialect serving a SQLAlchemy backend name; ValueError when none does."""
    found = _by_name().get(backend)
    if found is None:
        raise ValueError(f"no SQL dialect module for {backend!r}")
    return found


def for_url(url: sa.URL) -> Dialect:
    return for_backend(url.get_backend_name())


def profile_for(backend: str) -> SqlProfile:
    """The profile of the dialect serving ``backend`` (``mariadb`` is MySQL's, ``postgres`` PostgreSQL's)."""
    return for_backend(backend).profile()


__all__ = ["Dialect", "SqlProfile", "for_backend", "for_url", "profile_for"]
