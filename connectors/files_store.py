"""The files sink's store: each form's current submissions, from which its aggregates are built.

A SQLite database inside the output directory (``.exporter/store.sqlite``) holds, per form, its
definition, its cursor and a ``dirty`` mark, and each of its submissions (keyed by id, with its
update time and a sort key). Forms and submissions are stored as the canonical records the sink was
given (``exporter.model``), in canonical JSON that gives back equal records (``encode_*`` /
``decode_*``: typed values tagged with their type), so aggregates built from the store are those
the same records would give from the stream. The sink commits it at each of its own commits
(``synchronous=FULL``: fsynced), so whatever a source acknowledges after that commit is durable here.
A form is marked dirty when its definition or a row changes (or a row is gone from the service), and
clean once its aggregates were published from the stored rows: a run that stopped leaves its forms
dirty, and the next run publishes them.

A row served again unchanged is not written again, so a run that changes nothing leaves the file
as it was. Rows are read back one at a time, in ``sort_key`` order (numeric ids in numeric order,
any other id after them in text order), so memory stays flat and the output does not depend on the
order the rows arrived in.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from exporter.errors import SinkError
from exporter.model import FieldDef, Form, GeoPoint, Group, MediaRef, SubformRow, Submission, User

STORE_PATH = ".exporter/store.sqlite"
FORMAT_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forms (
    form_id TEXT PRIMARY KEY,
    definition TEXT NOT NULL,            -- the Form record (canonical JSON)
    dirty INTEGER NOT NULL DEFAULT 1,    -- rows changed since its aggregates were last published
    checkpointed INTEGER NOT NULL DEFAULT 0,
    cursor TEXT                          -- its incremental cursor, once checkpointed
);
CREATE TABLE IF NOT EXISTS submissions (
    form_id TEXT NOT NULL,
    id TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    update_time TEXT,
    doc TEXT NOT NULL,                   -- the Submission record (canonical JSON)
    PRIMARY KEY (form_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS submissions_order ON submissions (form_id, sort_key);
"""

#: submissions gone from the service (``remove``), until one comes back; made in any store
_DELETED = """CREATE TABLE IF NOT EXISTS deleted (
    form_id TEXT NOT NULL, id TEXT NOT NULL, sort_key TEXT NOT NULL, deleted_at TEXT NOT NULL,
    PRIMARY KEY (form_id, id))"""
#: the users and groups of the last run, in stream order (what the people files were written
#: from, so ``exporter forget`` can write them again without a person); made in any store
_PEOPLE = """CREATE TABLE IF NOT EXISTS people (
    kind TEXT NOT NULL, id TEXT NOT NULL, position INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (kind, id))"""


def sort_key(sid: str) -> str:
    """Numeric ids in numeric order, then any other id in text order; unique per id."""
    if sid.isascii() and sid.isdigit():
        digits = sid.lstrip("0") or "0"
        return f"0{len(digits):05d}{digits}:{sid}"
    return "1" + sid


# ---- canonical JSON of the records ---------------------------------------------------------
# A typed value is JSON as it is (None, str, bool) or an object naming its type, so the same
# record always gives the same text and decodes to an equal record.

def _value(v):
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, Decimal):
        return {"n": str(v)}
    if isinstance(v, dt.datetime):
        return {"dt": v.isoformat()}
    if isinstance(v, dt.date):
        return {"d": v.isoformat()}
    if isinstance(v, dt.time):
        return {"t": v.isoformat()}
    if isinstance(v, GeoPoint):
        return {"g": [v.latitude, v.longitude]}
    if isinstance(v, tuple):
        return {"l": [_value(x) for x in v]}
    raise TypeError(f"cannot store a value of type {type(v).__name__}")


_DECODE: dict[str, Callable[[Any], Any]] = {"n": Decimal, "dt": dt.datetime.fromisoformat, "d": dt.date.fromisoformat,
           "t": dt.time.fromisoformat, "g": lambda p: GeoPoint(*p), "l": lambda xs: tuple(map(_unvalue, xs))}


