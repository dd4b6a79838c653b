"""MySQL/MariaDB + PyMySQL: multi-row ``INSERT`` statements sized to ``max_allowed_packet``."""
from __future__ import annotations

import contextlib
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from .background import Overlapping
from .dialects.base import Outcome, SqlProfile
from .loaders import GenericLoader, chunks, dedupe, driver_connection

_NAMED = re.compile(r"%\(p(\d+)\)s")


def _positional(sql: str, width: int) -> tuple[str, Callable[[tuple], tuple] | None] | None:
    """``sql`` with its named placeholders ``%(p0)s, %(p1)s...`` as positional ``%s``, when each of
    the row's ``width`` values appears exactly once, so that the row tuples go to PyMySQL without a
    dict per row: ``(sql, reorder)``, where ``reorder`` puts a row's values in the order of the
    placeholders (SQLAlchemy writes the columns in the table's order, not in the row's), None when
    they already are. None when some value appears twice or not at all (the rows go as dicts)."""
    found = [int(n) for n in _NAMED.findall(sql)]
    if sorted(found) != list(range(width)):
        return None
    reorder = None if found == sorted(found) or width < 2 else operator.itemgetter(*found)
    return _NAMED.sub("%s", sql), reorder


class MultiRowLoader(Overlapping, GenericLoader):
    """MySQL/MariaDB + PyMySQL: multi-row ``INSERT`` statements (PyMySQL's ``executemany`` folds a
    chunk of rows into one statement, cut at ``max_allowed_packet``); a table's rows first go in
    with a plain INSERT inside a savepoint, and at the first existing key with ``INSERT ... ON
    DUPLICATE KEY UPDATE`` (for that table, for the rest of the run). With ``overlap()`` the
    statements run on the background thread in their turn, and ``upsert()`` waits for it first.

    ``LOAD DATA LOCAL INFILE`` is not used: with ``local_infile`` on, PyMySQL sends whatever file
    the server names, and it has no supported way to restrict that to the client's own rows."""

    name = "multirow"

    def __init__(self, conn: sa.Connection, profile: SqlProfile, rows_per_batch: int | None = None):
        super().__init__(conn, profile, rows_per_batch)
        packet = conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or (4 << 20)
        # leave room for the protocol header and the ON DUPLICATE clause; PyMySQL cuts statements
        # at max_stmt_length, sending a single over-long row alone (the server then names the limit)
        self.max_stmt = max(64 << 10, min(int(packet) - (64 << 10), 256 << 20))
        self._merge_only: set[str] = set()  # tables where a plain INSERT met an existing key

    def _run(self, stmt, rows: list[tuple]) -> None:
        sql = str(stmt.compile(dialect=self.conn.dialect))
        positional = _positional(sql, len(rows[0]) if rows else 0)
        with driver_connection(self.conn).cursor() as cur:
            cur.max_stmt_length = self.max_stmt
            for chunk in chunks(rows, self.rows):
                if positional is None:
                    cur.executemany(sql, self._named(chunk))
                else:
                    sql_pos, reorder = positional
                    cur.executemany(sql_pos, chunk if reorder is None else list(map(reorder, chunk)))

    @staticmethod
    def _statement(table: sa.Table, cols: Sequence[str]):
        from sqlalchemy.dialects import mysql

        return mysql.insert(table).values({c: sa.bindparam(f"p{i}") for i, c in enumerate(cols)})

    def insert(self, table: sa.Table, cols: Sequence[str], rows: list[tuple]) -> None:
        if rows:
            self.later(f"table {table.name}", lambda: self._run(self._statement(table, cols), rows))

    def upsert_step(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple],
                    outcome: Outcome | None = None) -> Outcome:
        outcome = outcome or Outcome()  # all_new is settled in its turn (delete_step reads it then)

        def job() -> None:
            if not self._upsert_now(table, key, cols, rows):
                outcome.all_new = False
        if rows:
            self.later(f"table {table.name}", job)
        return outcome

    def delete_step(self, table: sa.Table, column: str, values: list, unless: Outcome, **equal: Any) -> None:
        self.later(f"table {table.name}", lambda: GenericLoader.delete_step(self, table, column, values, unless, **equal))

    def upsert(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple]) -> bool:
        self.settle()
        return self._upsert_now(table, key, cols, rows)

    def _upsert_now(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple]) -> bool:
        if not rows:
            return True
        rows = dedupe(rows, list(cols).index(key))
        ins = self._statement(table, cols)
        if self._insert_new(table, ins, rows):
            return True
        others = [c for c in cols if c != key] or [key]
        self._run(ins.on_duplicate_key_update({c: ins.inserted[c] for c in others}), rows)
        return False

    def _insert_new(self, table: sa.Table, ins, rows: list[tuple]) -> bool:
        """Plain INSERT inside a savepoint: True if every key was new; False (nothing written) at
        the first duplicate key, after which the table is only ever merged in this run."""
        import pymysql

        if table.fullname in self._merge_only:
            return False
        sp = self.conn.begin_nested()
        try:
            self._run(ins, rows)
        except pymysql.err.IntegrityError as e:
            sp.rollback()
            if e.args and e.args[0] == 1062:  # ER_DUP_ENTRY
                self._merge_only.add(table.fullname)
                return False
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                sp.rollback()
            raise
        sp.commit()
        return True
