"""What every SQL dialect module gives, and the one protocol its loader follows.

A dialect module (``dialects/<name>.py``) defines a subclass of :class:`Dialect` and an instance
of it named ``dialect``: its :class:`SqlProfile` (limits, reserved words, column types, locks...),
the loader it uses with a given connection (a :class:`Loader`), how it stores media bytes, how the
engine is set up and which driver errors mean "lost a lock, try again". The generic SQL sink reads
the profile and calls these methods; it never looks at a dialect's name. Driver modules are
imported only inside the methods that need them, so importing a dialect module is cheap.
"""
from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa

from exporter.capabilities import Capabilities
from exporter.errors import SinkError
from exporter.model import Blob, Document

# SQL:2016 reserved words that every dialect refuses or warns about (added to each dialect's list)
COMMON_RESERVED = frozenset(
    """
all alter and any as asc between by case check column constraint create cross current_date
current_time current_timestamp current_user default delete desc distinct drop else end except
exists false fetch for foreign from full grant group having in index inner insert intersect
into is join key left like limit not null of offset on or order outer primary references right
select session_user set some table then to true union unique update user using values when
where with window
"""
    .split()
)

#: SQLSTATEs of a transaction that lost a lock: serialization failure, deadlock detected
LOCK_STATES = frozenset({"40001", "40P01"})


def reserved(*lists: Any) -> frozenset[str]:
    """The common reserved words plus the dialect's own lists, lowercased."""
    words = set(COMMON_RESERVED)
    for more in lists:
        words |= set(more)
    return frozenset(w.lower() for w in words)


def capabilities(**kw: Any) -> Capabilities:
    """A SQL dialect's capabilities: what every SQL database shares, then ``kw``."""
    base: dict[str, Any] = {"transactions": True, "streaming": True, "rename": True, "stores_media": True,
                            "max_name_length": None}
    base.update(kw)
    return Capabilities(**base)


#: a column type of the schema (``id``, ``key``, ``short``, ``text``, ``number``, ``double``,
#: ``date``, ``time``, ``datetime``, ``boolean``, ``int``, ``bigint``, ``binary``) -> SQLAlchemy type
TypeFactory = Callable[[], sa.types.TypeEngine]


@dataclass(frozen=True)
class SqlProfile:
    """A dialect's capabilities plus the SQL specifics the planner, schema builder and loaders need."""

    name: str  # for messages and the README (never compared: see dialects/__init__.py)
    capabilities: Capabilities
    #: DECIMAL(precision, scale) used for number fields; precision None: the column keeps any
    #: decimal exactly (SQLite stores its text), so no value is out of range
    numeric_precision: int | None = 38
    numeric_scale: int = 10
    #: store booleans as 0/1 integers (Access Yes/No columns cannot hold NULL)
    boolean_as_int: bool = False
    #: most bound parameters in one statement (IN lists are cut to stay under it)
    max_params: int = 999
    #: with pyodbc, send executemany parameter arrays in one round trip (``fast_executemany``)
    odbc_fast_executemany: bool = True
    #: a statement taking a lock (bind ``:k``, a 63-bit integer) that serialises schema changes and
    #: name planning between processes writing the same schema at once: held until the transaction
    #: ends, or, when ``schema_unlock_sql`` is set, a session lock released by that statement once
    #: the schema step is committed (MySQL, whose DDL commits on its own; its ``GET_LOCK`` selects 1
    #: when taken, 0 after its timeout)
    schema_lock_sql: str | None = None
    schema_unlock_sql: str | None = None
    #: tables a run creates get their foreign keys, and the media table its secondary index, once
    #: the run has loaded them (``ALTER TABLE ... ADD FOREIGN KEY``, ``CREATE INDEX``): one check of
    #: all rows instead of one per row in every batch. The run's owner adds them when the run ends,
    #: and adds any still missing (a run that stopped) when a run starts.
    late_constraints: bool = False
    #: its SQLAlchemy dialect reflects many tables in one query and leaves out of the answer a
    #: name that is not there, exactly as ``has_table`` would not find it (a table, a view...): the
    #: schema steps then learn which tables exist, and their columns, in one query (elsewhere each
    #: name is looked up first: a dialect reflecting one table at a time may not say "not there")
    reflects_many: bool = False
    #: the words before a new column's definition in ``ALTER TABLE t ...``
    add_column: str = "ADD COLUMN"
    #: keyword arguments of every ``sa.Table`` (storage engine, character set)
    table_options: tuple[tuple[str, str], ...] = ()
    #: column types that differ from the portable ones (``schema_types.sa_type``), by schema kind
    column_types: Mapping[str, TypeFactory] = field(default_factory=dict)
    #: a parallel export's worker processes may load in the background like a one-process run;
    #: False where a batch that loses a deadlock to another worker must learn it before its commit
    #: returns (so that it can be written again)
    background_in_workers: bool = True
    #: load and commit each batch on a background thread while the next one is read, unless
    #: ``-o background_load`` says otherwise. The thread shares the interpreter lock with the
    #: reading, so it pays only where the server's own work per batch is long: MariaDB/MySQL's
    #: INSERT statements, not PostgreSQL's binary COPY (measured: docs/benchmarks.md)
    background_load: bool = False