def _unvalue(v):
    if isinstance(v, dict):
        ((tag, x),) = v.items()
        return _DECODE[tag](x)
    return v


def _values(d: dict) -> dict:
    return {k: _value(v) for k, v in d.items()}


def _unvalues(d: dict) -> dict:
    return {k: _unvalue(v) for k, v in d.items()}


def _json(data) -> str:
    # ASCII escapes: lone surrogates (possible in served strings) survive the round trip
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


def encode_submission(sub: Submission) -> str:
    """Everything of a submission but ``raw`` (the payload as served, which no aggregate shows)."""
    return _json([sub.form_id, sub.id, sub.meta, _values(sub.values), sub.text,
                  {name: [[r.index, _values(r.values), r.text] for r in rows] for name, rows in sub.subforms.items()},
                  [[m.form_id, m.submission_id, m.field, m.name, m.subform, m.row] for m in sub.media],
                  sub.extra])


def decode_submission(doc: str) -> Submission:
    form_id, sid, meta, values, text, subforms, media, *more = json.loads(doc)
    extra = more[0] if more else {}  # a store written before ``extra`` was kept has none
    return Submission(form_id, sid, meta, _unvalues(values), text,
                      {name: [SubformRow(i, _unvalues(v), t) for i, v, t in rows] for name, rows in subforms.items()},
                      tuple(MediaRef(*m) for m in media), extra=extra)


def encode_person(p: User | Group) -> str:
    if p.kind == "user":
        return _json([p.id, p.login, p.first_name, p.last_name, p.email, p.phone, p.admin, p.main_group_id,
                      p.create_time, p.raw, p.extra])
    return _json([p.id, p.name, p.parent_id, list(p.users), list(p.leaders), list(p.children), p.raw, p.extra])


def decode_person(kind: str, doc: str) -> User | Group:
    if kind == "user":
        uid, login, first, last, email, phone, admin, main_group, created, raw, extra = json.loads(doc)
        return User(uid, login, first, last, email, phone, admin, main_group, created, raw, extra)
    gid, name, parent, users, leaders, children, raw, extra = json.loads(doc)
    return Group(gid, name, parent, tuple(users), tuple(leaders), tuple(children), raw, extra)


def _field(f: FieldDef) -> list:
    return [f.name, f.type, f.kind, f.caption, f.subtype, f.required, f.list_id, [_field(c) for c in f.children], f.raw]


def _unfield(x: list) -> FieldDef:
    name, ftype, kind, caption, subtype, required, list_id, children, raw = x
    return FieldDef(name, ftype, kind, caption, subtype, required, list_id, tuple(map(_unfield, children)), raw)


def encode_form(form: Form) -> str:
    return _json([form.id, form.name, [_field(f) for f in form.fields], form.class_, form.update_time,
                  form.options, form.raw])


