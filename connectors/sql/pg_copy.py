"""PostgreSQL + psycopg 3: binary ``COPY ... FROM STDIN``, rows written with psycopg's
``Copy.write_row`` (its C encoder: no COPY text of ours); upserts go through a temporary staging
table merged with ``INSERT ... ON CONFLICT DO UPDATE``. With ``overlap()`` the COPYs, deletes and
the commit run on a background thread, in order, while the caller reads and parses the next batch
(see :mod:`.background`).

Binary COPY needs each value to be of its column's Python type exactly (a ``str`` for a text
column, a ``Decimal`` for a numeric one...): the row plans (:mod:`.rows`) and the sink's fixed
tables produce them so.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from exporter.naming import short_hash

from .background import Overlapping
from .dialects.base import Outcome, SqlProfile
from .loaders import GenericLoader, chunks, dedupe

#: SQLAlchemy type -> the PostgreSQL type psycopg encodes a value for, in binary COPY (first match)
_BINARY_TYPES: tuple[tuple[type, str], ...] = (
    (sa.Boolean, "bool"), (sa.BigInteger, "int8"), (sa.SmallInteger, "int2"), (sa.Integer, "int4"),
    (sa.Float, "float8"), (sa.Numeric, "numeric"), (sa.DateTime, "timestamp"), (sa.Date, "date"),
    (sa.Time, "time"), (sa.LargeBinary, "bytea"), (sa.String, "text"),
)


def binary_type(t: sa.types.TypeEngine) -> str:
    """The type name psycopg's binary ``COPY`` writes a column of SQLAlchemy type ``t`` as."""
    if isinstance(t, TypeDecorator):
        t = t.impl_instance
    for cls, name in _BINARY_TYPES:
        if isinstance(t, cls):
            return name
    raise ValueError(f"no binary COPY type for {t!r}")


def _as_sent(sql: str) -> str:
    """SQL text for a psycopg call without parameters (``copy()``, ``execute(sql)``). SQLAlchemy's
    quoting and compiling double every ``%`` in names (psycopg turns ``%%`` back into ``%`` when it
    fills in parameters); a statement sent as is must carry them single, or a schema named ``a%b``
    becomes ``a%%b``."""
    return sql.replace("%%", "%")


def _copy_sql(target: str, quoted_cols: str) -> str:
    return f"COPY {target} ({quoted_cols}) FROM STDIN (FORMAT BINARY)"


class Columns:
    """What a COPY into a table needs of its columns: names, binary types, and SQL type names (to
    say which column a value does not fit)."""

    __slots__ = ("names", "types", "sql_types")

    def __init__(self, table: sa.Table, cols: Sequence[str], dialect: sa.Dialect):
        self.names = tuple(cols)
        self.types = [binary_type(table.c[c].type) for c in cols]
        self.sql_types = [str(table.c[c].type.compile(dialect=dialect)).lower() for c in cols]

    def misfit(self, row: tuple, error: BaseException) -> ValueError:
        """``error`` (raised encoding ``row``) as one line naming the column whose value it is."""
        where = ""
        for name, t, sql_type, v in zip(self.names, self.types, self.sql_types, row, strict=True):
            bits = {"int2": 16, "int4": 32, "int8": 64}.get(t)
            if bits and isinstance(v, int) and not -(1 << (bits - 1)) <= v < 1 << (bits - 1):
                where = f"column {name} ({sql_type}): {v} is out of range: "
                break
            if isinstance(v, str) and not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    where = f"column {name} ({sql_type}): a text without a UTF-8 form: "
                    break
        return ValueError(f"{where}{error}")


def _copy(cur: Any, sql: str, columns: Columns, rows: list[tuple]) -> None:
    """One binary COPY of ``rows`` (psycopg encodes and sends them, buffered)."""
    with cur.copy(sql) as cp:
        cp.set_types(columns.types)
        write = cp.write_row
        for r in rows:
            try:
                write(r)
            except (OverflowError, ValueError) as e:  # a value psycopg cannot encode for its column
                raise columns.misfit(r, e) from None


