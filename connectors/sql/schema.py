"""Tables derived from the form definitions, plus the fixed tables of every export database.

Layout (the README documents every column):

* ``<form>``: one row per submission, ``submission_id`` primary key, the metadata columns, one
  column per field typed from the form definition (geoloc: ``<name>_lat`` + ``<name>_lon``),
  ``unparsed_text`` (JSON of the original text of every value that its typed column cannot hold),
  ``extra_keys`` (every served key the model does not read, ``model.extra_json``).
* ``<form>__<subform>``: one row per sub-form row, ``(submission_id, row_index)`` primary key,
  foreign key to the form table.
* ``<table>_p2``, ``_p3``...: continuation tables when a table has more columns than the dialect
  allows (Access 255); same key, foreign key to the first table.
* fixed: users, user_groups, group_members, lists, list_items, forms, media, documents, lineage, runs,
  export_state.

Schema evolution: a new field adds a column; a removed field keeps its column (``lineage.status =
'removed'``); a field whose type changes keeps its old column and values, and gets a new column
``<name>__<type>`` (``status = 'retyped'`` on the old one); nothing is dropped or converted.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql
from sqlalchemy.types import TypeDecorator

from exporter.errors import SinkError
from exporter.model import (
    BOOLEAN,
    DATE,
    DATETIME,
    EXPORT,
    FORM_PICTURE,
    GEOLOC,
    META_KEYS,
    NUMBER,
    TIME,
    Document,
    DocumentRef,
    FieldDef,
    Form,
    GeoPoint,
    Media,
    Submission,
    extra_json,
)

from .capabilities import SqlProfile
from .planner import NamePlanner

KEY_LEN = 64  # width of the hash-like key columns (media_key, lineage_key, sha256)
ID_LEN = 191  # ids, indexable in MySQL utf8mb4 and within SQL Server's 900-byte key limit


class SQLiteDecimal(TypeDecorator):
    """SQLite has no decimal type: store the exact decimal text in a NUMERIC column."""

    impl = sa.Numeric
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else str(value)

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(str(value))


def sa_type(sql_kind: str, profile: SqlProfile) -> sa.types.TypeEngine:
    d = profile.dialect
    if sql_kind == "id":
        return sa.Unicode(ID_LEN)
    if sql_kind == "key":
        return sa.String(KEY_LEN)
    if sql_kind == "short":
        return sa.Unicode(32)
    if sql_kind == "text":
        if d == "mysql":
            return mysql.LONGTEXT()
        return sa.UnicodeText()
    if sql_kind == "number":
        if d == "sqlite":
            return SQLiteDecimal()
        return sa.Numeric(profile.numeric_precision, profile.numeric_scale, asdecimal=True)
    if sql_kind == "double":
        return sa.Double()
    if sql_kind == "date":
        return sa.Date()
    if sql_kind == "time":
        return sa.Time()
    if sql_kind == "datetime":
        if d == "mssql":
            return mssql.DATETIME2()
        return sa.DateTime()
    if sql_kind == "boolean":
        if profile.boolean_as_int:
            return sa.SmallInteger()
        return sa.Boolean(create_constraint=False)
    if sql_kind == "int":
        return sa.Integer()
    if sql_kind == "bigint":
        return sa.BigInteger()
    if sql_kind == "binary":
        if d == "mysql":
            return mysql.LONGBLOB()
        return sa.LargeBinary()
    raise ValueError(sql_kind)


def type_family(t: Any) -> str:
    """Coarse family of a reflected or declared type, to tell compatible shapes apart."""
    if isinstance(t, TypeDecorator):
        t = t.impl_instance if hasattr(t, "impl_instance") else t.impl
    if isinstance(t, (sa.Boolean, sa.Integer, sa.Numeric, sa.Float)):
        return "number"
    if isinstance(t, (sa.DateTime, sa.Date, sa.Time)):
        return "temporal"
    if isinstance(t, (sa.LargeBinary, sa.types._Binary)):
        return "binary"
    if isinstance(t, (sa.String, sa.Enum)):
        return "text"
    return "any"


#: sql kinds of a field kind, with the part they store: [(part, sql_kind)]
def field_parts(f: FieldDef) -> list[tuple[str, str]]:
    if f.kind == GEOLOC:
        return [("lat", "double"), ("lon", "double")]
    return [("value", {NUMBER: "number", DATE: "date", TIME: "time", DATETIME: "datetime",
                       BOOLEAN: "boolean"}.get(f.kind, "text"))]


META_TIMES = {"create_time", "update_time", "answer_time", "update_answer_time", "start_time", "end_time"}


def lineage_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------------------------
# Fixed tables
# --------------------------------------------------------------------------------------------


def fixed_tables(md: sa.MetaData, profile: SqlProfile) -> dict[str, sa.Table]:
    def T(k: str) -> sa.types.TypeEngine:
        return sa_type(k, profile)

    C = sa.Column
    kw = _table_kw(profile)
    t = {}
    t["users"] = sa.Table(
        "users", md, C("user_id", T("id"), primary_key=True), C("login", T("text")), C("first_name", T("text")),
        C("last_name", T("text")), C("email", T("text")), C("phone", T("text")), C("admin", T("boolean")),
        C("main_group_id", T("text")), C("create_time", T("text")), C("extra_keys", T("text")), **kw)
    t["user_groups"] = sa.Table(
        "user_groups", md, C("group_id", T("id"), primary_key=True), C("name", T("text")),
        C("parent_id", T("text")), C("extra_keys", T("text")), **kw)
    t["group_members"] = sa.Table(
        "group_members", md, C("group_id", T("id"), primary_key=True), C("user_id", T("id"), primary_key=True),
        C("role", T("short"), primary_key=True), **kw)
    t["lists"] = sa.Table(
        "lists", md, C("list_id", T("id"), primary_key=True), C("name", T("text")), C("class", T("text")),
        C("update_time", T("text")), C("item_count", T("int")), C("extra_keys", T("text")), **kw)
    t["list_items"] = list_items_table(md, profile, [])
    t["forms"] = sa.Table(
        "forms", md, C("form_id", T("id"), primary_key=True), C("name", T("text")), C("class", T("text")),
        C("update_time", T("text")), C("table_name", T("text")), C("definition", T("text")),
        C(DELETED_AT, T("datetime")), **kw)
    t["media"] = sa.Table(
        "media", md, C("media_key", T("key"), primary_key=True), C("form_id", T("id")),
        C("submission_id", T("id")), C("field", T("text")), C("subform", T("text")), C("row_index", T("int")),
        C("name", T("text")), C("content_type", T("text")), C("size", T("bigint")), C("sha256", T("key")),
        C("path", T("text")), C("content", T("binary")),
        sa.Index("ix_media_submission", "form_id", "submission_id"), info={"late_indexes": True}, **kw)
    t["documents"] = sa.Table(
        "documents", md, C("document_key", T("key"), primary_key=True), C("form_id", T("id")),
        C("submission_id", T("id")), C("kind", T("short")), C("export_id", T("text")), C("field", T("text")),
        C("name", T("text")), C("content_type", T("text")), C("size", T("bigint")), C("sha256", T("key")),
        C("path", T("text")), C("content", T("binary")),
        sa.Index("ix_documents_submission", "form_id", "submission_id"), info={"late_indexes": True}, **kw)
    t["lineage"] = sa.Table(
        "lineage", md, C("lineage_key", T("key"), primary_key=True), C("object", T("short")),
        C("form_id", T("id")), C("subform", T("text")), C("field_name", T("text")), C("caption", T("text")),
        C("field_type", T("text")), C("field_kind", T("short")), C("part", T("short")),
        C("sql_type", T("short")), C("table_name", T("text")), C("column_name", T("text")),
        C("position", T("int")), C("status", T("short")), C("first_run", T("short")), C("last_run", T("short")),
        sa.Index("ix_lineage_form", "form_id"), **kw)
    t["runs"] = sa.Table(
        "runs", md, C("run_id", T("short"), primary_key=True), C("started_at", T("datetime")),
        C("ended_at", T("datetime")), C("source", T("text")), C("timezone", T("short")), C("mode", T("short")),
        C("status", T("short")),
        C("forms", T("int")), C("submissions", T("int")), C("media", T("int")), C("counts", T("text")),
        C("message", T("text")), C("owner", T("text")), **kw)
    t["export_state"] = sa.Table(
        "export_state", md, C("form_id", T("id"), primary_key=True), C("cursor", T("text")),
        C("mode", T("short")), C("run_id", T("short")), C("updated_at", T("datetime")), **kw)
    return t


#: the columns of ``list_items`` before its split columns
LIST_ITEM_BASE_COLUMNS = ("list_id", "item_index", "line")


def list_items_table(md: sa.MetaData, profile: SqlProfile, extra: list[str]) -> sa.Table:
    """``list_items`` with its split columns (``extra``: ``l1_label``, ``l1_code``, ...)."""
    key = f"{md.schema}.list_items" if md.schema else "list_items"
    if key in md.tables:
        md.remove(md.tables[key])
    return sa.Table(
        "list_items", md, sa.Column("list_id", sa_type("id", profile), primary_key=True),
        sa.Column("item_index", sa_type("int", profile), primary_key=True, autoincrement=False),
        sa.Column("line", sa_type("text", profile)),
        *[sa.Column(n, sa_type("text", profile)) for n in extra], **_table_kw(profile))


FIXED_NAMES = ("users", "user_groups", "group_members", "lists", "list_items", "forms", "media",
               "documents", "lineage", "runs", "export_state")


def _table_kw(profile: SqlProfile) -> dict:
    if profile.dialect == "mysql":
        return {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
    return {}


def list_item_columns(max_levels: int, max_cols: int) -> list[str]:
    """Split columns of ``list_items``: ``l1_label``, ``l1_code``, ``l1_c2_label``, ..."""
    out = []
    for lv in range(1, max_levels + 1):
        for c in range(1, max_cols + 1):
            stem = f"l{lv}" if c == 1 else f"l{lv}_c{c}"
            out += [f"{stem}_label", f"{stem}_code"]
    return out


# --------------------------------------------------------------------------------------------
# Form plans
# --------------------------------------------------------------------------------------------


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
    # what ``submission_rows`` needs, compiled on first use (a plan is not changed once made)
    _rows: Any = field(default=None, init=False, repr=False, compare=False)

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
            cp = existing.get((f.name, part, sql_kind))
            if cp is not None:
                cp.status, cp.caption, cp.field_type, cp.field_kind = "active", f.caption, f.type, f.kind
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


def expected_foreign_keys(tables: Iterable[Any], planner: NamePlanner) -> list[tuple[str, list[str], str, list[str]]]:
    """The foreign keys ``build_tables`` gives the tables the lineage holds (``tables``: rows of
    form_id, subform, position, table_name of its ``table`` objects), as (table, columns,
    referred table, referred columns): every part after the first refers to the first part of its
    table by the whole key, the first part of a sub-form's table to the form's first part by the
    submission id."""
    sid, row = planner.fixed("submission_id"), planner.fixed("row_index")
    parts: dict[tuple[str, str], dict[int, str]] = {}
    for form_id, subform, position, table_name in tables:
        parts.setdefault((form_id, subform or ""), {})[int(position)] = table_name
    out = []
    for (form_id, subform), by_pos in sorted(parts.items()):
        order = [by_pos[i] for i in sorted(by_pos)]
        keys = [sid, row] if subform else [sid]
        for child in order[1:]:
            out.append((child, keys, order[0], keys))
        main = parts.get((form_id, ""))
        if subform and main and 0 in main:
            out.append((order[0], [sid], main[0], [sid]))
    return out


#: the form's main-table column set when a submission is gone from the service (soft deletion);
#: no leading underscore (Access refuses one), like the other fixed columns
DELETED_AT = "deleted_at"


def build_tables(md: sa.MetaData, tp: TablePlan, profile: SqlProfile, parent: TablePlan | None) -> dict[str, sa.Table]:
    """SQLAlchemy tables of every part of ``tp`` (all planned columns, active or not)."""
    out = {}
    kw = _table_kw(profile)
    for i, part in enumerate(tp.parts):
        cols: list[Any] = []
        for j, k in enumerate(tp.key_columns):
            cols.append(sa.Column(k, sa_type("id" if j == 0 else "int", profile), primary_key=True,
                                  autoincrement=False))
        if i == 0:
            for mk, col in tp.meta_columns.items():
                cols.append(sa.Column(col, sa_type("datetime" if mk in META_TIMES else "text", profile)))
            cols.append(sa.Column(tp.unparsed_column, sa_type("text", profile)))
            if tp.extra_column is not None:
                cols.append(sa.Column(tp.extra_column, sa_type("text", profile)))
            if tp.deleted_column:  # the form's main row: when the service was seen without it
                cols.append(sa.Column(tp.deleted_column, sa_type("datetime", profile)))
        for c in tp.columns_of(part):
            cols.append(sa.Column(c.column, sa_type(c.sql_kind, profile)))
        if i > 0:
            target, target_keys = tp.parts[0], tp.key_columns
        elif parent is not None:
            target, target_keys = parent.parts[0], parent.key_columns[:1]
        else:
            target = None
        if target is not None:
            n = len(target_keys)
            ref = ".".join(x for x in (md.schema, target) if x)
            cols.append(sa.ForeignKeyConstraint(tp.key_columns[:n], [f"{ref}.{k}" for k in target_keys],
                                                name=None))
        if part in md.tables or (md.schema and f"{md.schema}.{part}" in md.tables):
            md.remove(md.tables[f"{md.schema}.{part}" if md.schema else part])
        out[part] = sa.Table(part, md, *cols, **kw)
    return out


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


class _Converter:
    def __init__(self, profile: SqlProfile):
        self.profile = profile
        p, s = profile.numeric_precision, profile.numeric_scale
        self.max_int_digits = p - s
        self.scale = s

    def number(self, v: Any, text: str | None, unparsed: dict, key: str) -> Any:
        if not isinstance(v, Decimal) or not v.is_finite():
            _keep(unparsed, key, text)
            return None
        if self.profile.dialect == "sqlite":
            return v
        _sign, digits, exp = v.as_tuple()
        int_digits = max(len(digits) + exp, 0)
        if int_digits > self.max_int_digits:
            _keep(unparsed, key, text)
            return None
        if exp < -self.scale:  # more decimals than the column keeps: rounded, text kept
            _keep(unparsed, key, text)
            return v.quantize(Decimal(1).scaleb(-self.scale))
        return v


def _keep(unparsed: dict, key: str, text: str | None) -> None:
    if text is not None and text.strip() != "":
        unparsed[key] = text


# texts of metadata times already read (naive ones only: nothing to keep aside); a submission's six
# times are often equal and neighbouring submissions share them
_META_TIMES: dict[str, dt.datetime] = {}


def parse_meta_time(text: str | None, unparsed: dict, key: str) -> dt.datetime | None:
    v = _META_TIMES.get(text)  # type: ignore[arg-type]
    if v is not None:
        return v
    if text is None or not text.strip():
        return None
    try:
        v = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        unparsed[f"_meta:{key}"] = text
        return None
    if v.tzinfo is not None:
        unparsed[f"_meta:{key}"] = text
        return v.replace(tzinfo=None)
    if len(_META_TIMES) >= 4096:
        _META_TIMES.clear()
    _META_TIMES[text] = v
    return v


def check_id(value: str | None, what: str, context: str) -> str:
    if value is None or value == "":
        raise SinkError(f"{what} is empty", context=context)
    if len(value) > ID_LEN:
        raise SinkError(f"{what} is {len(value)} characters long, more than the {ID_LEN} an id column holds",
                        context=context)
    return value


def media_key(form_id: str, submission_id: str, subform: str | None, row: int | None, field: str, name: str) -> str:
    """The ``media`` table's key for one media of one submission: ``<form id>/<submission id>/``
    followed by 16 hex digits of the sha256 of the whole natural key (form, submission, sub-form,
    row, field, name). Keys of one submission sit side by side and grow with the ids, so a load
    appends to the key's index instead of writing all over it. When the ids are not plain ASCII or
    too long for the column, the key is the natural key's whole sha256 (64 hex digits) instead."""
    return _submission_key(form_id, submission_id, lineage_key(
        form_id, submission_id, subform or "", "" if row is None else str(row), field, name))


