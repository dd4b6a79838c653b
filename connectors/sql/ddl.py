"""The SQL sink's schema steps: the fixed tables, each form's tables planned from the stored lineage,
shape checks before any DDL, CREATE / ALTER ADD, the foreign keys and indexes added after a load
(``late_constraints``), and the lock that serialises all this between processes."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope

from exporter.capabilities import Capabilities
from exporter.errors import SinkError
from exporter.model import ExternalList, Form
from exporter.sinks import RunContext

from .columns import type_family
from .dialects.base import Loader, SqlProfile
from .loaders import as_rows
from .planner import NamePlanner
from .plans import FormPlan, lineage_rows, plan_form
from .tables import (
    FIXED_NAMES,
    LIST_ITEM_BASE_COLUMNS,
    build_tables,
    expected_foreign_keys,
    fixed_tables,
    list_item_columns,
    list_items_table,
)

log = logging.getLogger("exporter.sql")


class SchemaSteps:
    """Mixed into ``SqlSink``: what it knows of the tables (reset by every rollback) and how it
    changes them."""

    name: str
    url: sa.URL
    schema: str | None
    profile: SqlProfile
    capabilities: Capabilities
    planner: NamePlanner
    _conn: sa.Connection
    _ctx: RunContext | None
    _loader: Loader
    _locked: bool
    _forms_met: dict[str, Form]
    _op: Callable[[str], AbstractContextManager[None]]
    _begin: Callable[[], None]
    _run_id: Callable[[], str]

    def _reset_schema_cache(self) -> None:
        self._md = sa.MetaData(schema=self.schema)
        self._fixed = fixed_tables(self._md, self.profile)
        self._plans: dict[str, FormPlan] = {}
        self._tables: dict[str, sa.Table] = {}
        self._list_cols: list[str] | None = None

    def _inspector(self):
        return sa.inspect(self._conn)

    def _check_tables(self, tables: list[sa.Table]) -> list[tuple[sa.Table, list[sa.Column] | None]]:
        """Check every table before any DDL: returns (table, None) to create, (table, [missing
        columns]) to alter. Raises SinkError for an existing table of incompatible shape."""
        insp = self._inspector()
        have_columns, have_pks = self._reflect(insp, [t.name for t in tables])
        out: list[tuple[sa.Table, list[sa.Column] | None]] = []
        for t in tables:
            if t.name not in have_columns:
                out.append((t, None))
                continue
            cols = {c["name"].lower(): c for c in have_columns[t.name]}
            pk = [c.lower() for c in (have_pks[t.name] or {}).get("constrained_columns") or []]
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

    def _reflect(self, insp: sa.Inspector, names: list[str]) -> tuple[dict[str, list], dict[str, Any]]:
        """The columns and the primary key of each of ``names`` that exists (as ``has_table`` finds
        it: a table, a view...), by name. Where the dialect reflects many tables in one query
        (``reflects_many``), a name missing from its answer is a table that is not there, so one
        query finds which exist and their columns; elsewhere each name is looked up first. Either
        way the columns and keys of all come in one call each (one query each where the dialect
        can)."""
        schema, kind, scope = self.schema, ObjectKind.ANY, ObjectScope.ANY  # where has_table looks
        if self.profile.reflects_many:
            columns = insp.get_multi_columns(schema, names, kind, scope) if names else {}
            present = [n for n in names if (schema, n) in columns]
        else:
            present = [n for n in names if insp.has_table(n, schema=schema)]
            columns = insp.get_multi_columns(schema, present, kind, scope) if present else {}
        pks = insp.get_multi_pk_constraint(schema, present, kind, scope) if present else {}
        # a table dropped in between is missing from the answers: asked alone, it fails as it always did
        return ({n: columns[(schema, n)] if (schema, n) in columns else insp.get_columns(n, schema=schema)
                 for n in present},
                {n: pks[(schema, n)] if (schema, n) in pks else insp.get_pk_constraint(n, schema=schema)
                 for n in present})

    def _apply_ddl(self, checked: list[tuple[sa.Table, list[sa.Column] | None]]) -> None:
        conn = self._conn
        prep = conn.dialect.identifier_preparer
        add = self.profile.add_column
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
        late = [t for t in self._fixed.values() if t.info.get("late_indexes") and t.name in existing]
        indexes: dict = {}
        if late:  # the indexes of all these tables at once (as has_index finds them, table by table)
            with self._op(f"reading the indexes of tables {', '.join(t.name for t in late)}"):
                indexes = insp.get_multi_indexes(schema=self.schema, filter_names=[t.name for t in late],
                                                 kind=ObjectKind.ANY, scope=ObjectScope.ANY)
        for t in late:
            have = {i["name"] for i in indexes.get((self.schema, t.name), ())}
            for ix in t.indexes:
                with self._op(f"creating index {ix.name} of table {t.name}"):
                    if ix.name is None or ix.name not in have:
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
        unlock = self.profile.schema_unlock_sql
        if self._locked:
            self._locked = False
            if unlock is None:  # (a dialect without an unlock statement never locks)
                return
            self._conn.execute(sa.text(unlock), {"k": self._lock_key()})
            if self._conn.in_transaction():
                self._conn.commit()

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
            self._loader.upsert(lin, "lineage_key", *as_rows(lineage_rows(plan, self._run_id())))
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