class CopyLoader(Overlapping, GenericLoader):
    name = "copy"

    def __init__(self, conn: sa.Connection, profile: SqlProfile, rows_per_batch: int | None = None):
        super().__init__(conn, profile, rows_per_batch)
        self._merge_only: set[str] = set()  # tables where a plain COPY met an existing key
        self._texts: dict[tuple, tuple[Columns, tuple[str, ...]]] = {}
        self._merges: dict[tuple, str] = {}

    def _qualified(self, table: sa.Table) -> str:
        return self.conn.dialect.identifier_preparer.format_table(table)

    def _raw(self) -> Any:
        return self.conn.connection.driver_connection

    def insert(self, table: sa.Table, cols: Sequence[str], rows: list[tuple]) -> None:
        """COPY ``rows`` into ``table``: now, or on the background thread in its turn (errors
        then come with the next ``drain()``)."""
        if not rows:
            return
        columns, (copy_sql, *_merge) = self._statements(table, cols[0], cols)
        raw = self._raw()

        def send() -> None:
            with raw.cursor() as cur:
                _copy(cur, copy_sql, columns, rows)
        self.later(f"table {table.name}", send)

    def upsert_step(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple],
                    outcome: Outcome | None = None) -> Outcome:
        outcome = outcome or Outcome()  # all_new is settled in its turn (delete_step reads it then)
        if rows:
            self.later(f"table {table.name}", self._upsert_job(table, key, cols, rows, outcome))
        return outcome

    def upsert(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple]) -> bool:
        outcome = Outcome()
        if rows:
            job = self._upsert_job(table, key, cols, rows, outcome)
            self.drain()
            job()
        return outcome.all_new

    def _upsert_job(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple],
                    outcome: Outcome) -> Callable[[], None]:
        """The statements of one upsert, run by the returned closure (now or in the background):
        COPY straight into the table inside a savepoint; at the first existing key, roll that back
        and merge through a staging table with ``INSERT ... ON CONFLICT DO UPDATE``
        (``outcome.all_new`` then turns False). After one such conflict the table is only merged
        in this run: a fresh export never merges, an incremental one pays one aborted COPY per table."""
        rows = dedupe(rows, list(cols).index(key))
        columns, (copy_sql, stage_sql, create, drop) = self._statements(table, key, cols)
        raw = self._raw()
        merge_only, name, step = self._merge_only, table.fullname, self.rows

        def run() -> None:
            import psycopg.errors

            with raw.cursor() as cur:
                if name not in merge_only:
                    cur.execute("SAVEPOINT exporter_copy")
                    try:
                        _copy(cur, copy_sql, columns, rows)
                    except psycopg.errors.UniqueViolation:
                        cur.execute("ROLLBACK TO SAVEPOINT exporter_copy")
                        cur.execute("RELEASE SAVEPOINT exporter_copy")
                        merge_only.add(name)
                    else:
                        # not released: a round trip saved per table and batch; the savepoint
                        # goes with the transaction (a newer one of the same name is the one a
                        # ROLLBACK TO names), and its changes are committed with it all the same
                        return
                outcome.all_new = False
                merge = self._merge_sql(table, key, cols)
                for chunk in chunks(rows, step):
                    cur.execute(create)
                    _copy(cur, stage_sql, columns, chunk)
                    cur.execute(merge)
                    cur.execute(drop)
        return run

    def delete_step(self, table: sa.Table, column: str, values: list, unless: Outcome, **equal: Any) -> None:
        if self._background is None:
            super().delete_step(table, column, values, unless, **equal)
            return
        if not values:
            return
        q = self.conn.dialect.identifier_preparer.quote  # doubles any "%", as a parameterised statement needs
        sql = f"DELETE FROM {self._qualified(table)} WHERE {q(column)} = ANY(%(v)s)"
        params: dict[str, Any] = {"v": sorted(set(values))}
        for i, (k, v) in enumerate(equal.items()):
            sql += f" AND {q(k)} = %(e{i})s"
            params[f"e{i}"] = v
        raw = self._raw()

        def run() -> None:
            if not unless.all_new:
                with raw.cursor() as cur:
                    cur.execute(sql, params)
        self.submit(f"table {table.name}", run)

    def _statements(self, table: sa.Table, key: str, cols: Sequence[str]) -> tuple[Columns, tuple[str, ...]]:
        """The columns ``cols`` of ``table`` as COPY needs them, and the statements: COPY into the table, COPY into its
        staging table, create and drop the staging table (made once per table, key and columns; the
        merge, ``_merge_sql``, only once a table needs it)."""
        cache_key = (table.fullname, key, tuple(cols))
        found = self._texts.get(cache_key)
        if found is None:
            target = self._qualified(table)
            q = self.conn.dialect.identifier_preparer.quote
            col_list = ", ".join(q(c) for c in cols)
            stage = q(_stage_name(table))
            found = self._texts[cache_key] = (Columns(table, cols, self.conn.dialect), tuple(map(_as_sent, (
                _copy_sql(target, col_list), _copy_sql(stage, col_list),
                f"CREATE TEMPORARY TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP",
                f"DROP TABLE {stage}"))))
        return found

    def _merge_sql(self, table: sa.Table, key: str, cols: Sequence[str]) -> str:
        """``INSERT ... SELECT`` from the staging table ``ON CONFLICT DO UPDATE``: compiled when a
        table first meets keys already stored, then kept (a fresh export never does, and compiling
        it was most of what preparing a table's statements cost)."""
        from sqlalchemy.dialects import postgresql

        cache_key = (table.fullname, key, tuple(cols))
        found = self._merges.get(cache_key)
        if found is None:
            stage_t = sa.table(_stage_name(table), *[sa.column(c) for c in cols])
            ins = postgresql.insert(table).from_select(list(cols), sa.select(*[stage_t.c[c] for c in cols]))
            others = [c for c in cols if c != key]
            if others:
                ins = ins.on_conflict_do_update(index_elements=[key], set_={c: ins.excluded[c] for c in others})
            else:
                ins = ins.on_conflict_do_nothing(index_elements=[key])
            found = self._merges[cache_key] = _as_sent(str(ins.compile(dialect=self.conn.dialect)))
        return found


def _stage_name(table: sa.Table) -> str:
    return f"stage_{short_hash(table.fullname, 12)}"
