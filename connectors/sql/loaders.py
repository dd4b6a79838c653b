"""The portable loader: ``executemany`` through SQLAlchemy (SQLite, SQL Server with pyodbc
``fast_executemany``, Access, PostgreSQL and MariaDB through ODBC). Upsert = select the keys
already present, one ``UPDATE`` executemany for those, one ``INSERT`` executemany for the others.

Every loader (this one, ``pg_copy.CopyLoader``, ``mysql_insert.MultiRowLoader``) follows the
:class:`~.dialects.base.Loader` protocol: rows are tuples in the order of the columns given with
them. It works inside the caller's transaction and holds at most ``rows_per_batch`` rows of
statement parameters at a time. Identifiers are quoted by SQLAlchemy's
preparer; values are always bound (or, for COPY, streamed as data, never as SQL).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from exporter.errors import SinkError

from .dialects.base import Outcome, SqlProfile


def dedupe(rows: list[tuple], key: int) -> list[tuple]:
    """Keep the last row of each key (field ``key`` of the tuples: a record sent twice in one batch)."""
    seen: dict[Any, tuple] = {r[key]: r for r in rows}
    return list(seen.values()) if len(seen) != len(rows) else rows


def driver_connection(conn: sa.Connection) -> Any:
    """The DB-API connection under ``conn``, whose cursors the fast loaders use directly."""
    raw = conn.connection.driver_connection
    if raw is None:  # (a connection in use always has one)
        raise SinkError("the database connection is closed")
    return raw


def chunks(items: list, n: int) -> Iterator[list]:
    """``items`` in slices of ``n`` (at least 1)."""
    n = max(1, n)
    for i in range(0, len(items), n):
        yield items[i:i + n]


def as_rows(dicts: list[dict]) -> tuple[list[str], list[tuple]]:
    """Rows given as dicts with the same keys (a few rows of the fixed tables) as columns and tuples."""
    if not dicts:
        return [], []
    cols = list(dicts[0])
    return cols, [tuple(d[c] for c in cols) for d in dicts]


class GenericLoader:
    name = "generic"
    overlapping = False  # statements run in the background (CopyLoader.overlap)

    def __init__(self, conn: sa.Connection, profile: SqlProfile, rows_per_batch: int | None = None,
                 refuse_nul: bool = False):
        self.conn = conn
        self.profile = profile
        self.rows = rows_per_batch or profile.capabilities.rows_per_batch
        #: refuse a text holding NUL before the driver sees it (a driver that would cut it there)
        self._refuse_nul = refuse_nul

    def _check_nul(self, cols: Sequence[str], rows: Iterable[tuple]) -> None:
        if not self._refuse_nul:
            return
        for r in rows:
            for c, v in zip(cols, r, strict=True):
                if isinstance(v, str) and "\x00" in v:
                    raise ValueError(f"column {c} holds a NUL character (\\x00), which a {self.profile.name} "
                                     "text cannot store")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def params(table: sa.Table, cols: Sequence[str]) -> dict[str, sa.BindParameter]:
        """A bound parameter per column (``p0``, ``p1``...: column names may be anything)."""
        return {c: sa.bindparam(f"p{i}", type_=table.c[c].type) for i, c in enumerate(cols)}

    @staticmethod
    def _named(rows: Iterable[tuple]) -> list[dict]:
        return [{f"p{i}": v for i, v in enumerate(r)} for r in rows]

    # ------------------------------------------------------------------ background (no-ops here)
    def drain(self) -> None:
        """Wait for statements running in the background (none for this loader)."""

    def stop(self) -> None:
        """Stop the background thread, if any."""

    # A batch's steps whose order matters but whose results the caller need not wait for: run
    # now here, queued on the background thread by an overlapping loader (CopyLoader).
    def upsert_step(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple],
                    outcome: Outcome | None = None) -> Outcome:
        """``upsert``; ``outcome.all_new`` turns False when some key was already stored."""
        outcome = outcome or Outcome()
        if not self.upsert(table, key, cols, rows):
            outcome.all_new = False
        return outcome

    def delete_step(self, table: sa.Table, column: str, values: list, unless: Outcome, **equal: Any) -> None:
        """``delete_in``, skipped when ``unless.all_new`` (new submissions have nothing to replace)."""
        if not unless.all_new:
            self.delete_in(table, column, values, **equal)

    # ------------------------------------------------------------------ operations
    def delete_in(self, table: sa.Table, column: str, values: list, **equal: Any) -> None:
        if not values:
            return
        self._check_nul([column], [(v,) for v in values])
        step = max(1, self.profile.max_params - len(equal) - 1)
        for chunk in chunks(sorted(set(values)), step):
            cond = [table.c[column].in_(chunk)] + [table.c[k] == v for k, v in equal.items()]
            self.conn.execute(table.delete().where(*cond))

    def insert(self, table: sa.Table, cols: Sequence[str], rows: list[tuple]) -> None:
        if not rows:
            return
        self._check_nul(cols, rows)
        stmt = table.insert().values(self.params(table, cols))
        for chunk in chunks(rows, self.rows):
            self.conn.execute(stmt, self._named(chunk))

    def upsert(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple]) -> bool:
        """Insert or update ``rows`` by ``key``; True when none of the keys was present (so no
        row can reference them yet), False when some were or the loader cannot tell."""
        if not rows:
            return True
        self._check_nul(cols, rows)
        k = list(cols).index(key)
        rows = dedupe(rows, k)
        others = [c for c in cols if c != key]
        params = self.params(table, cols)
        upd = None
        if others:
            upd = (table.update().where(table.c[key] == params[key])
                   .values({c: params[c] for c in others}))
        ins = table.insert().values(params)
        step = max(1, min(self.rows, self.profile.max_params - 1))
        all_new = True
        for chunk in chunks(rows, step):
            keys = [r[k] for r in chunk]
            present = set(self.conn.execute(sa.select(table.c[key]).where(table.c[key].in_(keys))).scalars())
            old = [r for r in chunk if r[k] in present]
            new = [r for r in chunk if r[k] not in present]
            if old:
                all_new = False
                if upd is not None:
                    self.conn.execute(upd, self._named(old))
            if new:
                self.conn.execute(ins, self._named(new))
        return all_new