def _submission_key(form_id: str, submission_id: str, h: str) -> str:
    """``<form id>/<submission id>/`` and 16 hex digits of ``h``, or ``h`` whole (see ``media_key``)."""
    if len(form_id) + len(submission_id) + 18 <= KEY_LEN and (form_id + submission_id).isascii():
        return f"{form_id}/{submission_id}/{h[:16]}"
    return h


def document_key(ref: DocumentRef) -> str:
    """The ``documents`` table's key of one vendor document, made like ``media_key`` from its
    natural key (form, submission (none for a layout picture), kind, export id or field)."""
    sid = ref.submission_id or ""
    return _submission_key(ref.form_id, sid, lineage_key("document", ref.form_id, sid, ref.doc_kind, ref.key))


#: the columns of a ``media`` table row (``media_row``), in order
MEDIA_COLUMNS = ["media_key", "form_id", "submission_id", "field", "subform", "row_index", "name", "content_type",
                 "size", "sha256", "path"]


def media_row(m: Media, size: int | None, sha256: str | None, path: str | None) -> dict:
    """The ``media`` table row of one media file (its bytes, with ``--media-in-db``, go in after)."""
    r = m.ref
    fid, sid = r.form_id, r.submission_id
    if not fid or not sid or len(fid) > ID_LEN or len(sid) > ID_LEN:
        ctx = f"form {fid} submission {sid} media {r.name}"
        check_id(fid, "form id", ctx)
        check_id(sid, "submission id", ctx)
    return dict(zip(MEDIA_COLUMNS, (media_key(fid, sid, r.subform, r.row, r.field, r.name), fid, sid, r.field,
                                    r.subform, r.row, r.name, m.content_type, size, sha256, path), strict=True))


