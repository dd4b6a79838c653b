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
   rows upserted, child rows inserted), media, vendor documents (upserted by natural key), then
   ``export_state`` from Checkpoint records.

``commit()`` commits (the runs row's counters go in the same transaction); a failure inside
``write`` rolls the batch back before raising; ``close(ok=False)`` rolls back whatever is pending.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from exporter import owner
from exporter.errors import ExporterError, SinkError, TransientSinkError, one_line, run_status
from exporter.model import Form
from exporter.retry import retry_call
from exporter.secrets import mask
from exporter.sinks import RunContext

from .background import DeferredError
from .ddl import SchemaSteps
from .dialects import for_url
from .dialects.base import BackgroundLoader, Loader
from .media import MediaWrites
from .planner import NamePlanner
from .runs import RunRecords
from .tables import DELETED_AT
from .writes import Prepared, RecordWrites, now

if TYPE_CHECKING:
    from .eraser import SqlEraser

log = logging.getLogger("exporter.sql")

#: tries of a batch that lost a deadlock or a lock wait, in all (see ``SqlSink.write``)
WRITE_ATTEMPTS = 4


class SqlSink(SchemaSteps, RecordWrites, MediaWrites, RunRecords):
    """A SQLAlchemy database as an export destination (see the module docstring). The dialect
    module of its URL (``dialects/``) gives its profile, loader and BLOB strategy."""

    def __init__(self, url: sa.URL, options: dict):
        self.url = url
        self.options = options
        self.dialect = for_url(url)
        profile = self.dialect.profile()
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
        self._connection: sa.Connection | None = None  # while connected (``_conn``)
        self._tx: sa.Transaction | None = None
        self._active_loader: Loader | None = None  # made with the connection (``_loader``)
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

    def eraser(self) -> SqlEraser:
        """``exporter forget`` on this database (``connectors.sql.eraser``)."""
        from .eraser import SqlEraser

        return SqlEraser(self)

    # the mixins (schema steps, record writes, media, runs) run only while connected: for them the
    # connection and its loader are always there; this class tests ``_connection`` itself
    @property
    def _conn(self) -> sa.Connection:
        if self._connection is None:
            raise SinkError("not connected", context=self.name)
        return self._connection

    @_conn.setter
    def _conn(self, conn: sa.Connection | None) -> None:
        self._connection = conn

    @property
    def _loader(self) -> Loader:
        if self._active_loader is None:
            raise SinkError("not connected", context=self.name)
        return self._active_loader

    @_loader.setter
    def _loader(self, loader: Loader | None) -> None:
        self._active_loader = loader

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: BaseException, what: str, retryable: bool = False) -> SinkError:
        orig = getattr(exc, "orig", None) or exc
        text = self.dialect.error_text(orig)
        if len(text) > 500:
            text = text[:500] + "..."
        if self._password:
            text = text.replace(self._password, "***")
        if retryable and self.dialect.lost_a_lock(orig):
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
            if isinstance(e.error, (OverflowError, ValueError)):  # as below, found by the driver there
                raise self._translate(e.error, f"{what}: {e.label}: a value cannot be stored "
                                               f"({type(e.error).__name__})") from None
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
        try:
            self._new_file = self.dialect.new_database_file(self.url)
        except SinkError as e:
            raise SinkError(e.message, context=self.name) from None
        with self._op("configuring the connection"):
            engine = sa.create_engine(self.url)
        self.dialect.configure_engine(engine, self.profile)
        self._engine = engine
        return engine

    def _connect(self) -> sa.Connection:
        if self._connection is None:
            engine = self._ensure_engine()
            try:
                self._conn = engine.connect()
            except SQLAlchemyError as e:
                raise self._translate(e, "cannot connect") from None
            self._loader = self.dialect.loader(self._conn, self.profile, self.options.get("loader"),
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
        if self._active_loader is not None:
            with contextlib.suppress(Exception):
                self._active_loader.drain()
        tx, self._tx = self._tx, None
        broken = False
        if tx is not None:
            try:
                tx.rollback()
            except Exception:  # noqa: BLE001 - the connection is dropped below instead
                broken = True
        if self._connection is not None:
            # a transaction handed to the background for its commit, which did not happen, or one
            # an interruption (a signal) left inactive but still attached (a no-op otherwise)
            try:
                self._conn.rollback()
            except Exception:  # noqa: BLE001
                broken = True
            if broken:  # cut mid-protocol (a signal inside a COPY): dropped, the server rolls back with it;
                # the pool would otherwise try to reset it and log that failure
                with contextlib.suppress(Exception):
                    self._conn.invalidate()
        self._pending = {}
        with contextlib.suppress(Exception):
            self._schema_unlock()  # forgets the lock first, whatever the server answers
        self._reset_schema_cache()

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
                    conn.execute(runs.insert().values(run_id=ctx.run_id, started_at=now(), source=ctx.source,
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
        # next batch), or when off: by default where the thread costs more than it saves (the
        # dialect's ``background_load``), or by -o background_load=false.
        in_step = ctx.worker is not None and not self.profile.background_in_workers
        wanted = self.options.get("background_load")
        if wanted is None:
            wanted = self.profile.background_load
        if ctx.mode != "unread" and not in_step and wanted:
            if isinstance(self._loader, BackgroundLoader):
                self._loader.overlap()

    def load_state(self) -> dict[str, str | None]:
        own = self._connection is None
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
        own = self._connection is None
        with self._op(f"reading the ids of form {form_id}"):
            conn = self._connect()
            try:
                insp = sa.inspect(conn)
                if not insp.has_table("forms", schema=self.schema):
                    return None
                forms = self._fixed["forms"]
                name = conn.execute(sa.select(forms.c.table_name).where(forms.c.form_id == form_id)).scalar()
                columns, keys = self._reflect(insp, [name]) if name else ({}, {})
                if name not in columns:
                    return None
                # its columns and key only (reflecting the whole table, indexes and all, costs ten queries more)
                main = sa.table(name, *(sa.column(c["name"], c["type"]) for c in columns[name]), schema=self.schema)
                q = sa.select(main.c[keys[name]["constrained_columns"][0]])
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
        if self._connection is None:
            raise SinkError("write() before open()", context=self.name)
        retry_call(lambda: self._write_once(batch), attempts=WRITE_ATTEMPTS, base_delay=0.1, max_delay=2.0,
                   describe=f"{self.name}: writing a batch")

    def _write_once(self, batch: Sequence[Any]) -> None:
        try:
            # the rows are made first, while the previous batch's loads may still run on the
            # background thread (waiting on the server): the two overlap
            try:
                prepared: Prepared | None = self._prepare(batch)
            except Exception:  # noqa: BLE001 - made again by _write, its error raised in its turn
                prepared = None
            with self._op("writing a batch"):
                with self._op("completing the previous batch"):
                    self._loader.drain()
                if self._replan_needed:
                    self._replan()
                self._write(batch, prepared)
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
                loader = self._loader
                if isinstance(loader, BackgroundLoader) and loader.overlapping:
                    # handed to the background thread: done before anything else touches the
                    # connection (the next batch's write, close), which reports its failure
                    stmt = self._run_update(status="running")
                    conn, tx, self._tx = self._conn, self._tx, None

                    def finish() -> None:
                        if stmt is not None:
                            conn.execute(stmt)
                        tx.commit()
                    loader.submit("committing", finish)
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
        if self._connection is None:
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


__all__ = ["WRITE_ATTEMPTS", "SqlSink"]
