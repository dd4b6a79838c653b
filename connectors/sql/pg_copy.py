"""PostgreSQL + psycopg2: ``COPY ... FROM STDIN``; upserts go through a temporary staging table
merged with ``INSERT ... ON CONFLICT DO UPDATE``. With ``overlap()`` the plain COPYs and the
commit run on a background thread, in order, while the caller reads and parses the next batch
(see :mod:`.background`)."""
from __future__ import annotations

import datetime as dt
import io
import itertools
import operator
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from exporter.naming import short_hash

from .background import Overlapping
from .dialects.base import Outcome, SqlProfile
from .loaders import GenericLoader, chunks, dedupe


class TextFormat:
    r"""A bulk-load text format: one line a row, fields separated by tabs, ``\N`` for NULL, and a
    backslash before the characters that would otherwise end a field or a line: PostgreSQL's
    ``COPY ... FROM STDIN`` text format (``PG_TEXT``)."""

    def __init__(self, escapes: dict[str, str], fast: dict[type, Any], slow: Any, datetime_sep: str):
        table = str.maketrans({c: "\\" + e for c, e in escapes.items()})
        specials = tuple(escapes)

        def escape(s: str) -> str:
            for c in specials:
                if c in s:
                    return s.translate(table)
            return s

        def needs_escape(values: list) -> bool:
            joined = "".join(filter(None, values))
            return any(c in joined for c in specials)

        self.escape = escape
        self.needs_escape = needs_escape
        self.fast = {str: escape, **fast}
        self.slow = slow
        # ``isoformat`` costs about a microsecond; dates and times repeat a lot (the six metadata
        # times of a submission are often equal, days recur), so their text is remembered. Only
        # naive values are cached: equal aware values may differ in offset, hence in text.
        self.temporal = {dt.datetime: lambda v: v.isoformat(datetime_sep), dt.date: dt.date.isoformat,
                         dt.time: dt.time.isoformat}
        self.caches: dict[type, dict] = {t: {} for t in self.temporal}


_NULL = r"\N"
_STR_OR_NONE = frozenset((str, type(None)))
_NONE_TYPE = type(None)
_ISO_CACHE_MAX = 1 << 16


def _pg_slow(v: Any) -> str:
    if v is None:
        return _NULL
    if isinstance(v, bool):
        s = "t" if v else "f"
    elif isinstance(v, (dt.date, dt.time)):
        s = v.isoformat()
    elif isinstance(v, (bytes, bytearray, memoryview)):
        s = "\\x" + bytes(v).hex()
    else:
        s = str(v)
    return PG_TEXT.escape(s)


#: PostgreSQL ``COPY`` text: exact types whose text needs no escaping, or only the string escapes,
#: take the fast table (one dict lookup per value); anything else goes through ``_pg_slow``
PG_TEXT = TextFormat({"\\": "\\", "\n": "n", "\r": "r", "\t": "t"},
                     {int: str, float: repr, Decimal: str, dt.datetime: dt.datetime.isoformat,
                      dt.date: dt.date.isoformat, dt.time: dt.time.isoformat, bool: lambda v: "t" if v else "f",
                      _NONE_TYPE: lambda v: _NULL},
                     _pg_slow, "T")


def _temporal_column(values: list, t: type, fmt: TextFormat) -> list:
    cache = fmt.caches[t]
    if len(cache) > _ISO_CACHE_MAX:
        cache.clear()
    conv = fmt.temporal[t]
    naive_only = t is not dt.date
    get = cache.get
    out = []
    append = out.append
    for v in values:
        if v is None:
            append(_NULL)
            continue
        s = get(v)
        if s is None:
            s = conv(v)
            if not naive_only or v.tzinfo is None:
                cache[v] = s
        append(s)
    return out


def _copy_column(values: list, fmt: TextFormat) -> list:
    """One column of a block in ``fmt``: exactly ``fmt.fast.get(type(v), fmt.slow)(v)`` per value,
    worked out a column at a time (one type check per column instead of one call per value)."""
    types = set(map(type, values))
    if types <= _STR_OR_NONE:
        if fmt.needs_escape(values):
            escape = fmt.escape
            return [_NULL if v is None else escape(v) for v in values]
        if _NONE_TYPE in types:
            return [_NULL if v is None else v for v in values]
        return values
    if len(types) == 1 or (len(types) == 2 and _NONE_TYPE in types):
        (t,) = types - {_NONE_TYPE}
        if t in fmt.caches:
            return _temporal_column(values, t, fmt)
        conv = fmt.fast.get(t)
        if conv is not None:
            if _NONE_TYPE in types:
                return [_NULL if v is None else conv(v) for v in values]
            return list(map(conv, values))
    fast, slow = fmt.fast, fmt.slow
    return [fast.get(type(v), slow)(v) for v in values]