#: the columns of a ``documents`` table row (``document_row``), in order
DOCUMENT_COLUMNS = ["document_key", "form_id", "submission_id", "kind", "export_id", "field", "name", "content_type",
                    "size", "sha256", "path"]


def document_row(d: Document, size: int | None, sha256: str | None, path: str | None) -> dict:
    """The ``documents`` table row of one vendor document (its bytes, with ``--media-in-db``, go in
    after): ``export_id`` for a custom export, ``field`` for a layout picture (whose
    ``submission_id`` is NULL)."""
    r = d.ref
    ctx = f"form {r.form_id} submission {r.submission_id} document {d.name}"
    check_id(r.form_id, "form id", ctx)
    if r.submission_id is not None:
        check_id(r.submission_id, "submission id", ctx)
    return dict(zip(DOCUMENT_COLUMNS, (
        document_key(r), r.form_id, r.submission_id, r.doc_kind, r.key if r.doc_kind == EXPORT else None,
        r.key if r.doc_kind == FORM_PICTURE else None, d.name, d.content_type, size, sha256, path), strict=True))


def _cell_fn(c: ColumnPlan, conv: _Converter):
    """``fn(value, text, unparsed)``: the cell of column ``c`` from a typed value and its served
    text; a text that did not type is kept in ``unparsed`` (the row's ``unparsed_text``)."""
    k, name = c.sql_kind, c.field
    if k == "text":
        def text(v, t, un, _tuple=tuple):
            if t is None and v is not None and not isinstance(v, _tuple):
                return str(v)
            return t
        return text
    if k == "number":
        number = conv.number

        def num(v, t, un):
            if v is None:
                _keep(un, name, t)
                return None
            return number(v, t, un, name)
        return num
    if k == "double":
        lat = c.part == "lat"
        lon = c.part == "lon"

        def double(v, t, un):
            if isinstance(v, GeoPoint):
                return v.latitude if lat else v.longitude
            if lon:  # the text is kept once, under the field name, by the lat column
                return None
            _keep(un, name, t)
            return None
        return double
    if k == "boolean":
        as_int = conv.profile.boolean_as_int

        def boolean(v, t, un):
            if isinstance(v, bool):
                return int(v) if as_int else v
            _keep(un, name, t)
            return None
        return boolean
    if k in ("date", "time", "datetime"):
        ok = {"date": lambda x: isinstance(x, dt.date) and not isinstance(x, dt.datetime),
              "time": lambda x: isinstance(x, dt.time),
              "datetime": lambda x: isinstance(x, dt.datetime)}[k]
        exact = {"date": dt.date, "time": dt.time, "datetime": dt.datetime}[k]

        def temporal(v, t, un):
            if type(v) is exact or ok(v):
                return v
            _keep(un, name, t)
            return None
        return temporal
    return lambda v, t, un: t