class Outcome:
    """What an upsert found out (possibly later, in the background): ``all_new`` until it had to
    merge keys already stored."""

    __slots__ = ("all_new",)

    def __init__(self) -> None:
        self.all_new = True


class Loader(Protocol):
    """How rows get into tables, inside the caller's transaction. Rows are tuples, in the order of
    the columns given with them; a loader holds at most ``rows`` rows of statement parameters at a
    time."""

    name: str
    rows: int
    #: statements run on a background thread (see :class:`BackgroundLoader`)
    overlapping: bool

    def insert(self, table: sa.Table, cols: Sequence[str], rows: list[tuple]) -> None: ...

    def upsert(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple]) -> bool:
        """Insert or update by column ``key``, done when it returns; True when none of the keys
        was stored."""
        ...

    def delete_in(self, table: sa.Table, column: str, values: list, **equal: Any) -> None: ...

    # a batch's steps whose order matters but whose results the caller need not wait for: run now,
    # or queued on the background thread of a loader that overlaps
    def upsert_step(self, table: sa.Table, key: str, cols: Sequence[str], rows: list[tuple],
                    outcome: Outcome | None = None) -> Outcome:
        """``upsert``; ``outcome.all_new`` turns False when some key was already stored."""
        ...

    def delete_step(self, table: sa.Table, column: str, values: list, unless: Outcome, **equal: Any) -> None:
        """``delete_in``, skipped when ``unless.all_new`` (new submissions have nothing to replace)."""
        ...

    def drain(self) -> None:
        """Wait for the statements running in the background; raise the first failure."""
        ...

    def stop(self) -> None:
        """Stop the background thread, if any."""
        ...


@runtime_checkable
class BackgroundLoader(Loader, Protocol):
    """A loader that can run its statements on a background thread while the caller reads the
    next batch (the optional ability the sink detects)."""

    def overlap(self) -> None:
        """From now on, run bulk loads and commits in the background (``stop()`` ends it)."""
        ...

    def submit(self, label: str, fn: Callable[[], Any]) -> None:
        """Hand ``fn`` to the background thread, after everything handed over before."""
        ...


