"""The SQL sink: one transaction per batch, state stored with the data, names planned once.

Flow per ``write(batch)``:

1. schema phase (only when the batch holds ``Form`` or ``ExternalList`` records): plan names from
   the stored ``lineage``, check every existing table's shape (an incompatible table of the same
   name is a SinkError before anything is written), store the plan, then CREATE / ALTER ADD.
   Where DDL is transactional (SQLite, PostgreSQL, SQL Server) this runs inside the batch's
   transaction; elsewhere (MySQL/MariaDB, Access commit DDL implicitly) it runs in its own
   transaction just before the data, and only ever *adds* tables and columns.
2. data phase, inside the batch's transaction: users, groups (+ members), lists (+ items), forms,
   submissions per form (child rows and media rows of every written submission deleted, parent
   rows upserted, child rows inserted), media, then ``export_state`` from Checkpoint records.

``commit()`` commits (the runs row's counters go in the same transaction); a failure inside
``write`` rolls the batch back before raising; ``close(ok=False)`` rolls back whatever is pending.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import traceback
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from exporter import owner
from exporter.deletions import doomed_ids
from exporter.errors import ExporterError, SinkError, TransientSinkError, one_line, run_status
from exporter.fsutil import atomic_write
from exporter.model import (
    Account,
    Checkpoint,
    ExternalList,
    Form,
    Group,
    Media,
    Submission,
    User,
    extra_json,
)
from exporter.naming import safe_filename, safe_join
from exporter.retry import retry_call
from exporter.secrets import mask
from exporter.sinks import RunContext

from .capabilities import profile_for
from .loaders import DeferredError, GenericLoader, loader_for
from .planner import NamePlanner
from .schema import (
    DELETED_AT,
    FIXED_NAMES,
    LIST_ITEM_BASE_COLUMNS,
    FormPlan,
    build_tables,
    check_id,
    expected_foreign_keys,
    fixed_tables,
    iter_chunks,
    lineage_rows,
    list_item_columns,
    list_items_table,
    media_row,
    plan_form,
    records_rows,
    type_family,
)

log = logging.getLogger("exporter.sql")

_CHUNK = 8 << 20  # media bytes per statement when streaming BLOBs


#: tries of a batch that lost a deadlock or a lock wait, in all (see ``SqlSink.write``)
WRITE_ATTEMPTS = 4
_LOCK_ERRNOS = {1205, 1213}  # MySQL/MariaDB: lock wait timeout, deadlock
_LOCK_STATES = {"40001", "40P01"}  # SQLSTATE: serialization failure, deadlock detected


def _lost_a_lock(orig: BaseException) -> bool:
    """Whether a driver error says the transaction was chosen as a deadlock victim or gave up
    waiting for a lock: the same work can succeed when tried again."""
    if getattr(orig, "pgcode", None) in _LOCK_STATES:  # psycopg2
        return True
    first = orig.args[0] if getattr(orig, "args", None) else None
    return first in _LOCK_ERRNOS or first in _LOCK_STATES  # PyMySQL errno, pyodbc SQLSTATE


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


class SqlSink:
    """A SQLAlchemy database as an export destination (see the module docstring)."""

    def __init__(self, url: sa.URL, options: dict):
        self.url = url
        self.options = options
        profile = profile_for(url.get_backend_name())
        if options.get("max_columns"):  # a narrower limit than the dialect's (tests, legacy targets)
            caps = dataclasses.replace(profile.capabilities, max_columns=int(options["max_columns"]))
            profile = dataclasses.replace(profile, capabilities=caps)
        self.profile = profile
        self.capabilities = profile.capabilities
        self.schema = options.get("schema") or None
        self.name = url.render_as_string(hide_password=True) + (f" (schema {self.schema})" if self.schema else "")
        self._password = url.password
        self.media_in_db = bool(options.get("media_in_db"))
        self.media_dir = Path(options["media_dir"]) if options.get("media_dir") else None
        self.media_max_bytes = int(options.get("media_in_db_max_bytes") or (256 << 20))
        self.planner = NamePlanner(self.profile)
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None
        self._tx: sa.Transaction | None = None
        self._loader: GenericLoader | None = None
        self._ctx: RunContext | None = None
        self._failure: tuple[str, str] | None = None  # (status, message) of a failed run
        self._new_file: Path | None = None  # a SQLite file this run creates
        self._locked = False  # a session schema lock is held (MySQL)
        self._forms_met: dict[str, Form] = {}  # forms planned in this run (planned again after a retry)
        self._replan_needed = False
        self._reset_schema_cache()
        self._pending: dict[str, int] = {}
        self._counts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"SqlSink({self.name!r})"

    def eraser(self):
        """``exporter forget`` on this database (``connectors.sql.eraser``)."""
        from .eraser import SqlEraser

        return SqlEraser(self)

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: BaseException, what: str, retryable: bool = False) -> SinkError:
        orig = getattr(exc, "orig", None) or exc
        text = " ".join(str(orig).split()) or type(orig).__name__
        if len(text) > 500:
            text = text[:500] + "..."
        if self._password:
            text = text.replace(self._password, "***")
        if retryable and _lost_a_lock(orig):
            return TransientSinkError(f"{what}: {text}", context=self.name)
        return SinkError(f"{what}: {text}", context=self.name)

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        """The DB-API driver's base error class: the fast loaders use raw driver cursors (COPY,
        multi-row executemany), whose errors SQLAlchemy never sees nor wraps."""
        dbapi = getattr(self._engine.dialect, "dbapi", None) if self._engine is not None else None
        err = getattr(dbapi, "Error", None)
        return (err,) if isinstance(err, type) and issubclass(err, BaseException) else ()

    @contextlib.contextmanager
    def _op(self, what: str) -> Iterator[None]:
        try:
            yield
        except ExporterError:
            raise
        except DeferredError as e:  # a statement that ran in the background (overlapped loads)
            if isinstance(e.error, ExporterError):
                raise e.error from None
            raise self._translate(e.error, f"{what}: {e.label}") from None
        except SQLAlchemyError as e:
            raise self._translate(e, what, retryable=True) from None
        except OSError as e:
            raise SinkError(f"{what}: {e.strerror or e}", context=self.name) from None
        except (OverflowError, ValueError) as e:
            # a value the driver cannot send (an int beyond 64 bits, NUL in a PostgreSQL text,
            # a lone surrogate that has no UTF-8 form), raised before the server sees it
            raise self._translate(e, f"{what}: a value cannot be stored ({type(e).__name__})") from None
        except Exception as e:
            if isinstance(e, self._driver_errors()):
                raise self._translate(e, what, retryable=True) from None
            raise

    # ------------------------------------------------------------------ connection
    def _ensure_engine(self) -> sa.Engine:
        if self._engine is not None:
            return self._engine
        kwargs: dict[str, Any] = {}
        backend = self.url.get_backend_name()
        if backend == "sqlite":
            db = self.url.database or ""
            if db and db != ":memory:" and not db.startswith("file:"):
                path = Path(db).expanduser().resolve()
                if not path.parent.is_dir():
                    raise SinkError(f"directory {path.parent} does not exist", context=self.name)
                self._new_file = None if path.exists() else path
        with self._op("configuring the connection"):
            engine = sa.create_engine(self.url, **kwargs)
        if self.url.get_driver_name() == "pyodbc" and self.profile.odbc_fast_executemany:
            @event.listens_for(engine, "before_cursor_execute")
            def _fast_executemany(conn, cursor, statement, params, context, executemany):
                # pyodbc sends the whole parameter array in one round trip
                if executemany:
                    cursor.fast_executemany = True
        if backend == "sqlite":
            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn, _rec):  # pragma: no cover - exercised by every sqlite test
                dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN cover DDL too
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn):  # pragma: no cover
                conn.exec_driver_sql("BEGIN")
        self._engine = engine
        return engine

    def _connect(self) -> sa.Connection:
        if self._conn is None:
            engine = self._ensure_engine()
            try:
                self._conn = engine.connect()
            except SQLAlchemyError as e:
                raise self._translate(e, "cannot connect") from None
            self._loader = loader_for(self._conn, self.profile, self.options.get("loader"),
                                      self.options.get("rows_per_batch"))
            if self._conn.in_transaction():  # the loader may have asked the server a setting
                self._conn.rollback()
        return self._conn

    def _begin(self) -> None:
        if self._tx is None:
            conn = self._connect()
            self._loader.drain()  # an overlapped commit of the previous transaction
            self._tx = conn.begin()

    def _commit_tx(self) -> None:
        if self._tx is not None:
            tx, self._tx = self._tx, None
            tx.commit()

    def _rollback(self) -> None:
        if self._loader is not None:
            with contextlib.suppress(Exception):
                self._loader.drain()
        tx, self._tx = self._tx, None
        if tx is not None:
            with contextlib.suppress(Exception):
                tx.rollback()
        if self._conn is not None:
            # a transaction handed to the background for its commit, which did not happen, or one
            # an interruption (a signal) left inactive but still attached (a no-op otherwise)
            with contextlib.suppress(Exception):
                self._conn.rollback()
        self._pending = {}
        with contextlib.suppress(Exception):
            self._schema_unlock()  # forgets the lock first, whatever the server answers
        self._reset_schema_cache()

    def _reset_schema_cache(self) -> None:
        self._md = sa.MetaData(schema=self.schema)
        self._fixed = fixed_tables(self._md, self.profile)
        self._plans: dict[str, FormPlan] = {}
        self._tables: dict[str, sa.Table] = {}
        self._list_cols: list[str] | None = None

    # ------------------------------------------------------------------ shape checks and DDL
    def _inspector(self):
        return sa.inspect(self._conn)

    def _check_tables(self, tables: list[sa.Table]) -> list[tuple[sa.Table, list[sa.Column] | None]]:
        """Check every table before any DDL: returns (table, None) to create, (table, [missing
        columns]) to alter. Raises SinkError for an existing table of incompatible shape."""
        insp = self._inspector()
        out = []
        for t in tables:
            if not insp.has_table(t.name, schema=self.schema):
                out.append((t, None))
                continue
            cols = {c["name"].lower(): c for c in insp.get_columns(t.name, schema=self.schema)}
            pk = [c.lower() for c in (insp.get_pk_constraint(t.name, schema=self.schema) or {}).get(
                "constrained_columns") or []]
            want_pk = [c.name.lower() for c in t.primary_key.columns]
            if sorted(pk) != sorted(want_pk):
                raise SinkError(
                    f"table {t.name} already exists with an incompatible shape: its primary key is "
                    f"({', '.join(pk) or 'none'}), expected ({', '.join(want_pk)}); use another "
                    "database or schema", context=self.name)
            missing = []
            for c in t.columns:
                have = cols.get(c.name.lower())
                if have is None:
                    missing.append(c)
                    continue
                fam_have, fam_want = type_family(have["type"]), type_family(c.type)
                if "any" not in (fam_have, fam_want) and fam_have != fam_want:
                    raise SinkError(
                        f"table {t.name} already exists with an incompatible shape: column {c.name} is "
                        f"{have['type']}, expected {fam_want}; use another database or schema",
                        context=self.name)
            out.append((t, missing))
        return out

    def _apply_ddl(self, checked: list[tuple[sa.Table, list[sa.Column] | None]]) -> None:
        conn = self._conn
        prep = conn.dialect.identifier_preparer
        add = "ADD" if self.profile.dialect == "mssql" else "ADD COLUMN"
        for t, missing in checked:
            if missing is None:
                with self._op(f"creating table {t.name}"):
                    if self.profile.late_constraints:  # foreign keys and bulk indexes: finish_constraints
                        conn.execute(sa.schema.CreateTable(t, include_foreign_key_constraints=[]))
                        for ix in t.indexes if not t.info.get("late_indexes") else ():
                            ix.create(conn)
                    else:
                        t.create(conn)
                continue
            for c in missing:
                spec = sa.schema.CreateColumn(c).compile(dialect=conn.dialect)
                with self._op(f"adding column {c.name} to table {t.name}"):
                    conn.exec_driver_sql(f"ALTER TABLE {prep.format_table(t)} {add} {spec}")

    def _ensure_fixed(self) -> None:
        tables = [self._fixed[n] for n in FIXED_NAMES]
        self._apply_ddl(self._check_tables(tables))

    def _finish_constraints(self) -> None:
        """Add the foreign keys and indexes that tables created under ``late_constraints`` were
        created without and still lack (the catalog against the tables the lineage holds): at the
        end of a run, and at the start of one, after a run that stopped before its end."""
        conn = self._conn
        insp = sa.inspect(conn)
        existing = set(insp.get_table_names(schema=self.schema))
        lin = self._fixed["lineage"]
        tables = conn.execute(sa.select(lin.c.form_id, lin.c.subform, lin.c.position, lin.c.table_name)
                              .where(lin.c.object == "table")).all() if lin.name in existing else []
        wanted = [fk for fk in expected_foreign_keys(tables, self.planner) if fk[0] in existing and fk[2] in existing]
        have: set[tuple[str, tuple[str, ...], str]] = set()
        if wanted:
            for (_schema, table), fks in insp.get_multi_foreign_keys(schema=self.schema).items():
                have.update((table, tuple(fk["constrained_columns"]), fk["referred_table"]) for fk in fks)
        missing = [fk for fk in wanted if (fk[0], tuple(fk[1]), fk[2]) not in have]
        if missing:
            log.info("%s: adding the foreign keys of %d tables loaded without them (%s)", self.name, len(missing),
                     ", ".join(fk[0] for fk in missing))
        for child, cols, parent, ref_cols in missing:
            md = sa.MetaData(schema=self.schema)  # column types play no part in the statement
            target = sa.Table(parent, md, *(sa.Column(c, sa.Integer) for c in ref_cols))
            source = sa.Table(child, md, *(sa.Column(c, sa.Integer) for c in cols))
            fk = sa.ForeignKeyConstraint(cols, [target.c[c] for c in ref_cols])
            source.append_constraint(fk)
            with self._op(f"adding the foreign key of table {child} (to table {parent})"):
                conn.execute(sa.schema.AddConstraint(fk))
        for t in self._fixed.values():
            for ix in t.indexes if t.info.get("late_indexes") and t.name in existing else ():
                with self._op(f"creating index {ix.name} of table {t.name}"):
                    if not insp.has_index(t.name, ix.name, schema=self.schema):
                        log.info("%s: creating index %s of table %s", self.name, ix.name, t.name)
                        ix.create(conn)

    def _finish_constraints_tx(self) -> None:
        """``_finish_constraints`` under the schema lock, committed with the transaction in hand or
        in one of its own (the run's owner only: a parallel export's workers may still be
        writing)."""
        if not self.profile.late_constraints or (self._ctx is not None and self._ctx.worker is not None):
            return
        with self._op("adding foreign keys and indexes"):
            self._begin()
            self._schema_lock()
            self._finish_constraints()

    # ------------------------------------------------------------------ protocol
    def open(self, ctx: RunContext) -> None:
        self._ctx, self._failure = ctx, None
        self._policy = ctx.deletion_policy()
        conn = self._connect()
        try:
            with self._op("preparing the export tables"):
                self._begin()
                self._schema_lock()
            # first what a run that stopped before its end left to do (not the tables made below)
            self._finish_constraints_tx()
            with self._op("preparing the export tables"):
                self._ensure_fixed()
                self._commit_tx()
                self._schema_unlock()
                if ctx.worker is None:  # a parallel export's workers leave the run's row to the parent
                    self._begin()
                    runs = self._fixed["runs"]
                    self._mark_abandoned()
                    conn.execute(runs.delete().where(runs.c.run_id == ctx.run_id))
                    conn.execute(runs.insert().values(run_id=ctx.run_id, started_at=_now(), source=ctx.source,
                                                      mode=ctx.mode, status="running", forms=0, submissions=0,
                                                      media=0, counts="{}", owner=owner.owner()))
                    self._commit_tx()
        except BaseException as e:
            self._rollback()  # the pipeline closes only the sinks that opened: leave no lock nor transaction
            if self._failure is None:  # a run's row committed already says why it ended
                self.note_failure(run_status(e), mask(one_line(e)))
            with contextlib.suppress(Exception):
                self.close(False)  # and no connection, nor a database file this run created
            raise
        # Overlap each batch's loading and commit with the reading of the next one, except when the
        # source acknowledges batches (unread mode marks submissions read on the server right after
        # the commit, so the commit must be done by then), in the workers of a parallel export into
        # MySQL/MariaDB (a batch that loses an InnoDB deadlock to another worker is written again,
        # so its failure must come before its commit returns; an overlapped one would come with the
        # next batch) or when switched off (-o background_load=false).
        parallel_mysql = ctx.worker is not None and self.profile.dialect == "mysql"
        if ctx.mode != "unread" and not parallel_mysql and self.options.get("background_load", True) is not False:
            overlap = getattr(self._loader, "overlap", None)
            if overlap is not None:
                overlap()

    def load_state(self) -> dict[str, str | None]:
        own = self._conn is None
        with self._op("reading the export state"):
            conn = self._connect()
            try:
                if not sa.inspect(conn).has_table("export_state", schema=self.schema):
                    return {}
                st = self._fixed["export_state"]
                return {r.form_id: r.cursor for r in conn.execute(sa.select(st.c.form_id, st.c.cursor))}
            finally:
                if own:
                    conn.rollback()
                    conn.close()
                    self._conn = None

    def held_ids(self, form_id: str) -> set[str] | None:
        """The ids of the form's submissions stored and not marked deleted
        (``exporter.deletions.preflight``); None when the form has no table here yet."""
        own = self._conn is None
        with self._op(f"reading the ids of form {form_id}"):
            conn = self._connect()
            try:
                insp = sa.inspect(conn)
                if not insp.has_table("forms", schema=self.schema):
                    return None
                forms = self._fixed["forms"]
                name = conn.execute(sa.select(forms.c.table_name).where(forms.c.form_id == form_id)).scalar()
                if not name or not insp.has_table(name, schema=self.schema):
                    return None
                main = sa.Table(name, sa.MetaData(schema=self.schema), autoload_with=conn)
                key = list(main.primary_key.columns)[0]
                q = sa.select(key)
                if DELETED_AT in main.c:
                    q = q.where(main.c[DELETED_AT].is_(None))
                return set(conn.execute(q).scalars())
            finally:
                if own:
                    conn.rollback()
                    conn.close()
                    self._conn = None

    def write(self, batch: Sequence[Any]) -> None:
        """Write one batch in one transaction. A batch that lost a deadlock or a lock wait
        (processes writing the same tables at once) is rolled back and written again, up to
        ``WRITE_ATTEMPTS`` times in all; any other failure rolls back and is raised."""
        if self._conn is None:
            raise SinkError("write() before open()", context=self.name)
        retry_call(lambda: self._write_once(batch), attempts=WRITE_ATTEMPTS, base_delay=0.1, max_delay=2.0,
                   describe=f"{self.name}: writing a batch")

    def _write_once(self, batch: Sequence[Any]) -> None:
        try:
            with self._op("writing a batch"):
                with self._op("completing the previous batch"):
                    self._loader.drain()
                if self._replan_needed:
                    self._replan()
                self._write(batch)
        except BaseException as e:
            self._rollback()
            if isinstance(e, TransientSinkError):
                self._replan_needed = True  # the rollback forgot the tables of the forms met so far
            raise

    def _replan(self) -> None:
        """After a rollback (which forgets the tables): plan again the forms met so far in the run."""
        with self._op("preparing the tables again"):
            self._begin()
            self._schema_lock()
            for f in list(self._forms_met.values()):
                self._prepare_form(f)
            self._commit_tx()
            self._schema_unlock()
        self._replan_needed = False

    def commit(self) -> None:
        if self._tx is None:
            return
        try:
            with self._op("committing"):
                if self._loader.overlapping:
                    # handed to the background thread: done before anything else touches the
                    # connection (the next batch's write, close), which reports its failure
                    stmt = self._run_update(status="running")
                    conn, tx, self._tx = self._conn, self._tx, None

                    def finish() -> None:
                        if stmt is not None:
                            conn.execute(stmt)
                        tx.commit()
                    self._loader.submit("committing", finish)
                else:
                    self._update_run(status="running")
                    self._commit_tx()
        except BaseException:
            self._rollback()
            raise
        for k, n in self._pending.items():
            self._counts[k] = self._counts.get(k, 0) + n
        self._pending = {}

    def close(self, ok: bool) -> None:
        if self._conn is None:
            if self._engine is not None:
                self._engine.dispose()
            if not ok:
                self._remove_new_file()
            return
        failure: BaseException | None = None
        try:
            if ok:
                try:
                    self.commit()
                    with self._op("committing"):
                        self._loader.drain()  # the last batch, when it was loaded in the background
                    self._finish_constraints_tx()
                    with self._op("adding foreign keys and indexes"):
                        self._commit_tx()
                except BaseException as e:  # noqa: BLE001 - a stop signal too: rolled back, recorded, raised
                    traceback.clear_frames(e.__traceback__)  # (a driver's cursor there holds locks)
                    self._rollback()
                    failure, ok = e, False
            else:
                self._rollback()
            if self._ctx is not None and self._ctx.worker is None:
                status, message = ("ok", None) if ok else self._failure or ("failed", None)
                if failure is not None:
                    status, message = run_status(failure), mask(one_line(failure))
                try:
                    with self._op("recording the run"):
                        self._begin()
                        self._update_run(status=status, ended=True, message=message)
                        self._commit_tx()
                except SinkError as e:
                    self._rollback()
                    if ok:
                        raise
                    log.debug("%s: could not record the run as %s: %s", self.name, status, e)
            if failure is not None:
                raise failure
        finally:
            with contextlib.suppress(Exception):
                self._loader.stop()
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
            if self._engine is not None:
                self._engine.dispose()
            if not ok:
                self._remove_new_file()

    def _remove_new_file(self) -> None:
        """A SQLite file this failed run created and committed no batch to (only the empty
        tables made at open): removed, so a refused run leaves no debris. A database that existed
        before, or that holds a committed batch, stays."""
        if self._new_file is None or self._counts:
            return
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self._new_file}{suffix}").unlink()
        self._new_file = None

    # ------------------------------------------------------------------ runs
    def note_failure(self, status: str, message: str) -> None:
        """How the run failed (``failed`` or ``interrupted``) and why: recorded by ``close(False)``."""
        self._failure = (status, message)

    def _mark_abandoned(self) -> None:
        """Runs still ``running`` whose process is dead (killed outright, power lost): recorded as
        ``abandoned``. Runs of another host, or of a live process, are left as they are."""
        runs = self._fixed["runs"]
        rows = self._conn.execute(sa.select(runs.c.run_id, runs.c.owner).where(runs.c.status == "running")).all()
        for run_id, who in rows:
            if owner.is_dead(who):
                log.info("%s: run %s (process %s) stopped without finishing: recorded as abandoned",
                         self.name, run_id, who)
                self._conn.execute(runs.update().where(runs.c.run_id == run_id).values(
                    status="abandoned", message=f"the process ({who}) stopped without finishing (killed); "
                                                f"found by run {self._ctx.run_id if self._ctx else '?'}"))

    def _update_run(self, status: str, ended: bool = False, message: str | None = None) -> None:
        stmt = self._run_update(status, ended, message)
        if stmt is not None:
            self._conn.execute(stmt)

    def _run_update(self, status: str, ended: bool = False, message: str | None = None) -> sa.Update | None:
        """The statement recording the run's status and counts so far (None outside a run, and in
        a parallel export's workers)."""
        if self._ctx is None or self._ctx.worker is not None:
            return None
        counts = dict(self._counts)
        for k, n in self._pending.items():
            counts[k] = counts.get(k, 0) + n
        runs = self._fixed["runs"]
        values = {"status": status, "forms": counts.get("form", 0), "submissions": counts.get("submission", 0),
                      "media": counts.get("media", 0), "counts": json.dumps(counts, sort_keys=True)}
        if ended:
            values["ended_at"] = _now()
            values["message"] = message
        return runs.update().where(runs.c.run_id == self._ctx.run_id).values(**values)

    def add_counts(self, counts: dict[str, int]) -> None:
        """Add what a parallel export's workers wrote to this run's counts (recorded at close)."""
        for k, n in counts.items():
            self._counts[k] = self._counts.get(k, 0) + n

    def _lock_key(self) -> int:
        # MySQL's named locks are server-wide: the database is part of the name
        digest = hashlib.sha256(f"exporter schema {self.url.database or ''} {self.schema or ''}".encode()).digest()
        return int.from_bytes(digest[:8], "big") >> 1

    def _schema_lock(self) -> None:
        """Serialise schema changes and name planning with any other process writing this schema
        (a parallel export's workers, two exports at once): held until the transaction ends, or
        until ``_schema_unlock`` for a session lock (MySQL)."""
        sql = self.profile.schema_lock_sql
        if not sql or self._locked:
            return
        got = self._conn.execute(sa.text(sql), {"k": self._lock_key()}).scalar()
        if self.profile.schema_unlock_sql:
            if got != 1:
                raise SinkError("timed out waiting for another export to finish changing the tables "
                                "(schema lock)", context=self.name)
            self._locked = True

    def _schema_unlock(self) -> None:
        """Release a session schema lock (after the schema step's commit, or on rollback)."""
        if self._locked:
            self._locked = False
            self._conn.execute(sa.text(self.profile.schema_unlock_sql), {"k": self._lock_key()})
            if self._conn.in_transaction():
                self._conn.commit()

    def _count(self, kind: str, n: int = 1) -> None:
        self._pending[kind] = self._pending.get(kind, 0) + n

    # ------------------------------------------------------------------ schema phase
    def _run_id(self) -> str:
        return self._ctx.run_id if self._ctx else ""

    def _prepare_form(self, form: Form) -> None:
        conn, lin = self._conn, self._fixed["lineage"]
        stored = [dict(r._mapping) for r in conn.execute(sa.select(lin).where(lin.c.form_id == form.id))]
        taken = {n.lower() for n in FIXED_NAMES}
        taken |= {(n or "").lower() for n in conn.execute(
            sa.select(lin.c.table_name).where(lin.c.object == "table")).scalars()}
        plan = plan_form(form, stored, self.planner, self.profile, taken, self._run_id())
        tables: dict[str, sa.Table] = {}
        tables.update(build_tables(self._md, plan.main, self.profile, None))
        for tp in plan.subforms.values():
            tables.update(build_tables(self._md, tp, self.profile, plan.main))
        checked = self._check_tables(list(tables.values()))
        with self._op(f"storing the name plan of form {form.id}"):
            self._loader.upsert(lin, "lineage_key", lineage_rows(plan, self._run_id()))
        self._apply_ddl(checked)
        self._plans[form.id] = plan
        self._tables.update(tables)
        self._forms_met[form.id] = form

    def _prepare_list_items(self, lists: list[ExternalList]) -> None:
        levels = cols = 0
        for lst in lists:
            for item in lst.parsed_items():
                levels = max(levels, len(item.levels))
                cols = max(cols, max((len(lv) for lv in item.levels), default=0))
        current = self._list_item_table()
        base = LIST_ITEM_BASE_COLUMNS
        room = (self.capabilities.max_columns or 10 ** 6) - len(base)
        wanted = list_item_columns(levels, cols)[:room]
        new = [c for c in wanted if c not in current.c]
        if not new:
            return
        # the split columns already there stay (and first): only new ones are added
        extra = [c.name for c in current.columns if c.name not in base] + new
        table = self._build_list_items(extra)
        self._apply_ddl(self._check_tables([table]))

    def _build_list_items(self, extra: list[str]) -> sa.Table:
        self._fixed["list_items"] = list_items_table(self._md, self.profile, extra)
        self._list_cols = list(extra)
        return self._fixed["list_items"]

    def _list_item_table(self) -> sa.Table:
        if self._list_cols is None:
            have = [c["name"] for c in self._inspector().get_columns("list_items", schema=self.schema)]
            self._build_list_items([n for n in have if n not in LIST_ITEM_BASE_COLUMNS])
        return self._fixed["list_items"]

    # ------------------------------------------------------------------ data phase
    def _write(self, batch: Sequence[Any]) -> None:
        forms = [r for r in batch if isinstance(r, Form)]
        lists = [r for r in batch if isinstance(r, ExternalList)]
        if forms or lists:
            if self.capabilities.transactional_ddl:
                self._begin()
            else:
                # DDL commits implicitly here: finish the pending batch first, then plan alone
                self.commit()
                self._begin()
            self._schema_lock()
            for f in forms:
                self._prepare_form(f)
            if lists:
                self._prepare_list_items(lists)
            if not self.capabilities.transactional_ddl:
                self._commit_tx()
                self._schema_unlock()
        self._begin()
        for acc in (r for r in batch if isinstance(r, Account)):
            if self._ctx is not None:  # the served times have no offset: record the zone with the run
                runs = self._fixed["runs"]
                self._conn.execute(runs.update().where(runs.c.run_id == self._ctx.run_id)
                                   .values(timezone=acc.timezone))
            if acc.form_ids is not None:
                self._mark_forms_gone(set(acc.form_ids))
        users = [r for r in batch if isinstance(r, User)]
        groups = [r for r in batch if isinstance(r, Group)]
        if users:
            self._write_users(users)
        if groups:
            self._write_groups(groups)
        if lists:
            self._write_lists(lists)
        if forms:
            self._write_forms(forms)
        subs: OrderedDict[str, OrderedDict[str, Submission]] = OrderedDict()
        for r in batch:
            if isinstance(r, Submission):
                subs.setdefault(r.form_id, OrderedDict())[r.id] = r
        for form_id, by_id in subs.items():
            self._write_submissions(form_id, list(by_id.values()))
        media = [r for r in batch if isinstance(r, Media)]
        if media and subs:
            media = self._current_media(media, subs)
        if media:
            self._write_media(media)
        cps = [r for r in batch if isinstance(r, Checkpoint)]
        for c in cps:
            if c.listing is not None and c.final:
                self._apply_deletions(c.form_id, c.listing)
        if cps:
            st = self._fixed["export_state"]
            with self._op("table export_state"):
                self._loader.upsert(st, "form_id", [
                    {"form_id": c.form_id, "cursor": c.cursor, "mode": c.mode, "run_id": self._run_id(), "updated_at": _now()}
                    for c in cps])
            self._count("checkpoint", len(cps))

    def _mark_forms_gone(self, listed: set[str]) -> None:
        """Forms the service no longer lists get ``forms.deleted_at`` (their rows are kept);
        a form listed again is written again, which clears it."""
        forms = self._fixed["forms"]
        with self._op("table forms: forms gone from the service"):
            held = self._conn.execute(sa.select(forms.c.form_id).where(forms.c[DELETED_AT].is_(None))).scalars().all()
            gone = sorted(set(held) - listed)
            for chunk in iter_chunks(gone, max(1, self.profile.max_params - 2)):
                self._conn.execute(forms.update().where(forms.c.form_id.in_(chunk)).values({DELETED_AT: _now()}))
        if gone:
            log.warning("forms gone from the service, marked (their data is kept): %s", ", ".join(gone))

    def _apply_deletions(self, form_id: str, listing: frozenset[str]) -> None:
        """Rows of the form the complete ``listing`` lacks are deleted on the service: their main
        row gets ``deleted_at`` (soft) or, with ``--deletions hard``, the row, its sub-form rows
        and media rows go; a row listed again loses its mark. In the batch's transaction, after
        the check against ``--max-deletions`` (``exporter.deletions``)."""
        plan = self._plans.get(form_id)
        if plan is None:
            return
        main = self._tables[plan.main.parts[0]]
        key = main.c[plan.main.key_columns[0]]
        column = plan.main.deleted_column or DELETED_AT
        mark = main.c[column]
        with self._op(f"form {form_id}: reading the ids held"):
            rows = self._conn.execute(sa.select(key, mark)).all()
        held = [r[0] for r in rows if r[1] is None]
        marked = [r[0] for r in rows if r[1] is not None]
        del rows
        doomed = doomed_ids(held, listing)
        self._policy.check(form_id, len(doomed), len(held), self.name)
        back = [i for i in marked if i in listing]
        step = max(1, self.profile.max_params - 2)
        with self._op(f"form {form_id} table {main.name}: deletions"):
            for chunk in iter_chunks(back, step):
                self._conn.execute(main.update().where(key.in_(chunk)).values({column: None}))
            if self._policy.mode == "soft":
                now = _now()
                for chunk in iter_chunks(doomed, step):
                    self._conn.execute(main.update().where(key.in_(chunk)).values({column: now}))
            else:
                gone = doomed + [i for i in marked if i not in listing]
                for tp in plan.subforms.values():
                    for part in reversed(tp.parts):
                        self._loader.delete_in(self._tables[part], tp.key_columns[0], gone)
                self._loader.delete_in(self._fixed["media"], "submission_id", gone, form_id=form_id)
                for part in reversed(plan.main.parts):
                    self._loader.delete_in(self._tables[part], plan.main.key_columns[0], gone)
        if doomed or back:
            log.warning("form %s: %d submissions gone from the service (%s), %d back", form_id, len(doomed),
                        self._policy.mode, len(back))
            self._count("deleted", len(doomed))

    @staticmethod
    def _current_media(media: list[Media], subs: dict[str, dict[str, Submission]]) -> list[Media]:
        """Drop the media of an earlier version of a submission sent again in this batch (or whose
        media spilled over into it): its rows were just replaced by the last version's, so only
        the media that version references may be written."""
        refs: dict[tuple[str, str], tuple[set[int], tuple]] = {}
        out = []
        for m in media:
            ref = m.ref
            key = (ref.form_id, ref.submission_id)
            sub = subs.get(key[0], {}).get(key[1])
            if sub is not None:
                wanted = refs.get(key)
                if wanted is None:
                    # sources hand over the very refs of the submission: identity first, equality
                    # (a hash of six fields) only for a ref that is not one of them
                    wanted = refs[key] = (set(map(id, sub.media)), sub.media)
                if id(ref) not in wanted[0] and ref not in wanted[1]:
                    continue
            out.append(m)
        return out

    def _write_users(self, users: list[User]) -> None:
        rows = [{"user_id": check_id(u.id, "user id", f"user {u.id}"), "login": u.login, "first_name": u.first_name,
                     "last_name": u.last_name, "email": u.email, "phone": u.phone,
                     "admin": int(u.admin) if self.profile.boolean_as_int else bool(u.admin),
                     "main_group_id": u.main_group_id, "create_time": u.create_time,
                     "extra_keys": extra_json(u.extra)} for u in users]
        with self._op("table users"):
            self._loader.upsert(self._fixed["users"], "user_id", rows)
        self._count("user", len(rows))

    def _write_groups(self, groups: list[Group]) -> None:
        rows = [{"group_id": check_id(g.id, "group id", f"group {g.id}"), "name": g.name, "parent_id": g.parent_id,
                 "extra_keys": extra_json(g.extra)} for g in groups]
        members = []
        for g in {g.id: g for g in groups}.values():
            seen = set()
            for role, ids in (("member", g.users), ("leader", g.leaders)):
                for uid in ids:
                    if (uid, role) not in seen:
                        seen.add((uid, role))
                        members.append({"group_id": g.id, "user_id": check_id(uid, "user id", f"group {g.id}"),
                                            "role": role})
        with self._op("table user_groups"):
            self._loader.upsert(self._fixed["user_groups"], "group_id", rows)
        with self._op("table group_members"):
            gm = self._fixed["group_members"]
            self._loader.delete_in(gm, "group_id", [r["group_id"] for r in rows])
            self._loader.insert(gm, members)
        self._count("group", len(rows))

    def _write_lists(self, lists: list[ExternalList]) -> None:
        rows = [{"list_id": check_id(x.id, "list id", f"list {x.id}"), "name": x.name, "class_": x.class_,
                     "update_time": x.update_time, "item_count": len(x.items)} for x in lists]
        for r in rows:
            r["class"] = r.pop("class_")
        with self._op("table lists"):
            self._loader.upsert(self._fixed["lists"], "list_id", rows)
        table = self._list_item_table()
        split = [c.name for c in table.columns if c.name not in LIST_ITEM_BASE_COLUMNS]
        with self._op("table list_items"):
            self._loader.delete_in(table, "list_id", [r["list_id"] for r in rows])
            for lst in {x.id: x for x in lists}.values():
                buf: list[dict] = []
                for item in lst.parsed_items():
                    row = dict.fromkeys(split)
                    row.update(list_id=lst.id, item_index=item.index, line=item.line)
                    for lv_i, level in enumerate(item.levels, 1):
                        for c_i, col in enumerate(level, 1):
                            stem = f"l{lv_i}" if c_i == 1 else f"l{lv_i}_c{c_i}"
                            if f"{stem}_label" in row:
                                row[f"{stem}_label"] = col.label
                                row[f"{stem}_code"] = col.code
                    buf.append(row)
                    if len(buf) >= self._loader.rows:
                        self._loader.insert(table, buf)
                        buf = []
                self._loader.insert(table, buf)
        self._count("list", len(rows))

    def _write_forms(self, forms: list[Form]) -> None:
        rows = [{"form_id": f.id, "name": f.name, "class_": f.class_, "update_time": f.update_time,
                     "table_name": self._plans[f.id].main.parts[0],
                     "definition": json.dumps(f.raw, ensure_ascii=False, sort_keys=True, default=str),
                     DELETED_AT: None}
                for f in forms]
        for r in rows:
            r["class"] = r.pop("class_")
        with self._op("table forms"):
            self._loader.upsert(self._fixed["forms"], "form_id", rows)
        self._count("form", len(rows))

    def _plan_of(self, form_id: str) -> FormPlan:
        plan = self._plans.get(form_id)
        if plan is None:
            raise SinkError("submissions arrived before the form definition in this run", context=f"form {form_id}")
        return plan

    def _write_submissions(self, form_id: str, subs: list[Submission]) -> None:
        plan = self._plan_of(form_id)
        rows, _media = records_rows(plan, self.profile, subs)
        self._store_submissions(plan, [s.id for s in subs], rows)

    def _store_submissions(self, plan: FormPlan, ids: list[str], parts: dict[str, list[dict]]) -> None:
        """Upsert the rows of one form's submissions (``ids``) and replace their sub-form rows
        (row dicts per table part, ``parts``)."""
        loader = self._loader
        form_id = plan.form.id
        key = plan.main.key_columns[0]
        # Submissions already stored lose their old sub-form and media rows. New ones have none:
        # sub-form rows reference the form table, and media rows are only ever written for a
        # submission written before them. Skipping the deletes on a fresh load matters: without
        # table statistics PostgreSQL runs the media delete as a scan of the form's whole index.
        # (Steps, in this order: run now, or on the loader's background thread.)
        outcome = None
        for part in plan.main.parts:
            with self._op(f"form {form_id} table {part}"):
                outcome = loader.upsert_step(self._tables[part], key, parts[part], outcome)
        for tp in plan.subforms.values():
            for part in reversed(tp.parts):
                with self._op(f"form {form_id} table {part}"):
                    loader.delete_step(self._tables[part], tp.key_columns[0], ids, outcome)
        with self._op(f"form {form_id} table media"):
            loader.delete_step(self._fixed["media"], "submission_id", ids, outcome, form_id=form_id)
        for tp in plan.subforms.values():
            for part in tp.parts:
                with self._op(f"form {form_id} table {part}"):
                    loader.insert(self._tables[part], parts.get(part, []))
        self._count("submission", len(ids))

    # ------------------------------------------------------------------ media
    def _write_media(self, media: list[Media]) -> None:
        rows = []
        by_key: dict[str, Media] = {}
        media_dir, in_db = self.media_dir, self.media_in_db
        for m in media:
            size, sha, path = m.size, m.sha256, None
            if media_dir is not None:
                r = m.ref
                path, size, sha = self._media_file(m, f"form {r.form_id} submission {r.submission_id} media {r.name}")
            elif in_db and (size is None or sha is None):
                size, sha = self._measure(m)
            row = media_row(m, size, sha, path)
            rows.append(row)
            by_key[row["media_key"]] = m
        table = self._fixed["media"]
        with self._op("table media"):
            self._loader.upsert_step(table, "media_key", rows)
        if self.media_in_db:
            sizes = {r["media_key"]: r["size"] for r in rows}
            for k, m in by_key.items():
                with self._op(f"table media ({m.ref.name})"):
                    self._store_content(table, k, m, sizes[k])
        self._count("media", len(rows))

    @staticmethod
    def _measure(m: Media) -> tuple[int, str]:
        h, n = hashlib.sha256(), 0
        for chunk in m.iter_bytes():
            h.update(chunk)
            n += len(chunk)
        return n, h.hexdigest()

    def _media_file(self, m: Media, ctx: str) -> tuple[str, int, str]:
        r = m.ref
        parts = [safe_filename(r.form_id), safe_filename(r.submission_id)]
        if r.subform:
            parts.append(safe_filename(f"{r.subform}-{r.row}"))
        parts.append(safe_filename(r.name))
        dest = safe_join(self.media_dir, *parts)
        h, n = hashlib.sha256(), 0
        try:
            with atomic_write(dest) as fh:
                for chunk in m.iter_bytes():
                    h.update(chunk)
                    n += len(chunk)
                    fh.write(chunk)
        except OSError as e:
            raise SinkError(f"cannot write media file {dest}: {e.strerror or e}", context=ctx) from None
        return "/".join(parts), n, h.hexdigest()

    def _store_content(self, table: sa.Table, key: str, m: Media, size: int) -> None:
        conn = self._conn
        where = table.c.media_key == key
        d = self.profile.dialect
        if d == "sqlite":
            conn.execute(table.update().where(where).values(content=sa.func.zeroblob(size)))
            rowid = conn.execute(sa.select(sa.literal_column("rowid")).select_from(table).where(where)).scalar_one()
            raw = conn.connection.driver_connection
            with raw.blobopen("media", "content", rowid, name=self.schema or "main") as blob:
                written = 0
                for chunk in m.iter_bytes(1 << 20):
                    if written + len(chunk) > size:
                        raise SinkError("media changed size while being stored", context=m.ref.name)
                    blob.write(chunk)
                    written += len(chunk)
            return
        if d == "postgresql":
            conn.execute(table.update().where(where).values(content=b""))
            stmt = table.update().where(where).values(
                content=table.c.content.op("||")(sa.bindparam("chunk", type_=sa.LargeBinary)))
            with m.open() as fh:
                while chunk := fh.read(_CHUNK):
                    conn.execute(stmt, {"chunk": chunk})
            return
        limit = self.media_max_bytes
        if d == "mysql":
            packet = conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or 0
            limit = min(limit, int(packet) - (64 << 10))
        if size > limit:
            raise SinkError(f"media is {size} bytes, more than the {limit} this database takes in one value; "
                            "use media_dir instead of media_in_db",
                            context=f"form {m.ref.form_id} submission {m.ref.submission_id} media {m.ref.name}")
        with m.open() as fh:
            data = fh.read()
        conn.execute(table.update().where(where).values(content=data))


__all__ = ["SqlSink", "iter_chunks"]