class _RowPlan:
    """One table plan compiled for ``submission_rows``: per part, (column, field, fn)."""

    __slots__ = ("parts", "first", "key", "row_key", "unparsed", "cols", "single")

    def __init__(self, tp: TablePlan, conv: _Converter):
        self.parts = tuple(tp.parts)
        self.first = tp.parts[0]
        self.key = tp.key_columns[0]
        self.row_key = tp.key_columns[1] if len(tp.key_columns) > 1 else None
        self.unparsed = tp.unparsed_column
        active = tp.active()
        # (part, column, field, fn) in plan order: the row dicts get their keys in that order
        self.cols = tuple((c.table, c.column, c.field, _cell_fn(c, conv)) for c in active)
        self.single = len(self.parts) == 1


class _CompiledRows:
    __slots__ = ("profile", "main", "meta", "subs", "extra", "deleted")

    def __init__(self, plan: FormPlan, profile: SqlProfile):
        conv = _Converter(profile)
        self.profile = profile
        self.main = _RowPlan(plan.main, conv)
        self.meta = tuple((mk, col, mk in META_TIMES) for mk, col in plan.main.meta_columns.items())
        self.extra = plan.main.extra_column
        self.subs = tuple((name, _RowPlan(tp, conv)) for name, tp in plan.subforms.items())
        self.deleted = plan.main.deleted_column or DELETED_AT


