"""Every key the service sends is kept in SQL too (issue 16): the form table's and the users
table's ``_extra`` column, on every backend (see ``tests/connectors/test_kizeo_extra_keys.py``)."""
from __future__ import annotations

import json

import pytest

from tests.connectors.conftest_kizeo import serve
from tests.connectors.test_kizeo_extra_keys import TRACE, WANT_EXTRA, WANT_USER_EXTRA, _export, _loads
from tests.connectors.test_kizeo_extra_keys import archive as archive  # noqa: F401 - the fixture

pytestmark = pytest.mark.network

def test_sql_keeps_every_key_the_service_sends(archive, db, tmp_path):
    with serve(archive) as srv:
        _export(srv.base_url, "--to", db.url, *[a for k, v in db.options.items() for a in ("-o", f"{k}={str(v).lower()}")])
    table = next(t for t in db.tables() if t.startswith("nouveautes") and "__" not in t)
    rows = db.rows(table)
    assert {r["submission_id"]: _loads(r["_extra"]) for r in rows} == WANT_EXTRA
    assert json.loads(next(r for r in rows if r["submission_id"] == "500")["trace"]) == TRACE
    assert {r["user_id"]: _loads(r["_extra"]) for r in db.rows("users")} == WANT_USER_EXTRA
