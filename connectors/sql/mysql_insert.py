"""MySQL/MariaDB + PyMySQL: rows as ``INSERT`` statements sized to ``max_allowed_packet``.

On MariaDB 10.6 and later a chunk of rows goes as one JSON document (orjson), sent as bytes (which
PyMySQL 1.2.3+ writes as a hex literal, with ``bytes.hex()``) and read back by the server's
``JSON_TABLE``: the client's work per row is orjson's, in C, instead of PyMySQL formatting and
escaping every value in Python. Elsewhere (MySQL, older MariaDB)
and for a chunk JSON cannot carry, multi-row ``INSERT ... VALUES`` (PyMySQL's ``executemany``).
"""
from __future__ import annotations

import contextlib
import operator
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from .background import Overlapping
from .dialects.base import Outcome, SqlProfile
from .loaders import GenericLoader, chunks, dedupe, driver_connection

_NAMED = re.compile(r"%\(p(\d+)\)s")
#: the most JSON (bytes) one statement carries, so that the few copies PyMySQL makes of a statement
#: stay small whatever ``max_allowed_packet`` allows (the benchmark's statements are well under it)
JSON_CHUNK = 8 << 20
#: the savepoint around a table's plain INSERT (see ``MultiRowLoader._insert_new``)
SAVEPOINT = "exporter_insert"


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


def _others(cols: Sequence[str], key: str) -> list[str]:
    """The columns a merge updates: all but the key (the key itself when it is the only one)."""
    return [c for c in cols if c != key] or [key]


#: how JSON_TABLE reads a value: as text, converted by the INSERT into the column's type exactly as
#: a quoted literal of an ``INSERT ... VALUES`` is (in strict mode a value the column cannot hold
#: is an error; JSON_TABLE's own conversion to a narrower type would truncate it with a warning,
#: or read NULL). utf8mb4 whatever the database's character set, like the tables'.
TEXT_CARRIER = "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"


def _carrier(column_type: sa.types.TypeEngine, dialect: sa.Dialect) -> str:
    """The JSON_TABLE type a column's values are read as: text, except booleans (JSON ``true``
    and ``false`` read as 1 and 0, which text would read as words)."""
    if isinstance(column_type, sa.Boolean):
        return str(column_type.compile(dialect=dialect))
    return TEXT_CARRIER


def _json_value(v: Any) -> Any:
    """What orjson cannot write itself: a decimal, as PyMySQL would send it (plain notation)."""
    if isinstance(v, Decimal):
        return format(v, "f")
    raise TypeError(type(v).__name__)