def decode_form(doc: str) -> Form:
    fid, name, fields, class_, update_time, options, raw = json.loads(doc)
    return Form(fid, name, tuple(map(_unfield, fields)), class_, update_time, options, raw)


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
            self.db.execute(_DELETED)
            self.db.execute(_PEOPLE)
        except sqlite3.Error as e:
            raise SinkError(f"cannot open the store {self.path}: {e}") from None
        self._dirty: set[str] = set()  # forms marked dirty in the open transaction
        self._people: dict[tuple[str, str], int] | None = None  # a run's people so far (``start_people``)

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
        """Each checkpointed form's cursor ({} without a store). Read through a connection that
        may write: a run killed in the middle of a commit leaves a journal only such a connection
        can roll back."""
        p = Path(path)
        if not p.exists():
            return {}
        try:
            db = sqlite3.connect(p)
            try:
                rows = db.execute("SELECT form_id, cursor FROM forms WHERE checkpointed = 1").fetchall()
            finally:
                db.close()
        except sqlite3.Error as e:
            raise SinkError(f"cannot read the store {p}: {e}; remove the .exporter folder to start a full export") from None
        return dict(rows)

    @staticmethod
    def stored_ids(path: str | Path, form_id: str) -> set[str]:
        """The ids of the form's stored submissions (empty without a store), read without opening
        the store for a run (the deletions check made before anything is written)."""
        p = Path(path)
        if not p.exists():
            return set()
        try:
            db = sqlite3.connect(p)
            try:
                return {r[0] for r in db.execute("SELECT id FROM submissions WHERE form_id = ?", (form_id,))}
            finally:
                db.close()
        except sqlite3.Error as e:
            raise SinkError(f"cannot read the store {p}: {e}; remove the .exporter folder to start a full export") from None

    # ---- writing (inside begin ... commit) -----------------------------------------------
    def begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN")

    def _mark(self, form_id: str) -> None:
        if form_id not in self._dirty:
            self.db.execute("UPDATE forms SET dirty = 1 WHERE form_id = ? AND dirty = 0", (form_id,))
            self._dirty.add(form_id)

    def put_form(self, form: Form) -> None:
        cur = self.db.execute(
            "INSERT INTO forms (form_id, definition) VALUES (?, ?) ON CONFLICT (form_id) DO UPDATE SET "
            "definition = excluded.definition, dirty = 1 WHERE definition IS NOT excluded.definition",
            (form.id, encode_form(form)))
        if cur.rowcount:
            self._dirty.add(form.id)

    def put_submission(self, sub: Submission) -> bool:
        """Store ``sub``; True when it is new or changed (the same submission served in the other
        shape, flat or nested, types the same: no change). One that was deleted is no more."""
        try:
            doc = encode_submission(sub)
        except TypeError as e:
            raise SinkError(str(e), context=f"form {sub.form_id} submission {sub.id}") from None
        cur = self.db.execute(
            "INSERT INTO submissions (form_id, id, sort_key, update_time, doc) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (form_id, id) DO UPDATE SET update_time = excluded.update_time, "
            "doc = excluded.doc WHERE doc IS NOT excluded.doc",
            (sub.form_id, sub.id, sort_key(sub.id), sub.update_time, doc))
        if cur.rowcount and self.db.execute("DELETE FROM deleted WHERE form_id = ? AND id = ?",
                                            (sub.form_id, sub.id)).rowcount:
            self._mark(sub.form_id)
        if cur.rowcount:
            self._mark(sub.form_id)
            return True
        return False

    def ids(self, form_id: str) -> Iterator[str]:
        """The ids of the form's stored submissions."""
        cur = self.db.execute("SELECT id FROM submissions WHERE form_id = ?", (form_id,))
        try:
            for (sid,) in cur:
                yield sid
        finally:
            cur.close()

    def remove(self, form_id: str, ids: list[str], deleted_at: str) -> None:
        """Drop these submissions (gone from the service) and record them as deleted."""
        for sid in ids:
            self.db.execute("DELETE FROM submissions WHERE form_id = ? AND id = ?", (form_id, sid))
            self.db.execute("INSERT INTO deleted VALUES (?, ?, ?, ?) ON CONFLICT (form_id, id) DO NOTHING",
                            (form_id, sid, sort_key(sid), deleted_at))
        if ids:
            self._mark(form_id)

    def erase(self, form_id: str, ids: list[str]) -> None:
        """Drop these submissions without a trace (``exporter forget``): not recorded as deleted."""
        for sid in ids:
            self.db.execute("DELETE FROM submissions WHERE form_id = ? AND id = ?", (form_id, sid))
        if ids:
            self._mark(form_id)

    def start_people(self) -> None:
        """A run's users and groups follow (``put_person``), until ``end_people``: they replace
        the stored ones (a row that does not change is not written again)."""
        self._people = {}
        self.set_meta("people", "1")

    def put_person(self, person: User | Group) -> None:
        key = (person.kind, person.id)
        if self._people is None or key in self._people:
            return
        self._people[key] = len(self._people)
        self.db.execute("INSERT INTO people VALUES (?, ?, ?, ?) ON CONFLICT (kind, id) DO UPDATE SET "
                        "position = excluded.position, doc = excluded.doc WHERE position IS NOT excluded.position "
                        "OR doc IS NOT excluded.doc", (*key, self._people[key], encode_person(person)))

    def end_people(self) -> None:
        """The run's users and groups are all in: those it did not give go."""
        if self._people is None:
            return
        for key in [tuple(k) for k in self.db.execute("SELECT kind, id FROM people")]:
            if key not in self._people:
                self.db.execute("DELETE FROM people WHERE kind = ? AND id = ?", key)
        self._people = None

    def people(self) -> Iterator[User | Group]:
        """The stored users, then groups, each in the order the run gave them."""
        cur = self.db.execute("SELECT kind, doc FROM people ORDER BY kind = 'group', position")
        try:
            for kind, doc in cur:
                yield decode_person(kind, doc)
        finally:
            cur.close()

    def form_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT form_id FROM forms ORDER BY form_id")]

    def deleted(self, form_id: str) -> list[tuple[str, str]]:
        """(id, deleted_at) of the form's deleted submissions, in ``sort_key`` order."""
        return self.db.execute("SELECT id, deleted_at FROM deleted WHERE form_id = ? ORDER BY sort_key",
                               (form_id,)).fetchall()

    def checkpoint(self, form_id: str, cursor: str | None) -> None:
        """Store the form's cursor."""
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
        self._people = None

    # ---- reading back --------------------------------------------------------------------
    def dirty_forms(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT form_id FROM forms WHERE dirty = 1 ORDER BY form_id")]

    def form(self, form_id: str) -> Form:
        (definition,) = self.db.execute("SELECT definition FROM forms WHERE form_id = ?", (form_id,)).fetchone()
        return decode_form(definition)

    def form_name(self, form_id: str) -> str | None:
        """The stored form's name (None for a form not stored yet)."""
        row = self.db.execute("SELECT definition FROM forms WHERE form_id = ?", (form_id,)).fetchone()
        return decode_form(row[0]).name if row else None

    def submissions(self, form_id: str) -> Iterator[Submission]:
        """The form's submissions, one at a time, in ``sort_key`` order."""
        cur = self.db.execute("SELECT doc FROM submissions WHERE form_id = ? ORDER BY sort_key", (form_id,))
        try:
            for (doc,) in cur:
                yield decode_submission(doc)
        finally:
            cur.close()

    def mark_clean(self, form_id: str, files: Iterable[str] = ()) -> None:
        """The form's aggregates are published as ``files`` (paths relative to the output
        folder): remember them, and clear its mark, durably."""
        self.set_meta(f"files {form_id}", _json(sorted(set(files))))
        self.db.execute("UPDATE forms SET dirty = 0 WHERE form_id = ?", (form_id,))

    def mark_missing(self, root: Path) -> None:
        """Mark dirty each clean form one of whose published files is gone (removed by hand)."""
        rows = self.db.execute("SELECT f.form_id, m.value FROM forms f JOIN meta m ON m.key = 'files ' || f.form_id "
                               "WHERE f.dirty = 0").fetchall()
        for form_id, files in rows:
            if not all((root / rel).is_file() for rel in json.loads(files)):
                self.db.execute("UPDATE forms SET dirty = 1 WHERE form_id = ?", (form_id,))

    def close(self) -> None:
        """Roll back what is not committed; a store this run made and never committed is removed."""
        self.rollback()
        self.db.close()
        if self.fresh:
            for p in (self.path, self.path.parent):
                with contextlib.suppress(OSError):
                    p.unlink() if p.is_file() else p.rmdir()
