"""Every key the service sends is kept in SQL too (issue 16): the form table's, the users,
user_groups and lists tables' ``extra_keys`` column, on every backend (see ``tests/connectors/test_kizeo_extra_keys.py``)."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.connectors.conftest_kizeo import serve
from tests.connectors.test_kizeo_extra_keys import (
    TRACE,
    WANT_EXTRA,
    WANT_GROUP_EXTRA,
    WANT_LIST_EXTRA,
    WANT_USER_EXTRA,
    _export,
    _loads,
)
from tests.connectors.test_kizeo_extra_keys import archive as archive  # noqa: F401 - the fixture

pytestmark = pytest.mark.network

def test_sql_keeps_every_key_the_service_sends(archive, db, tmp_path):
    with serve(archive) as srv:
        _export(srv.base_url, "--to", db.url, *[a for k, v in db.options.items() for a in ("-o", f"{k}={str(v).lower()}")])
    table = next(t for t in db.tables() if t.startswith("nouveautes") and "__" not in t)
    rows = db.rows(table)
    assert {r["submission_id"]: _loads(r["extra_keys"]) for r in rows} == WANT_EXTRA
    assert json.loads(next(r for r in rows if r["submission_id"] == "500")["trace"]) == TRACE
    assert {r["user_id"]: _loads(r["extra_keys"]) for r in db.rows("users")} == WANT_USER_EXTRA
    assert {r["group_id"]: _loads(r["extra_keys"]) for r in db.rows("user_groups")} == WANT_GROUP_EXTRA
    assert {r["list_id"]: _loads(r["extra_keys"]) for r in db.rows("lists")} == WANT_LIST_EXTRA


def test_a_field_called_extra_keys_keeps_its_column_and_the_extra_keys_theirs():
    from exporter.connectors.sql.dialects import profile_for
    from exporter.connectors.sql.planner import NamePlanner
    from exporter.connectors.sql.plans import plan_form
    from exporter.connectors.sql.rows import submission_rows
    from exporter.connectors.sql.tables import FIXED_NAMES, build_tables

    from exporter.records import parse_form, parse_submission

    profile = profile_for("sqlite")
    form = parse_form({"id": "5", "name": "f", "fields": {"extra_keys": {"type": "text"}}})
    sub = parse_submission(form, {"id": "1", "pull_time": "x", "fields": {"extra_keys": {"value": "v"}}})
    # a new table: the field gets another column name
    plan = plan_form(form, [], NamePlanner(profile), profile, set(FIXED_NAMES), "run")
    row = next(iter(submission_rows(plan, sub, profile)[0].values()))
    assert row["extra_keys"] == '{"pull_time":"x"}' and "v" in row.values()
    # a table made before extra_keys existed, whose field column is called extra_keys: kept as is
    stored = [{"object": "table", "subform": "", "position": 1, "table_name": "f_5"},
              {"object": "column", "subform": "", "position": 1, "table_name": "f_5", "field_name": "extra_keys",
               "part": "value", "sql_type": "text", "column_name": "extra_keys", "caption": "", "field_type": "text",
               "field_kind": "text", "first_run": "old"}]
    plan = plan_form(form, stored, NamePlanner(profile), profile, set(FIXED_NAMES), "run")
    row = next(iter(submission_rows(plan, sub, profile)[0].values()))
    assert row["extra_keys"] == "v" and row[plan.main.extra_column] == '{"pull_time":"x"}'
    assert plan.main.extra_column != "extra_keys"
    build_tables(sa.MetaData(), plan.main, profile, None)  # no duplicate column
