"""The tables of an export database: the fixed ones every export has, and those built from a form's
plan (see :mod:`.plans`); the layout is documented in the README's "Table layout"."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from .columns import DELETED_AT, META_TIMES, sa_type
from .dialects.base import SqlProfile
from .planner import NamePlanner
from .plans import TablePlan


def fixed_tables(md: sa.MetaData, profile: SqlProfile) -> dict[str, sa.Table]:
    def T(k: str) -> sa.types.TypeEngine:
        return sa_type(k, profile)

    C = sa.Column
    kw = table_options(profile)
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
        *[sa.Column(n, sa_type("text", profile)) for n in extra], **table_options(profile))


FIXED_NAMES = ("users", "user_groups", "group_members", "lists", "list_items", "forms", "media",
               "documents", "lineage", "runs", "export_state")


def table_options(profile: SqlProfile) -> dict:
    return dict(profile.table_options)


def list_item_columns(max_levels: int, max_cols: int) -> list[str]:
    """Split columns of ``list_items``: ``l1_label``, ``l1_code``, ``l1_c2_label``, ..."""
    out = []
    for lv in range(1, max_levels + 1):
        for c in range(1, max_cols + 1):
            stem = f"l{lv}" if c == 1 else f"l{lv}_c{c}"
            out += [f"{stem}_label", f"{stem}_code"]
    return out


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


def build_tables(md: sa.MetaData, tp: TablePlan, profile: SqlProfile, parent: TablePlan | None) -> dict[str, sa.Table]:
    """SQLAlchemy tables of every part of ``tp`` (all planned columns, active or not)."""
    out = {}
    kw = table_options(profile)
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
