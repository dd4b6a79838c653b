"""A form's plan: which tables and columns hold its fields, planned once from the stored lineage
and kept (a name once given never changes).

Schema evolution: a new field adds a column; a removed field keeps its column (``lineage.status =
'removed'``); a field whose type changes keeps its old column and values, and gets a new column
``<name>__<type>`` (``status = 'retyped'`` on the old one); nothing is dropped or converted. A
table wider than the dialect allows continues in ``<table>_p2``, ``_p3``...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.model import META_KEYS, FieldDef, Form

from .columns import DELETED_AT, field_parts, lineage_key
from .dialects.base import SqlProfile
from .planner import NamePlanner


@dataclass
class ColumnPlan:
    field: str  # original field name
    part: str  # value | lat | lon
    sql_kind: str
    column: str
    table: str  # physical table holding it
    caption: str = ""
    field_type: str = ""
    field_kind: str = ""
    status: str = "active"  # active | removed | retyped
    position: int = 0
    first_run: str = ""
    new: bool = False

    def key(self, form_id: str, subform: str) -> str:
        return lineage_key(form_id, subform, self.field, self.part, self.sql_kind)


@dataclass
class TablePlan:
    """A logical table (a form or one of its sub-forms), possibly split over several parts."""

    form_id: str
    subform: str  # "" for the form itself
    parts: list[str]
    key_columns: list[str]  # physical names: submission_id[, row_index]
    fixed_columns: list[str]  # physical names on parts[0] besides keys (meta..., unparsed_text[, extra_keys, deleted_at])
    meta_columns: dict[str, str]  # meta key -> physical column (form tables only)
    unparsed_column: str
    extra_column: str | None = None  # ``extra_keys`` (form tables only)
    columns: list[ColumnPlan] = field(default_factory=list)
    new_parts: set[str] = field(default_factory=set)
    #: form tables: the column set when the submission is gone from the service (``DELETED_AT``,
    #: unless a field's column of an existing table took that name)
    deleted_column: str | None = None

    def active(self) -> list[ColumnPlan]:
        return [c for c in self.columns if c.status == "active"]

    def by_field(self) -> dict[str, list[ColumnPlan]]:
        out: dict[str, list[ColumnPlan]] = {}
        for c in self.active():
            out.setdefault(c.field, []).append(c)
        return out

    def columns_of(self, part: str) -> list[ColumnPlan]:
        return [c for c in self.columns if c.table == part]


@dataclass
class FormPlan:
    form: Form
    main: TablePlan
    subforms: dict[str, TablePlan]  # sub-form field name -> plan
    #: what ``rows.submission_rows`` needs, compiled on first use (a plan is not changed once made)
    compiled: Any = field(default=None, init=False, repr=False, compare=False)

    def tables(self) -> list[TablePlan]:
        return [self.main, *self.subforms.values()]


def plan_form(form: Form, stored: list[dict], planner: NamePlanner, profile: SqlProfile,
              taken_tables: set[str], run_id: str) -> FormPlan:
    """Plan (or re-plan) the tables of ``form`` given its stored lineage rows. ``taken_tables``
    holds every table name already used (lowercased) and is updated."""
    tables_by_sub: dict[str, list[dict]] = {}
    cols_by_sub: dict[str, list[dict]] = {}
    for r in stored:
        (tables_by_sub if r["object"] == "table" else cols_by_sub).setdefault(r["subform"] or "", []).append(r)

    def parts_of(sub: str) -> list[str]:
        rows = sorted(tables_by_sub.get(sub, []), key=lambda r: r["position"] or 0)
        return [r["table_name"] for r in rows]

    main_parts = parts_of("")
    new_main = not main_parts
    if new_main:
        main_parts = [planner.form_table(form.id, form.name, taken_tables)]
    key = [planner.fixed("submission_id")]
    meta = {k: planner.fixed(k) for k in META_KEYS}
    unparsed = planner.fixed("unparsed_text")
    # a table made before ``extra_keys`` existed may hold a field column of that name: never reuse it
    stored_cols = {(r["column_name"] or "").lower() for r in cols_by_sub.get("", [])}
    extra = planner.fixed("extra_keys")
    while extra.lower() in stored_cols:
        extra = planner.fixed(extra + "_")
    deleted = planner.fixed(DELETED_AT)  # the same for the deletion mark
    while deleted.lower() in stored_cols:
        deleted = planner.fixed(deleted + "_")
    main = TablePlan(form.id, "", main_parts, key, [*meta.values(), unparsed, extra, deleted], meta, unparsed, extra,
                     deleted_column=deleted)
    if new_main:
        main.new_parts.add(main_parts[0])
    _plan_columns(main, [f for f in form.fields if f.has_value], cols_by_sub.get("", []), planner, profile,
                  taken_tables, run_id)
    subs: dict[str, TablePlan] = {}
    for sf in form.subforms():
        parts = parts_of(sf.name)
        new = not parts
        if new:
            parts = [planner.subform_table(main_parts[0], sf.name, taken_tables)]
        tp = TablePlan(form.id, sf.name, parts, [planner.fixed("submission_id"), planner.fixed("row_index")],
                       [unparsed], {}, unparsed)
        if new:
            tp.new_parts.add(parts[0])
        _plan_columns(tp, [c for c in sf.children if c.has_value], cols_by_sub.get(sf.name, []), planner,
                      profile, taken_tables, run_id)
        subs[sf.name] = tp
    # sub-forms that disappeared from the definition keep their tables: plan them from lineage
    for sub in sorted(set(tables_by_sub) - {""} - set(subs)):
        tp = TablePlan(form.id, sub, parts_of(sub), [planner.fixed("submission_id"), planner.fixed("row_index")],
                       [unparsed], {}, unparsed)
        _plan_columns(tp, [], cols_by_sub.get(sub, []), planner, profile, taken_tables, run_id)
        subs[sub] = tp
    return FormPlan(form, main, subs)


def _plan_columns(tp: TablePlan, fields: list[FieldDef], stored: list[dict], planner: NamePlanner,
                  profile: SqlProfile, taken_tables: set[str], run_id: str) -> None:
    existing: dict[tuple[str, str, str], ColumnPlan] = {}
    for r in sorted(stored, key=lambda r: r["position"] or 0):
        cp = ColumnPlan(r["field_name"], r["part"], r["sql_type"], r["column_name"], r["table_name"],
                        r["caption"] or "", r["field_type"] or "", r["field_kind"] or "", "removed",
                        r["position"] or 0, r["first_run"] or "")
        existing[(cp.field, cp.part, cp.sql_kind)] = cp
        tp.columns.append(cp)
    taken_cols = {c.lower() for c in tp.key_columns + tp.fixed_columns} | {c.column.lower() for c in tp.columns}
    pos = max([c.position for c in tp.columns], default=0)
    max_cols = profile.capabilities.max_columns
    counts = {p: len(tp.key_columns) + (len(tp.fixed_columns) if i == 0 else 0) for i, p in enumerate(tp.parts)}
    for c in tp.columns:
        counts[c.table] = counts.get(c.table, 0) + 1
    for f in fields:
        for part, sql_kind in field_parts(f):
            known = existing.get((f.name, part, sql_kind))
            if known is not None:
                known.status, known.caption, known.field_type, known.field_kind = "active", f.caption, f.type, f.kind
                continue
            retyped = [c for c in tp.columns if c.field == f.name and c.part == part and c.sql_kind != sql_kind]
            suffix = "" if part == "value" else f"_{part}"
            if retyped:
                suffix += f"__{sql_kind}"
            name = planner.column(f.name, taken_cols, suffix, original=f"{f.name}\x1f{part}\x1f{sql_kind}")
            table = tp.parts[-1]
            if max_cols is not None and counts.get(table, 0) >= max_cols:
                table = planner.part_table(tp.parts[0], len(tp.parts) + 1, taken_tables)
                tp.parts.append(table)
                tp.new_parts.add(table)
                counts[table] = len(tp.key_columns)
            counts[table] = counts.get(table, 0) + 1
            pos += 1
            cp = ColumnPlan(f.name, part, sql_kind, name, table, f.caption, f.type, f.kind, "active", pos,
                            run_id, new=True)
            existing[(f.name, part, sql_kind)] = cp
            tp.columns.append(cp)
    present = {f.name for f in fields}
    for c in tp.columns:
        if c.status != "active":
            c.status = "retyped" if c.field in present else "removed"


def lineage_rows(plan: FormPlan, run_id: str) -> list[dict]:
    rows = []
    for tp in plan.tables():
        for i, part in enumerate(tp.parts):
            rows.append({"lineage_key": lineage_key(tp.form_id, tp.subform, "", "table", str(i)), "object": "table",
                             "form_id": tp.form_id, "subform": tp.subform, "field_name": "", "caption": "",
                             "field_type": "", "field_kind": "", "part": "table", "sql_type": "", "table_name": part,
                             "column_name": "", "position": i, "status": "active", "first_run": run_id, "last_run": run_id})
        for c in tp.columns:
            rows.append({"lineage_key": c.key(tp.form_id, tp.subform), "object": "column", "form_id": tp.form_id,
                             "subform": tp.subform, "field_name": c.field, "caption": c.caption, "field_type": c.field_type,
                             "field_kind": c.field_kind, "part": c.part, "sql_type": c.sql_kind, "table_name": c.table,
                             "column_name": c.column, "position": c.position, "status": c.status,
                             "first_run": c.first_run or run_id, "last_run": run_id})
    return rows
