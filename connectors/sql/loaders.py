"""How rows get into a table, per dialect: one generic path and two fast paths.

* ``GenericLoader``: ``executemany`` through SQLAlchemy (SQLite, SQL Server with pyodbc
  ``fast_executemany``, Access, any pyodbc dialect). Upsert = select the keys already present, one
  ``UPDATE`` executemany for those, one ``INSERT`` executemany for the others.
* ``CopyLoader`` (PostgreSQL + psycopg2): ``COPY ... FROM STDIN`` fed by a streaming reader; upserts
  go through a temporary staging table merged with ``INSERT ... ON CONFLICT DO UPDATE``. With
  ``overlap()`` the plain COPYs and the commit run on a background thread, in order, while the
  caller reads and parses the next batch (see ``Background``).
* ``MultiRowLoader`` (MySQL/MariaDB + PyMySQL): multi-row ``INSERT`` (``... ON DUPLICATE KEY
  UPDATE`` once a key exists) statements cut to fit ``max_allowed_packet``; like ``CopyLoader``,
  with ``overlap()`` they run on a background thread.

Every loader works inside the caller's transaction and holds at most ``rows_per_batch`` rows of
statement parameters at a time. Identifiers are quoted by SQLAlchemy's preparer; values are always
bound (or, for COPY, streamed as data, never as SQL).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import logging
import operator
import queue
import threading
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from exporter.naming import short_hash

from .capabilities import SqlProfile

log = logging.getLogger("exporter.sql")


def _dedupe(rows: list[dict], key: str) -> list[dict]:
    """Keep the last row of each key (a record sent twice in one batch)."""
    seen: dict[Any, dict] = {}
    for r in rows:
        seen[r[key]] = r
    return list(seen.values()) if len(seen) != len(rows) else rows


def _chunks(items: list, n: int) -> Iterator[list]:
    n = max(1, n)
    for i in range(0, len(items), n):
        yield items[i:i + n]


class DeferredError(Exception):
    """A statement run in the background failed; raised by the next ``drain()``."""

    def __init__(self, label: str, error: BaseException):
        super().__init__(f"{label}: {error}")
        self.label = label
        self.error = error


class Background:
    """One thread that runs a connection's statements in the order they were handed over, while the
    caller goes on (reading and parsing the next batch). The caller builds everything in Python
    (COPY text, statements) and hands over closures that are almost only driver calls, which
    release the interpreter lock while the server works; so the two threads hardly compete.

    Rules: the caller touches the connection only after ``drain()`` (``CopyLoader`` drains before
    every statement it or anybody else runs on the connection); after a failure the remaining
    closures are skipped (the transaction is lost anyway) and the next ``drain()`` raises the
    failure as ``DeferredError``."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._cv = threading.Condition()
        self._pending = 0
        self._error: DeferredError | None = None
        self._thread = threading.Thread(target=self._loop, name="exporter-sql-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            label, fn = item
            if self._error is None:
                try:
                    fn()
                except BaseException as e:  # noqa: BLE001 - handed to the caller by drain()
                    self._error = DeferredError(label, e)
            with self._cv:
                self._pending -= 1
                if not self._pending:
                    self._cv.notify_all()

    def in_worker(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, label: str, fn: Any) -> None:
        with self._cv:
            self._pending += 1
        self._q.put((label, fn))

    def drain(self) -> None:
        """Wait until everything handed over has run; raise the first failure."""
        with self._cv:
            while self._pending:
                if not self._cv.wait(timeout=1.0) and not self._thread.is_alive():
                    self._pending = 0
                    self._error = self._error or DeferredError(
                        "background writer", RuntimeError("the background writer thread stopped"))
        err, self._error = self._error, None
        if err is not None:
            raise err

    def stop(self) -> None:
        with contextlib.suppress(DeferredError):
            self.drain()
        self._q.put(None)
        self._thread.join(timeout=60)


class Outcome:
    """What a background upsert found out: ``all_new`` until it had to merge existing keys."""

    __slots__ = ("all_new",)

    def __init__(self) -> None:
        self.all_new = True


class GenericLoader:
    name = "generic"
    overlapping = False  # statements run in the background (CopyLoader.overlap)

    def __init__(self, conn: sa.Connection, profile: SqlProfile, rows_per_batch: int | None = None):
        self.conn = conn
        self.profile = profile
        self.rows = rows_per_batch or profile.capabilities.rows_per_batch
        # PostgreSQL texts cannot hold NUL. psycopg2 refuses such a value, but psqlODBC silently
        # cuts the text at the NUL (and a cut key could match another row): refuse it here.
        self._refuse_nul = profile.dialect == "postgresql" and conn.dialect.driver != "psycopg2"

    def _check_nul(self, table: sa.Table, rows: Iterable[dict]) -> None:
        if not self._refuse_nul:
            return
        for r in rows:
            for c, v in r.items():
                if isinstance(v, str) and "\x00" in v:
                    raise ValueError(f"column {c} holds a NUL character (\\x00), which a PostgreSQL text "
                                     "cannot store")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _params(table: sa.Table, cols: list[str]) -> dict[str, sa.BindParameter]:
        return {c: sa.bindparam(f"p{i}", type_=table.c[c].type) for i, c in enumerate(cols)}

    @staticmethod
    def _rename(rows: Iterable[dict], cols: list[str]) -> list[dict]:
        return [{f"p{i}": r.get(c) for i, c in enumerate(cols)} for r in rows]

    # ------------------------------------------------------------------ background (no-ops here)
    def drain(self) -> None:
        """Wait for statements running in the background (none for this loader)."""

    def stop(self) -> None:
        """Stop the background thread, if any."""

    # A batch's steps whose order matters but whose results the caller need not wait for: run
    # now here, queued on the background thread by an overlapping loader (CopyLoader).
    def upsert_step(self, table: sa.Table, key: str, rows: list[dict], outcome: Outcome | None = None) -> Outcome:
        """``upsert``; ``outcome.all_new`` turns False when some key was already stored."""
        outcome = outcome or Outcome()
        if not self.upsert(table, key, rows):
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
        self._check_nul(table, [{column: v} for v in values])
        step = max(1, self.profile.max_params - len(equal) - 1)
        for chunk in _chunks(sorted(set(values)), step):
            cond = [table.c[column].in_(chunk)] + [table.c[k] == v for k, v in equal.items()]
            self.conn.execute(table.delete().where(*cond))

    def insert(self, table: sa.Table, rows: list[dict]) -> None:
        if not rows:
            return
        self._check_nul(table, rows)
        cols = list(rows[0])
        stmt = table.insert().values(self._params(table, cols))
        for chunk in _chunks(rows, self.rows):
            self.conn.execute(stmt, self._rename(chunk, cols))

    def upsert(self, table: sa.Table, key: str, rows: list[dict]) -> bool:
        """Insert or update ``rows`` by ``key``; True when none of the keys was present (so no
        row can reference them yet), False when some were or the loader cannot tell."""
        if not rows:
            return True
        self._check_nul(table, rows)
        rows = _dedupe(rows, key)
        cols = list(rows[0])
        others = [c for c in cols if c != key]
        params = self._params(table, cols)
        upd = None
        if others:
            upd = (table.update().where(table.c[key] == params[key])
                   .values({c: params[c] for c in others}))
        ins = table.insert().values(params)
        step = max(1, min(self.rows, self.profile.max_params - 1))
        all_new = True
        for chunk in _chunks(rows, step):
            keys = [r[key] for r in chunk]
            present = set(self.conn.execute(sa.select(table.c[key]).where(table.c[key].in_(keys))).scalars())
            old = [r for r in chunk if r[key] in present]
            new = [r for r in chunk if r[key] not in present]
            if old:
                all_new = False
                if upd is not None:
                    self.conn.execute(upd, self._rename(old, cols))
            if new:
                self.conn.execute(ins, self._rename(new, cols))
        return all_new


# --------------------------------------------------------------------------------------------
# PostgreSQL: COPY
# --------------------------------------------------------------------------------------------


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


class Overlapping:
    """A loader whose statements can run on a ``Background`` thread (``overlap()``), while the
    caller reads and parses the next batch."""

    conn: sa.Connection
    _background: Background | None = None
    overlapping = False

    # ------------------------------------------------------------------ background
    def overlap(self) -> None:
        """Run bulk loads and commits on a background thread from now on (``stop()`` ends it).
        Every statement anybody runs on the connection through SQLAlchemy first waits for them."""
        if self._background is None:
            self._background = Background()
            self.overlapping = True
            sa.event.listen(self.conn, "before_cursor_execute", self._before_execute)

    def _before_execute(self, *_args: Any, **_kw: Any) -> None:
        self.settle()

    def drain(self) -> None:
        if self._background is not None:
            self._background.drain()

    def submit(self, label: str, fn: Any) -> None:
        """Hand ``fn`` to the background thread (``overlap()`` first)."""
        self._background.submit(label, fn)

    def stop(self) -> None:
        bg, self._background = self._background, None
        if bg is not None:
            self.overlapping = False
            with contextlib.suppress(Exception):
                sa.event.remove(self.conn, "before_cursor_execute", self._before_execute)
            bg.stop()

    def later(self, label: str, fn: Any) -> None:
        """Run ``fn`` on the background thread when there is one (in its turn), else now."""
        bg = self._background
        if bg is None or bg.in_worker():
            fn()
        else:
            bg.submit(label, fn)

    def settle(self) -> None:
        """Before using the connection directly (not through SQLAlchemy): wait for the background
        thread, unless this is it."""
        bg = self._background
        if bg is not None and not bg.in_worker():
            bg.drain()


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
        for chunk in _chunks(rows, self.rows):
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
        rows = _dedupe(rows, key)
        cols = list(rows[0])
        return self._upsert_payloads(table, key, cols, [copy_bytes(chunk, cols) for chunk in _chunks(rows, self.rows)],
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


# --------------------------------------------------------------------------------------------
# MySQL / MariaDB: multi-row INSERT sized to max_allowed_packet
# --------------------------------------------------------------------------------------------


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

    def _run(self, stmt, rows: list[dict], cols: list[str]) -> None:
        sql = str(stmt.compile(dialect=self.conn.dialect))
        with self.conn.connection.driver_connection.cursor() as cur:
            cur.max_stmt_length = self.max_stmt
            for chunk in _chunks(rows, self.rows):
                cur.executemany(sql, self._rename(chunk, cols))

    def insert(self, table: sa.Table, rows: list[dict]) -> None:
        if rows:
            self.later(f"table {table.name}", lambda: self._insert_now(table, rows))

    def _insert_now(self, table: sa.Table, rows: list[dict]) -> None:
        from sqlalchemy.dialects import mysql

        cols = list(rows[0])
        stmt = mysql.insert(table).values({c: sa.bindparam(f"p{i}") for i, c in enumerate(cols)})
        self._run(stmt, rows, cols)

    def upsert_step(self, table: sa.Table, key: str, rows: list[dict], outcome: Outcome | None = None) -> Outcome:
        outcome = outcome or Outcome()  # all_new is settled in its turn (delete_step reads it then)

        def job() -> None:
            if not self._upsert_now(table, key, rows):
                outcome.all_new = False
        if rows:
            self.later(f"table {table.name}", job)
        return outcome

    def delete_step(self, table: sa.Table, column: str, values: list, unless: Outcome, **equal: Any) -> None:
        self.later(f"table {table.name}", lambda: GenericLoader.delete_step(self, table, column, values, unless, **equal))

    def upsert(self, table: sa.Table, key: str, rows: list[dict]) -> bool:
        self.settle()
        return self._upsert_now(table, key, rows)

    def _upsert_now(self, table: sa.Table, key: str, rows: list[dict]) -> bool:
        if not rows:
            return True
        from sqlalchemy.dialects import mysql

        rows = _dedupe(rows, key)
        cols = list(rows[0])
        ins = mysql.insert(table).values({c: sa.bindparam(f"p{i}") for i, c in enumerate(cols)})
        if self._insert_new(table, ins, rows, cols):
            return True
        others = [c for c in cols if c != key] or [key]
        stmt = ins.on_duplicate_key_update({c: ins.inserted[c] for c in others})
        self._run(stmt, rows, cols)
        return False

    def _insert_new(self, table: sa.Table, ins, rows: list[dict], cols: list[str]) -> bool:
        """Plain INSERT inside a savepoint: True if every key was new; False (nothing written) at
        the first duplicate key, after which the table is only ever merged in this run."""
        import pymysql

        if table.fullname in self._merge_only:
            return False
        sp = self.conn.begin_nested()
        try:
            self._run(ins, rows, cols)
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


def loader_for(conn: sa.Connection, profile: SqlProfile, forced: str | None = None,
               rows_per_batch: int | None = None) -> GenericLoader:
    """The fastest loader the dialect *and driver* allow (``forced="generic"`` for tests)."""
    driver = conn.dialect.driver
    kind = forced or profile.loader
    if kind == "copy" and driver == "psycopg2":
        return CopyLoader(conn, profile, rows_per_batch)
    if kind in ("multirow", "loaddata") and driver == "pymysql":  # "loaddata": the name of an earlier loader
        return MultiRowLoader(conn, profile, rows_per_batch)
    return GenericLoader(conn, profile, rows_per_batch)
