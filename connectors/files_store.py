"""The files sink's store: each form's current submissions, from which its aggregates are built.

A SQLite database inside the output directory (``.exporter/store.sqlite``) holds, per form, its
definition as served, its cursor and a ``dirty`` mark, and each of its submissions as served (keyed
by id, with its update time and a sort key). The sink commits it at each of its own commits
(``synchronous=FULL``: fsynced), so whatever a source acknowledges after that commit is durable here.
A form is marked dirty when its definition or a row changes (or a full run finds a row gone), and
clean once its aggregates were published from the stored rows: a run that stopped leaves its forms
dirty, and the next run publishes them.

A row served again unchanged is not written again, so a run that changes nothing leaves the file
as it was. Rows are read back one at a time, in ``sort_key`` order (numeric ids in numeric order,
any other id after them in text order), so memory stays flat and the output does not depend on the
order the rows arrived in.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from exporter.errors import SinkError
from exporter.model import Form, Submission
from exporter.records import parse_form

STORE_PATH = ".exporter/store.sqlite"
FORMAT_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forms (
    form_id TEXT PRIMARY KEY,
    definition TEXT NOT NULL,            -- the form as served (JSON)
    dirty INTEGER NOT NULL DEFAULT 1,    -- rows changed since its aggregates were last published
    checkpointed INTEGER NOT NULL DEFAULT 0,
    cursor TEXT                          -- its incremental cursor, once checkpointed
);
CREATE TABLE IF NOT EXISTS submissions (
    form_id TEXT NOT NULL,
    id TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    update_time TEXT,
    digest TEXT NOT NULL,                -- of what the aggregates show of it (see ``digest``)
    payload TEXT NOT NULL,               -- the submission as served (JSON)
    PRIMARY KEY (form_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS submissions_order ON submissions (form_id, sort_key);
"""


def sort_key(sid: str) -> str:
    """Numeric ids in numeric order, then any other id in text order; unique per id."""
    if sid.isascii() and sid.isdigit():
        digits = sid.lstrip("0") or "0"
        return f"0{len(digits):05d}{digits}:{sid}"
    return "1" + sid


def _typed(v) -> str:
    return f"{type(v).__name__}:{v}"


def digest(sub: Submission) -> str:
    """A digest of everything the aggregates show of ``sub`` (its typed values, their served
    text, its metadata, sub-form rows and media): the same submission served in the other shape
    (flat by ``data/advanced``, nested by ``data/{id}``) is not a change."""
    rows = {name: [[r.index, r.values, r.text] for r in rs] for name, rs in sub.subforms.items()}
    media = [[m.field, m.name, m.subform, m.row] for m in sub.media]
    data = json.dumps([sub.id, sub.meta, sub.values, sub.text, rows, media], ensure_ascii=True, default=_typed)
    return hashlib.sha256(data.encode("ascii")).hexdigest()


def _json(data) -> str:
    # ASCII escapes: lone surrogates (possible in served strings) survive the round trip
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