def _compiled(plan: FormPlan, profile: SqlProfile) -> _CompiledRows:
    c = plan._rows
    if c is None or c.profile is not profile:
        c = plan._rows = _CompiledRows(plan, profile)
    return c


def _dumps(un: dict) -> str:
    return json.dumps(un, ensure_ascii=False, sort_keys=True)


def submission_rows(plan: FormPlan, sub: Submission, profile: SqlProfile
                    ) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Rows of one submission: {part table: row} for the form, {part table: [rows]} for sub-forms."""
    comp = _compiled(plan, profile)
    sid = check_id(sub.id, "submission id", f"form {plan.form.id} submission {sub.id}")
    return _submission_rows(comp, sid, sub)


def records_rows(plan: FormPlan, profile: SqlProfile, records: Iterable[Any]
                 ) -> tuple[dict[str, list[dict]], list[dict]]:
    """The rows ``submission_rows`` makes of the ``Submission``\\ s among ``records``, per table
    part, and the ``media`` rows ``media_row`` makes of their ``Media`` (sizes and hashes as the
    records give them, no path)."""
    rows: dict[str, list[dict]] = {}
    media: list[dict] = []
    for r in records:
        if r.kind == "media":
            media.append(media_row(r, r.size, r.sha256, None))
            continue
        parent, children = submission_rows(plan, r, profile)
        for part, row in parent.items():
            rows.setdefault(part, []).append(row)
        for part, more in children.items():
            rows.setdefault(part, []).extend(more)
    return rows, media


def _submission_rows(comp: _CompiledRows, sid: str, sub: Submission
                     ) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    main = comp.main
    unparsed: dict[str, str] = {}
    if main.single:
        first = {main.key: sid}
        parent = {main.first: first}
    else:
        parent = {p: {main.key: sid} for p in main.parts}
        first = parent[main.first]
    meta = sub.meta
    for mk, col, is_time in comp.meta:
        t = meta.get(mk)
        first[col] = parse_meta_time(t, unparsed, mk) if is_time else t
    values, texts = sub.values.get, sub.text.get
    if main.single:
        for _part, col, name, fn in main.cols:
            first[col] = fn(values(name), texts(name), unparsed)
    else:
        for part, col, name, fn in main.cols:
            parent[part][col] = fn(values(name), texts(name), unparsed)
    first[main.unparsed] = _dumps(unparsed) if unparsed else None
    first[comp.extra] = extra_json(sub.extra)
    first[comp.deleted] = None  # served: not deleted (any more)
    children: dict[str, list[dict]] = {}
    sub_rows = sub.subforms
    for sf_name, tp in comp.subs:
        if tp.single:
            out = children.setdefault(tp.first, [])
        else:
            for p in tp.parts:
                children.setdefault(p, [])
        key, row_key, unparsed_col = tp.key, tp.row_key, tp.unparsed
        for row in sub_rows.get(sf_name, ()):
            un: dict[str, str] = {}
            rvalues, rtexts = row.values.get, row.text.get
            if tp.single:
                r = {key: sid, row_key: row.index}
                for _part, col, name, fn in tp.cols:
                    r[col] = fn(rvalues(name), rtexts(name), un)
                r[unparsed_col] = _dumps(un) if un else None
                out.append(r)
                continue
            prow = {p: {key: sid, row_key: row.index} for p in tp.parts}
            for part, col, name, fn in tp.cols:
                prow[part][col] = fn(rvalues(name), rtexts(name), un)
            prow[tp.first][unparsed_col] = _dumps(un) if un else None
            for p, r in prow.items():
                children[p].append(r)
    return parent, children


def iter_chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), max(1, n)):
        yield items[i:i + n]
