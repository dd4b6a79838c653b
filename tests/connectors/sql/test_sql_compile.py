"""SQL Server and Access cannot run here: every DDL and load statement the sink would send them
is compiled with their real SQLAlchemy dialects and checked against their limits. The same
planner and loaders run for real on SQLite, PostgreSQL and MariaDB (test_sql_sink.py)."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from exporter.connectors.sql.dialects import profile_for
from exporter.connectors.sql.loaders import GenericLoader
from exporter.connectors.sql.planner import NamePlanner
from exporter.connectors.sql.plans import plan_form
from exporter.connectors.sql.rows import submission_rows
from exporter.connectors.sql.tables import FIXED_NAMES, build_tables, fixed_tables
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateColumn, CreateTable

from exporter.records import parse_form, parse_submission

from .test_sql_sink import HOSTILE


def _dialect(name: str):
    if name == "mssql":
        return mssql.pyodbc.dialect(paramstyle="qmark")
    from sqlalchemy_access.pyodbc import AccessDialect_pyodbc

    return AccessDialect_pyodbc(paramstyle="qmark")


def _wide_form():
    fields = dict(HOSTILE)
    for i in range(600):
        fields[f"Champ numéro {i} avec un nom vraiment très long pour dépasser toutes les limites"] = {
            "type": ["text", "number", "date", "checkbox", "geoloc", "datetime"][i % 6]}
    fields["lignes"] = {"type": "subform", "fields": {f"c{i}": {"type": "text"} for i in range(300)}}
    return parse_form({"id": "77", "name": "Formulaire " + "très " * 30 + "large", "fields": fields})


@pytest.mark.parametrize("name", ["mssql", "access"])
def test_ddl_compiles_within_the_dialect_limits(name):
    profile = profile_for(name)
    dialect = _dialect(name)
    limit = profile.capabilities.max_identifier_length
    md = sa.MetaData()
    tables = list(fixed_tables(md, profile).values())
    assert [t.name for t in tables] == list(FIXED_NAMES)
    form = _wide_form()
    plan = plan_form(form, [], NamePlanner(profile), profile, set(FIXED_NAMES), "run")
    built = build_tables(md, plan.main, profile, None)
    for tp in plan.subforms.values():
        built.update(build_tables(md, tp, profile, plan.main))
    tables += list(built.values())
    assert len(plan.main.parts) > 1 or name == "mssql"
    for t in tables:
        ddl = str(CreateTable(t).compile(dialect=dialect))
        assert len(t.columns) <= profile.capabilities.max_columns, t.name
        assert len(t.name) <= limit
        for c in t.columns:
            assert len(c.name) <= limit and re.fullmatch(r"[a-z0-9_]+", c.name), c.name
            assert not c.name.startswith("_")  # Access refuses a leading underscore
            spec = str(CreateColumn(c).compile(dialect=dialect))
            assert spec.startswith(dialect.identifier_preparer.quote(c.name))
        if name == "access":
            assert "BOOLEAN" not in ddl and "YESNO" not in ddl  # Yes/No cannot hold NULL: 0/1 integers
        if t.name in built and t.name != plan.main.parts[0] and not t.name.startswith(plan.main.parts[0] + "__"):
            assert "FOREIGN KEY" in ddl
    # every field part has exactly one column, no two columns of one table collide without case
    for t in tables:
        names = [c.name.lower() for c in t.columns]
        assert len(names) == len(set(names))
    planned = [c for tp in plan.tables() for c in tp.columns]
    assert len(planned) == len({(c.field, c.part, c.sql_kind, c.table) for c in planned})


@pytest.mark.parametrize("name", ["mssql", "access"])
def test_load_statements_compile_with_bound_values(name):
    profile = profile_for(name)
    dialect = _dialect(name)
    md = sa.MetaData()
    form = _wide_form()
    plan = plan_form(form, [], NamePlanner(profile), profile, set(FIXED_NAMES), "run")
    tables = build_tables(md, plan.main, profile, None)
    sub = parse_submission(form, {"id": "1", "fields": {"select": {"value": "x'); DROP TABLE users;--"}}})
    parent, _children = submission_rows(plan, sub, profile)
    for part, row in parent.items():
        t = tables[part]
        cols = list(row)
        params = GenericLoader.params(t, cols)
        ins = str(t.insert().values(params).compile(dialect=dialect))
        upd = str(t.update().where(t.c[cols[0]] == params[cols[0]])
                  .values({c: params[c] for c in cols[1:]}).compile(dialect=dialect))
        dele = str(t.delete().where(t.c[cols[0]].in_(["1", "2"])).compile(dialect=dialect))
        sel = str(sa.select(t.c[cols[0]]).where(t.c[cols[0]].in_(["1"])).compile(dialect=dialect))
        for sql in (ins, upd, dele, sel):  # values are bound, never part of the SQL text
            assert "DROP TABLE" not in sql and ("?" in sql or "POSTCOMPILE" in sql)
        assert ins.count("?") == len(cols)
        assert len(cols) <= profile.max_params
    add = "ADD" if name == "mssql" else "ADD COLUMN"
    t = tables[plan.main.parts[0]]
    alter = f"ALTER TABLE {dialect.identifier_preparer.format_table(t)} {add} " + str(
        CreateColumn(list(t.columns)[-1]).compile(dialect=dialect))
    assert f" {add} {list(t.columns)[-1].name} " in alter
    # reserved words that the toolkit itself uses are quoted by the dialect's preparer
    state = fixed_tables(sa.MetaData(), profile)["export_state"]
    assert "[cursor]" in str(CreateTable(state).compile(dialect=dialect)) or name == "access"