class MultiRowLoader(Overlapping, GenericLoader):
    """MySQL/MariaDB + PyMySQL: rows as ``INSERT ... SELECT ... FROM JSON_TABLE(...)`` (MariaDB
    10.6+) or multi-row ``INSERT ... VALUES`` statements (PyMySQL's ``executemany`` folds a chunk
    of rows into one statement), cut to fit ``max_allowed_packet``; a table's rows first go in
    with a plain INSERT inside a savepoint, and at the first existing key with ``INSERT ... ON
    DUPLICATE KEY UPDATE`` (for that table, for the rest of the run). With ``overlap()`` the
    statements run on the background thread in their turn, and ``upsert()`` waits for it first.

    ``LOAD DATA LOCAL INFILE`` is not used: with ``local_infile`` on, PyMySQL sends whatever file
    the server names, and it has no supported way to restrict that to the client's own rows."""

    name = "multirow"

    def __init__(self, conn: sa.Connection, profile: SqlProfile, rows_per_batch: int | None = None,
                 json_table: bool = False):
        super().__init__(conn, profile, rows_per_batch)
        packet = conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or (4 << 20)
        # leave room for the protocol header and the ON DUPLICATE clause; PyMySQL cuts statements
        # at max_stmt_length, sending a single over-long row alone (the server then names the limit)
        self.max_stmt = max(64 << 10, min(int(packet) - (64 << 10), 256 << 20))
        self._merge_only: set[str] = set()  # tables where a plain INSERT met an existing key
        #: rows go as one JSON document per statement, read back by the server's JSON_TABLE (the
        #: dialect module says where: ``dialects.mysql``)
        self.json_table = json_table
        self._json_sql_cache: dict[tuple, str] = {}

    def _run(self, table: sa.Table, cols: Sequence[str], rows: list[tuple], merge_on: str | None = None) -> None:
        """INSERT ``rows``; with ``merge_on`` (the key column), ``... ON DUPLICATE KEY UPDATE`` the
        other columns."""
        if self.json_table:
            self._json_rows(table, cols, rows, merge_on)
        else:
            self._many(table, cols, rows, merge_on)

    def _many(self, table: sa.Table, cols: Sequence[str], rows: list[tuple], merge_on: str | None) -> None:
        """The rows as multi-row ``INSERT ... VALUES`` (PyMySQL's ``executemany``)."""
        ins = self._statement(table, cols)
        if merge_on is not None:
            ins = ins.on_duplicate_key_update({c: ins.inserted[c] for c in _others(cols, merge_on)})
        sql = str(ins.compile(dialect=self.conn.dialect))
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
            self.later(f"table {table.name}", lambda: self._run(table, cols, rows))

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
        if self._insert_new(table, cols, rows):
            return True
        self._run(table, cols, rows, merge_on=key)
        return False

    def _insert_new(self, table: sa.Table, cols: Sequence[str], rows: list[tuple]) -> bool:
        """Plain INSERT inside a savepoint: True if every key was new; False (nothing written) at
        the first duplicate key, after which the table is only ever merged in this run.

        The savepoint is never released: the next one of the same name replaces it, and the
        transaction's end drops it (a round trip saved per table and batch)."""
        import pymysql

        if table.fullname in self._merge_only:
            return False
        with driver_connection(self.conn).cursor() as cur:
            cur.execute(f"SAVEPOINT {SAVEPOINT}")
            try:
                self._run(table, cols, rows)
            except pymysql.err.IntegrityError as e:
                cur.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                if e.args and e.args[0] == 1062:  # ER_DUP_ENTRY
                    self._merge_only.add(table.fullname)
                    return False
                raise
            except BaseException:
                with contextlib.suppress(Exception):
                    cur.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                raise
        return True

    # ------------------------------------------------------------------ JSON_TABLE
    def _json_sql(self, table: sa.Table, cols: Sequence[str], merge_on: str | None) -> str:
        """``INSERT INTO t (cols) SELECT ... FROM JSON_TABLE(%s, '$[*]' COLUMNS(...))``: each row
        a JSON array, each value read from its position as the table column's own type."""
        k = (table.fullname, tuple(cols), merge_on)
        sql = self._json_sql_cache.get(k)
        if sql is None:
            dialect = self.conn.dialect
            prep = dialect.identifier_preparer

            def q(name: str) -> str:  # (PyMySQL formats the statement with %: a name's % doubled)
                return prep.quote(name).replace("%", "%%")
            spec = ", ".join(f"p{i} {_carrier(table.c[c].type, dialect)} PATH '$[{i}]'" for i, c in enumerate(cols))
            sql = (f"INSERT INTO {prep.format_table(table).replace('%', '%%')} ({', '.join(map(q, cols))}) "
                   f"SELECT {', '.join(f'p{i}' for i in range(len(cols)))} "
                   f"FROM JSON_TABLE(CONVERT(%s USING utf8mb4), '$[*]' COLUMNS({spec})) AS json_rows")
            if merge_on is not None:
                sql += " ON DUPLICATE KEY UPDATE " + ", ".join(
                    f"{q(c)} = VALUES({q(c)})" for c in _others(cols, merge_on))
            self._json_sql_cache[k] = sql
        return sql

    def _json_rows(self, table: sa.Table, cols: Sequence[str], rows: list[tuple], merge_on: str | None) -> None:
        import orjson

        sql = self._json_sql(table, cols, merge_on)
        todo = list(chunks(rows, self.rows))
        with driver_connection(self.conn).cursor() as cur:
            while todo:
                chunk = todo.pop(0)
                try:
                    doc = orjson.dumps(chunk, default=_json_value)
                except TypeError:  # a value JSON cannot carry (a lone surrogate): the rows as VALUES
                    self._many(table, cols, chunk, merge_on)
                    continue
                # bytes go as a hex literal (or escaped), up to twice their length, and PyMySQL
                # copies the statement twice more: halve a chunk that might not fit in one, or
                # would hold more than JSON_CHUNK bytes at a time
                if 2 * len(doc) + len(sql) > min(self.max_stmt, 2 * JSON_CHUNK) and len(chunk) > 1:
                    half = len(chunk) // 2
                    todo[:0] = [chunk[:half], chunk[half:]]
                    continue
                cur.execute(sql, (doc,))