class FormStore:
    """See the module docstring. ``begin`` before writing; ``commit`` makes it durable."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        #: made by this run and never committed: removed again if the run fails
        self.fresh = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA synchronous=FULL")
            self._check_format()
        except sqlite3.Error as e:
            raise SinkError(f"cannot open the store {self.path}: {e}") from None
        self._dirty: set[str] = set()  # forms marked dirty in the open transaction

    def _check_format(self) -> None:
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
            self.db.execute("BEGIN")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute("INSERT INTO meta VALUES ('format_version', ?)", (FORMAT_VERSION,))
            self.db.execute("COMMIT")
            return
        row = self.db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        if row is None or row[0] != FORMAT_VERSION:
            raise SinkError(f"{self.path} was written by another version (format {row[0] if row else '?'}); "
                            "remove the .exporter folder to rebuild it with a full export")

    @staticmethod
    def cursors(path: str | Path) -> dict[str, str | None]:
        """Each checkpointed form's cursor, read without writing anything ({} without a store)."""
        p = Path(path)
        if not p.exists():
            return {}
        try:
            db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
            try:
                rows = db.execute("SELECT form_id, cursor FROM forms WHERE checkpointed = 1").fetchall()
            finally:
                db.close()
        except sqlite3.Error as e:
            raise SinkError(f"cannot read the store {p}: {e}; remove the .exporter folder to start a full export") from None
        return dict(rows)

    # ---- writing (inside begin ... commit) -----------------------------------------------
    def begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN")
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (form_id TEXT, id TEXT, PRIMARY KEY (form_id, id))")

    def _mark(self, form_id: str) -> None:
        if form_id not in self._dirty:
            self.db.execute("UPDATE forms SET dirty = 1 WHERE form_id = ? AND dirty = 0", (form_id,))
            self._dirty.add(form_id)

    def put_form(self, form: Form) -> None:
        if not form.raw:
            raise SinkError("a form without its served definition cannot be stored", context=f"form {form.id}")
        cur = self.db.execute(
            "INSERT INTO forms (form_id, definition) VALUES (?, ?) ON CONFLICT (form_id) DO UPDATE SET "
            "definition = excluded.definition, dirty = 1 WHERE definition IS NOT excluded.definition",
            (form.id, _json(form.raw)))
        if cur.rowcount:
            self._dirty.add(form.id)

    def put_submission(self, sub: Submission, *, seen: bool = False) -> bool:
        """Store ``sub`` (as served); True when it is new or what the aggregates show of it changed. ``seen``: remember it for
        ``checkpoint(prune=True)``."""
        if not sub.raw:
            raise SinkError("a submission without its served payload cannot be stored",
                            context=f"form {sub.form_id} submission {sub.id}")
        cur = self.db.execute(
            "INSERT INTO submissions (form_id, id, sort_key, update_time, digest, payload) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (form_id, id) DO UPDATE SET update_time = excluded.update_time, "
            "digest = excluded.digest, payload = excluded.payload WHERE digest IS NOT excluded.digest",
            (sub.form_id, sub.id, sort_key(sub.id), sub.update_time, digest(sub), _json(sub.raw)))
        if seen:
            self.db.execute("INSERT OR IGNORE INTO temp.seen VALUES (?, ?)", (sub.form_id, sub.id))
        if cur.rowcount:
            self._mark(sub.form_id)
            return True
        return False

    def checkpoint(self, form_id: str, cursor: str | None, *, prune: bool = False) -> None:
        """Store the form's cursor; with ``prune`` (the form was read in full) remove the rows
        that were not ``seen``: deleted on the service."""
        if prune:
            cur = self.db.execute("DELETE FROM submissions WHERE form_id = ? AND id NOT IN "
                                  "(SELECT id FROM temp.seen WHERE form_id = ?)", (form_id, form_id))
            if cur.rowcount:
                self._mark(form_id)
            self.db.execute("DELETE FROM temp.seen WHERE form_id = ?", (form_id,))
        self.db.execute("UPDATE forms SET cursor = ?, checkpointed = 1 WHERE form_id = ? AND "
                        "(checkpointed = 0 OR cursor IS NOT ?)", (cursor, form_id, cursor))

    def mark_all_dirty(self) -> None:
        self.db.execute("UPDATE forms SET dirty = 1 WHERE dirty = 0")

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value "
                        "WHERE value IS NOT excluded.value", (key, value))

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")
        self._dirty.clear()
        self.fresh = False

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self._dirty.clear()

    # ---- reading back --------------------------------------------------------------------
    def dirty_forms(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT form_id FROM forms WHERE dirty = 1 ORDER BY form_id")]

    def form(self, form_id: str) -> Form:
        (definition,) = self.db.execute("SELECT definition FROM forms WHERE form_id = ?", (form_id,)).fetchone()
        return parse_form(json.loads(definition))

    def payloads(self, form_id: str) -> Iterator[dict]:
        """The form's submissions as served, one at a time, in ``sort_key`` order."""
        cur = self.db.execute("SELECT payload FROM submissions WHERE form_id = ? ORDER BY sort_key", (form_id,))
        try:
            for (payload,) in cur:
                yield json.loads(payload)
        finally:
            cur.close()

    def mark_clean(self, form_id: str) -> None:
        """The form's aggregates are published: clear its mark, durably."""
        self.db.execute("UPDATE forms SET dirty = 0 WHERE form_id = ?", (form_id,))

    def close(self) -> None:
        """Roll back what is not committed; a store this run made and never committed is removed."""
        self.rollback()
        self.db.close()
        if self.fresh:
            for p in (self.path, self.path.parent):
                with contextlib.suppress(OSError):
                    p.unlink() if p.is_file() else p.rmdir()
