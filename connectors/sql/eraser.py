"""Erasing a person or submissions from a SQL destination (``exporter forget``).

The tables are found as the sink made them: each form's definition (``forms.definition``) and its
stored name plan (``lineage``) give, through the sink's own planner (``schema.plan_form`` and
``build_tables``), every table part, sub-form table and metadata column. Then, in **one
transaction**:

* a user (``Request.user_id``): the submissions they made or received go (their rows in every
  part, their sub-form rows, their ``media`` and ``documents`` rows, and those files under
  ``media_dir``); in the submissions they only edited, the columns naming them are emptied (and
  the service's documents of them go: they show the data as served); their ``users`` row and
  their ``group_members`` rows go. With ``only_personal``: their personal columns are emptied
  everywhere instead (``users``, and the metadata naming them in every submission, whose
  documents go), rows stay;
* submissions (``Request.submission_ids``): those rows, in every form, as above;
* the audit line goes into the ``erasures`` table (made on first use), in the same transaction.

Media files are removed before the commit: a run stopped after that still has the rows, and
running it again finishes. The dry run (``plan``) reads and counts, and changes nothing.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from exporter.errors import ConfigError, ExporterError, SinkError
from exporter.model import extra_json
from exporter.naming import safe_join
from exporter.privacy import personal
from exporter.privacy.forget import Request, add
from exporter.records import parse_form
from exporter.secrets import mask

from .columns import sa_type
from .loaders import chunks as iter_chunks
from .planner import NamePlanner
from .plans import FormPlan, plan_form
from .tables import build_tables, fixed_tables

ERASURES = "erasures"


class SqlEraser:
    """The ``Eraser`` of a SQL destination (see ``exporter.privacy.forget``)."""

    def __init__(self, sink: Any):
        self.url = sink.url
        self.schema = sink.schema
        self.profile = sink.profile
        self.dialect = sink.dialect
        self.media_dir: Path | None = sink.media_dir.resolve() if sink.media_dir is not None else None
        self.name = sink.name
        self._password = sink.url.password

    # ---- the protocol ----------------------------------------------------------------------
    def plan(self, request: Request) -> dict[str, int]:
        with self._connection("reading what would be erased") as conn:
            try:
                return self._work(conn, request, apply=False)
            finally:
                conn.rollback()

    def erase(self, request: Request, audit_line: Any) -> list[str]:
        """Erase, and record ``audit_line(counts)`` (a JSON text) in ``erasures``, in one
        transaction; the line is returned."""
        with self._connection("erasing") as conn:
            table = self._erasures_table()
            if not sa.inspect(conn).has_table(ERASURES, schema=self.schema):
                table.create(conn)  # its own step (MariaDB commits DDL at once)
                conn.commit()
            conn.rollback()
            with conn.begin():
                counts = self._work(conn, request, apply=True)
                line = audit_line(counts)
                conn.execute(table.insert().values(erasure_id=json.loads(line)["erasure_id"], line=line))
            return [line]

    # ---- connection and errors --------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self, what: str) -> Iterator[sa.Connection]:
        if self.dialect.new_database_file(self.url) is not None:  # nothing to erase: create nothing
            raise SinkError("no such database file", context=self.name)
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        self.dialect.configure_engine(engine, self.profile)
        try:
            with engine.connect() as conn:
                self.dialect.secure_delete(conn)
                yield conn
        except ExporterError:
            raise
        except SQLAlchemyError as e:
            orig = getattr(e, "orig", None) or e
            text = self.dialect.error_text(orig)[:500]
            if self._password:
                text = text.replace(self._password, "***")
            raise SinkError(f"{what}: {mask(text)}", context=self.name) from None
        finally:
            engine.dispose()

    def _erasures_table(self) -> sa.Table:
        p = self.profile
        return sa.Table(ERASURES, sa.MetaData(schema=self.schema),
                        sa.Column("erasure_id", sa_type("short", p), primary_key=True),
                        sa.Column("line", sa_type("text", p)))

    # ---- the work ---------------------------------------------------------------------------
    def _plans(self, conn: sa.Connection, md: sa.MetaData, fixed: dict[str, sa.Table]
               ) -> Iterator[tuple[FormPlan, dict[str, sa.Table]]]:
        """Each stored form's plan and tables, as the sink planned them."""
        existing = {n.lower() for n in sa.inspect(conn).get_table_names(schema=self.schema)}
        if "forms" not in existing or "lineage" not in existing:
            return
        forms, lin = fixed["forms"], fixed["lineage"]
        stored: dict[str, list[dict]] = {}
        for r in conn.execute(sa.select(lin)):
            stored.setdefault(r.form_id, []).append(dict(r._mapping))
        taken = {n for n in existing}
        planner = NamePlanner(self.profile)
        for form_id, definition in conn.execute(sa.select(forms.c.form_id, forms.c.definition)
                                                .order_by(forms.c.form_id)).all():
            if form_id not in stored:
                continue
            form = parse_form(json.loads(definition))
            plan = plan_form(form, stored[form_id], planner, self.profile, set(taken), "")
            tables = dict(build_tables(md, plan.main, self.profile, None))
            for tp in plan.subforms.values():
                tables.update(build_tables(md, tp, self.profile, plan.main))
            if plan.main.parts[0].lower() in existing:  # (a part never created holds nothing)
                yield plan, {name: t for name, t in tables.items() if name.lower() in existing}

    def _work(self, conn: sa.Connection, request: Request, apply: bool) -> dict[str, int]:
        md = sa.MetaData(schema=self.schema)
        fixed = fixed_tables(md, self.profile)
        existing = {n.lower() for n in sa.inspect(conn).get_table_names(schema=self.schema)}
        counts: dict[str, int] = {}
        step = max(1, self.profile.max_params - 4)
        media_files: list[Path] = []
        for plan, tables in list(self._plans(conn, md, fixed)):
            main = tables[plan.main.parts[0]]
            key = main.c[plan.main.key_columns[0]]
            meta = plan.main.meta_columns
            doomed, touched = self._targets(conn, request, main, key, meta, step)
            if doomed:
                add(counts, "submissions", len(doomed))
                for tp in plan.subforms.values():
                    first = tables.get(tp.parts[0])
                    if first is None:
                        continue
                    sid = first.c[tp.key_columns[0]]
                    for chunk in iter_chunks(doomed, step):
                        add(counts, "subform_rows", conn.execute(
                            sa.select(sa.func.count()).select_from(first).where(sid.in_(chunk))).scalar() or 0)
                if "media" in existing:
                    media_files += self._files(conn, fixed["media"], "media", plan.form.id, doomed, step, counts,
                                               apply)
                if apply:
                    for tp in [*plan.subforms.values(), plan.main]:
                        for part in reversed([p for p in tp.parts if p in tables]):
                            t = tables[part]
                            for chunk in iter_chunks(doomed, step):
                                conn.execute(t.delete().where(t.c[tp.key_columns[0]].in_(chunk)))
            if touched:
                add(counts, "submission_personal_values",
                    self._blank(conn, main, key, plan.main.extra_column, meta, touched, apply))
            if "documents" in existing:  # the service's documents of a submission show it as served
                gone = doomed + [sid for sid, _roles in touched]
                media_files += self._files(conn, fixed["documents"], "documents", plan.form.id, gone, step, counts,
                                           apply)
        if request.user_id is not None and "users" in existing:
            self._user(conn, fixed, existing, request, counts, apply)
        if apply:
            for p in media_files:  # before the commit: a run stopped now still has the rows
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                for d in p.parents:  # and the folders they leave empty
                    if d == self.media_dir or self.media_dir not in d.parents:
                        break
                    try:
                        d.rmdir()
                    except OSError:
                        break
        return counts

    def _targets(self, conn, request: Request, main: sa.Table, key, meta: dict[str, str], step: int
                 ) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """(ids of the rows that go, [(id, the user's roles in it)] of the rows that stay but name
        the user)."""
        if request.user_id is None:
            doomed = []
            for chunk in iter_chunks(sorted(set(request.submission_ids)), step):
                doomed += conn.execute(sa.select(key).where(key.in_(chunk))).scalars().all()
            return sorted(doomed), []
        uid = request.user_id
        role_cols = {role: main.c[meta[role]] for role in personal.ROLES if meta.get(role, "") in main.c}
        if not role_cols:
            return [], []
        q = sa.select(key, *role_cols.values()).where(sa.or_(*(c == uid for c in role_cols.values())))
        doomed, touched = [], []
        for row in conn.execute(q.order_by(key)):
            roles = [role for role, v in zip(role_cols, row[1:], strict=True) if v is not None and str(v) == uid]
            if not request.only_personal and ("user_id" in roles or "recipient_id" in roles):
                doomed.append(row[0])
            else:
                touched.append((row[0], roles))
        return doomed, touched

    def _files(self, conn, table: sa.Table, kind: str, form_id: str, ids: list[str], step: int, counts: dict,
               apply: bool) -> list[Path]:
        """The rows of ``table`` (media, documents) of these submissions (deleted), counted as
        ``kind``; their files under ``media_dir``, to remove."""
        files = []
        for chunk in iter_chunks(ids, step):
            where = sa.and_(table.c.form_id == form_id, table.c.submission_id.in_(chunk))
            rows = conn.execute(sa.select(table.c.path).where(where)).scalars().all()
            add(counts, kind, len(rows))
            for path in rows:
                if path:
                    if self.media_dir is None:
                        raise ConfigError(f"{self.name}: its media files are in a media_dir folder: give "
                                          "-o media_dir=DIR (as for the export) so that they are erased too")
                    files.append(safe_join(self.media_dir, *path.split("/")))
            if apply and rows:
                conn.execute(table.delete().where(where))
        add(counts, "media_files", len(files))
        return files

    def _blank(self, conn, main: sa.Table, key, extra_col: str | None, meta: dict[str, str],
               touched: list[tuple[str, list[str]]], apply: bool) -> int:
        """Empty the metadata naming the user in the rows that stay (and their references in
        ``extra_keys``); the number of values emptied."""
        extra = main.c[extra_col] if extra_col and extra_col in main.c else None
        n = 0
        for sid, roles in touched:
            cols = [meta[k] for role in roles for k in personal.ROLES[role][0] if meta.get(k, "") in main.c]
            prefixes = [personal.ROLES[role][1] for role in roles]
            select = [main.c[c] for c in cols] + ([extra] if extra is not None else [])
            row = conn.execute(sa.select(*select).where(key == sid)).one()
            values: dict[str, str | None] = {c: None for c, v in zip(cols, row, strict=False) if v not in (None, "")}
            n += len(values)
            if extra is not None and row[-1]:
                kept, gone = _strip_refs(row[-1], prefixes)
                if gone:
                    values[extra.name] = kept
                    n += gone
            if apply and values:
                conn.execute(main.update().where(key == sid).values(values))
        return n

    def _user(self, conn, fixed: dict[str, sa.Table], existing: set[str], request: Request, counts: dict,
              apply: bool) -> None:
        users, uid = fixed["users"], request.user_id
        row = conn.execute(sa.select(users).where(users.c.user_id == uid)).first()
        if request.only_personal:
            if row is not None:
                cols = personal.user_keys(personal.GROUPS)
                values: dict[str, str | None] = {c: None for c in cols if row._mapping[c] not in (None, "")}
                if row.extra_keys:
                    kept, gone = _strip_refs(row.extra_keys, None)
                    if gone:
                        values["extra_keys"] = kept
                        add(counts, "user_personal_values", gone)
                add(counts, "user_personal_values", len([c for c in values if c != "extra_keys"]))
                if apply and values:
                    conn.execute(users.update().where(users.c.user_id == uid).values(values))
            return
        if row is not None:
            add(counts, "users", 1)
            if apply:
                conn.execute(users.delete().where(users.c.user_id == uid))
        if "group_members" in existing:
            gm = fixed["group_members"]
            n = conn.execute(sa.select(sa.func.count()).select_from(gm).where(gm.c.user_id == uid)).scalar() or 0
            add(counts, "group_memberships", n)
            if apply and n:
                conn.execute(gm.delete().where(gm.c.user_id == uid))


def _strip_refs(text: str, prefixes: list[str] | None) -> tuple[str | None, int]:
    """``extra_keys`` JSON without the user references of these roles (``prefixes``; None: a
    user's own ``user_ref<N>``): (the new text, how many went)."""
    try:
        extra = json.loads(text)
    except ValueError:
        return text, 0
    if not isinstance(extra, dict):
        return text, 0
    if prefixes is None:
        gone = [k for k in extra if personal.is_user_ref(k)]
    else:
        gone = [k for k in extra if any(personal.is_submission_ref(k, p) for p in prefixes)]
    for k in gone:
        del extra[k]
    return extra_json(extra), len(gone)