def _copy_block(rows: list[dict], cols: list[str], fmt: TextFormat = PG_TEXT) -> str:
    """Rows in ``fmt`` (PostgreSQL COPY text by default): one line a row, ``row.get(c)`` of each
    column in ``cols`` written as ``fmt.fast.get(type(v), fmt.slow)(v)``, tab-separated."""
    if not rows:
        return ""
    if not cols:
        return "\n" * len(rows)
    if len(cols) == 1:
        c = cols[0]
        columns = [[r.get(c) for r in rows]]
    else:
        try:
            columns = list(map(list, zip(*map(operator.itemgetter(*cols), rows), strict=True)))
        except KeyError:  # a row without some column: NULL there, as row.get gives
            columns = [[r.get(c) for r in rows] for c in cols]
    return "\n".join(map("\t".join, zip(*[_copy_column(col, fmt) for col in columns], strict=True))) + "\n"


def copy_bytes(rows: list[dict], cols: list[str], fmt: TextFormat = PG_TEXT) -> bytes:
    """``_copy_block(rows, cols, fmt)`` as UTF-8 bytes."""
    return _copy_block(rows, cols, fmt).encode("utf-8")


class RowStream(io.RawIOBase):
    """A file-like reader producing COPY text lazily from rows: memory stays flat."""

    def __init__(self, rows: Iterable[dict], cols: list[str]):
        self._it = iter(rows)
        self._cols = cols
        self._buf = b""

    def readable(self) -> bool:
        return True

    def _fill(self, n: int) -> None:
        parts = [self._buf] if self._buf else []
        size = len(self._buf)
        cols, it = self._cols, self._it
        while size < n:
            block = list(itertools.islice(it, 512))
            if not block:
                break
            data = copy_bytes(block, cols)
            parts.append(data)
            size += len(data)
        self._buf = b"".join(parts)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        if len(self._buf) < n:
            self._fill(n)
        if len(self._buf) <= n:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _as_sent(sql: str) -> str:
    """SQL text for a psycopg2 call without parameters (``copy_expert``, ``execute(sql)``).
    SQLAlchemy's quoting and compiling double every ``%`` in names (psycopg2 turns ``%%`` back
    into ``%`` when it fills in parameters); a statement sent as is must carry them single, or a
    schema named ``a%b`` becomes ``a%%b``."""
    return sql.replace("%%", "%")


def _copy_sql(target: str, quoted_cols: str) -> str:
    """``COPY target (cols) FROM STDIN`` as psycopg2's ``copy_expert`` sends it (``_as_sent``)."""
    return _as_sent(f"COPY {target} ({quoted_cols}) FROM STDIN")


def _send(cur: Any, copy_sql: str, data: bytes) -> None:
    """Run one COPY from a block of COPY text held in memory."""
    cur.copy_expert(copy_sql, io.BytesIO(data), size=max(len(data), 1 << 16))