class Dialect(abc.ABC):
    """One SQL dialect: subclassed once per module in ``dialects/`` (see the package docstring)."""

    #: SQLAlchemy backend names this module serves (``make_url(...).get_backend_name()``)
    names: tuple[str, ...] = ()
    #: the driver a URL without one gets (``postgresql://`` -> ``postgresql+<driver>://``)
    default_driver: str = ""

    @abc.abstractmethod
    def profile(self) -> SqlProfile:
        """The dialect's profile (built on first use: reserved words come from SQLAlchemy)."""

    def url(self, url: sa.URL) -> sa.URL:
        """The URL the engine is made from: the default driver filled in."""
        if "+" not in url.drivername and self.default_driver:
            url = url.set(drivername=f"{url.get_backend_name()}+{self.default_driver}")
        return url

    def new_database_file(self, url: sa.URL) -> Path | None:
        """A database file the first connection will create (an embedded database), else None;
        raises SinkError when it cannot be created there."""
        return None

    def configure_engine(self, engine: sa.Engine, profile: SqlProfile) -> None:
        """Session settings and driver switches, set once on the engine."""
        if engine.dialect.driver == "pyodbc" and profile.odbc_fast_executemany:
            @sa.event.listens_for(engine, "before_cursor_execute")
            def _fast_executemany(conn, cursor, statement, params, context, executemany):
                # pyodbc sends the whole parameter array in one round trip
                if executemany:
                    cursor.fast_executemany = True

    def secure_delete(self, conn: sa.Connection) -> None:
        """Make the rows this connection deletes or overwrites leave no bytes behind in the
        database's files, where the database offers it (``exporter forget``); nothing otherwise."""
        return None

    def loader(self, conn: sa.Connection, profile: SqlProfile, forced: str | None = None,
               rows_per_batch: int | None = None) -> Loader:
        """The fastest loader the dialect and the connection's driver allow (``forced="generic"``:
        the portable one, for tests)."""
        from ..loaders import GenericLoader

        return GenericLoader(conn, profile, rows_per_batch)

    def error_text(self, error: BaseException) -> str:
        """What a driver error says, on one line."""
        return " ".join(str(error).split()) or type(error).__name__

    def lost_a_lock(self, error: BaseException) -> bool:
        """Whether a driver error says the transaction was chosen as a deadlock victim or gave up
        waiting for a lock: the same work can succeed when tried again."""
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        first = error.args[0] if getattr(error, "args", None) else None
        return state in LOCK_STATES or first in LOCK_STATES  # pyodbc: the SQLSTATE comes first

    def store_content(self, conn: sa.Connection, table: sa.Table, key: str, media: Blob, size: int,
                      max_bytes: int, schema: str | None) -> None:
        """Put the bytes of a media or a vendor document in ``table.content`` of the row whose
        primary key is ``key`` (the row exists): by default one value, up to ``max_bytes``."""
        self.check_size(media, size, max_bytes)
        with media.open() as fh:
            data = fh.read()
        conn.execute(table.update().where(row_of(table, key)).values(content=data))

    @staticmethod
    def check_size(media: Blob, size: int, limit: int) -> None:
        if size > limit:
            raise SinkError(f"{media.kind} is {size} bytes, more than the {limit} this database takes in one value; "
                            "use media_dir instead of media_in_db", context=blob_context(media))


def row_of(table: sa.Table, key: str):
    """The condition that picks the row of ``table`` (``media``, ``documents``) whose key is ``key``."""
    (column,) = table.primary_key.columns
    return column == key


def blob_name(b: Blob) -> str:
    """The file name of a media or a vendor document, as served."""
    return b.name if isinstance(b, Document) else b.ref.name


def blob_context(b: Blob) -> str:
    """What an error about a media or a vendor document names: ``form F submission S media N``."""
    what = f"{b.ref.doc_kind} document" if isinstance(b, Document) else "media"
    return f"form {b.ref.form_id} submission {b.ref.submission_id} {what} {blob_name(b)}"


def reserved_from(module: str, *names: str) -> list[str]:
    """Reserved words a SQLAlchemy dialect module lists (empty when that package is missing)."""
    import importlib

    words: list[str] = []
    with contextlib.suppress(ImportError):
        mod = importlib.import_module(module)
        for n in names:
            obj: Any = mod
            for part in n.split("."):
                obj = getattr(obj, part)
            words += list(obj)
    return words