class CopyLoader(Overlapping, GenericLoader):
    name = "copy"

    def _raw_cursor(self):
        return self.conn.connection.driver_connection.cursor()

    def _qualified(self, table: sa.Table) -> str:
        return self.conn.dialect.identifier_preparer.format_table(table)

    def _copy(self, target_sql: str, cols: list[str], rows: list[dict]) -> None:
        """COPY ``rows`` into ``target_sql``; with a background thread, the COPY text is built here
        and sent by that thread (errors come with the next ``drain()``)."""
        q = self.conn.dialect.identifier_preparer.quote
        sql = _copy_sql(target_sql, ", ".join(q(c) for c in cols))
        bg = self._background
        if bg is not None:
            data = copy_bytes(rows, cols)
            raw = self.conn.connection.driver_connection

            def send() -> None:
                with raw.cursor() as cur:
                    _send(cur, sql, data)
            bg.submit(f"COPY into {target_sql}", send)
            return
        with self._raw_cursor() as cur:
            cur.copy_expert(sql, RowStream(rows, cols), size=1 << 16)

    def insert(self, table: sa.Table, rows: list[dict]) -> None:
        if not rows:
            return
        cols = list(rows[0])
        for chunk in chunks(rows, self.rows):
            self._copy(self._qualified(table), cols, chunk)

    def __init__(self, conn: sa.Connection, profile: SqlProfile, rows_per_batch: int | None = None):
        super().__init__(conn, profile, rows_per_batch)
        self._merge_only: set[str] = set()  # tables where a plain COPY met an existing key
        self._merge_texts: dict[tuple, tuple[str, ...]] = {}

    def upsert_step(self, table: sa.Table, key: str, rows: list[dict], outcome: Outcome | None = None) -> Outcome:
        if self._background is None:
            return super().upsert_step(table, key, rows, outcome)
        outcome = outcome or Outcome()  # all_new is settled in the background (delete_step reads it there)
        if rows:
            self._background.submit(f"table {table.name}", self._upsert_job(table, key, rows, outcome))
        return outcome

    def upsert(self, table: sa.Table, key: str, rows: list[dict]) -> bool:
        outcome = Outcome()
        if rows:
            job = self._upsert_job(table, key, rows, outcome)
            self.drain()
            job()
        return outcome.all_new

    def _upsert_job(self, table: sa.Table, key: str, rows: list[dict], outcome: Outcome):
        rows = dedupe(rows, key)
        cols = list(rows[0])
        return self._upsert_payloads(table, key, cols, [copy_bytes(chunk, cols) for chunk in chunks(rows, self.rows)],
                                     outcome)

    def _upsert_payloads(self, table: sa.Table, key: str, cols: list[str], payloads: list[bytes], outcome: Outcome):
        """The statements of one upsert, built here, run by the returned closure (now or in the
        background): COPY straight into the table inside a savepoint; at the first existing key,
        roll that back and merge through a staging table with ``INSERT ... ON CONFLICT DO UPDATE``
        (``outcome.all_new`` then turns False). After one such conflict the table is only merged
        in this run: a fresh export never merges, an incremental one pays one aborted COPY per table."""
        target = self._qualified(table)
        copy_sql, stage_sql, create, merge, drop = self._merge_sql(table, key, cols, target)
        raw = self.conn.connection.driver_connection
        merge_only, name = self._merge_only, table.fullname

        def run() -> None:
            import psycopg2.errors

            with raw.cursor() as cur:
                if name not in merge_only:
                    try:
                        # the savepoint goes with the first COPY (one round trip less a table)
                        for i, data in enumerate(payloads):
                            _send(cur, copy_sql if i else "SAVEPOINT exporter_copy; " + copy_sql, data)
                    except psycopg2.errors.UniqueViolation:
                        cur.execute("ROLLBACK TO SAVEPOINT exporter_copy")
                        cur.execute("RELEASE SAVEPOINT exporter_copy")
                        merge_only.add(name)
                    else:
                        cur.execute("RELEASE SAVEPOINT exporter_copy")
                        return
                outcome.all_new = False
                for data in payloads:
                    cur.execute(create)
                    _send(cur, stage_sql, data)
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
        raw = self.conn.connection.driver_connection

        def run() -> None:
            if not unless.all_new:
                with raw.cursor() as cur:
                    cur.execute(sql, params)
        self._background.submit(f"table {table.name}", run)

    def _merge_sql(self, table: sa.Table, key: str, cols: list[str], target: str) -> tuple[str, ...]:
        """COPY into the table, COPY into its staging table, create, merge and drop the staging table
        (text depending on names only: compiled once per table, key and columns)."""
        cache_key = (target, key, tuple(cols))
        found = self._merge_texts.get(cache_key)
        if found is None:
            found = self._merge_texts[cache_key] = self._compile_merge(table, key, cols, target)
        return found

    def _compile_merge(self, table: sa.Table, key: str, cols: list[str], target: str) -> tuple[str, ...]:
        from sqlalchemy.dialects import postgresql

        q = self.conn.dialect.identifier_preparer.quote
        col_list = ", ".join(q(c) for c in cols)
        stage = f"stage_{short_hash(table.fullname, 12)}"
        stage_t = sa.table(stage, *[sa.column(c) for c in cols])
        ins = postgresql.insert(table).from_select(cols, sa.select(*[stage_t.c[c] for c in cols]))
        others = [c for c in cols if c != key]
        if others:
            ins = ins.on_conflict_do_update(index_elements=[key], set_={c: ins.excluded[c] for c in others})
        else:
            ins = ins.on_conflict_do_nothing(index_elements=[key])
        return tuple(map(_as_sent, (
            _copy_sql(target, col_list), _copy_sql(q(stage), col_list),
            f"CREATE TEMPORARY TABLE {q(stage)} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP",
            str(ins.compile(dialect=self.conn.dialect)), f"DROP TABLE {q(stage)}")))
