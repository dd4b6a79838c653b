"""End to end on the real databases: the C module and pure Python write the same tables.

An account is exported with the C module, the tables are read back, then the same records are
exported again into them in pure Python (parsed again, rows built again): every row is replaced by
the pure-Python one, so equal tables afterwards mean equal rows (upserts replace every column,
sub-form and media rows are deleted and written again)."""
from __future__ import annotations

import pytest

from connectors.archive import ArchiveSource
from connectors.sql import loaders, schema
from exporter import records
from tests.conftest import SAMPLE

from .records_fixture import full_stream, run_export, submission
from .test_sql_sink import sink_for, snapshot

try:
    from exporter import _speedups as C
except ImportError:  # pragma: no cover - tests/test_speedups.py fails in CI when it is missing
    C = None


def _mode(monkeypatch, c: bool) -> None:
    monkeypatch.setattr(records, "_speedups", C if c else None)
    monkeypatch.setattr(schema, "_speedups", C if c else None)
    monkeypatch.setattr(loaders, "copy_bytes", loaders._copy_bytes_c if c else loaders._copy_bytes_py)
    if c:
        monkeypatch.setattr(loaders, "_speedups", C)


def _stream() -> list:
    """The sample account, then submissions with values that need escaping in bulk-load text."""
    recs = list(ArchiveSource(SAMPLE).records({}))
    extra = full_stream(n=2)
    f = next(r for r in extra if r.kind == "form")
    hostile = submission(f, "h1", nom="tab\there\\back\nnew\rcr é 日本 🎉 \\N", extra={"quantite": {"value": "1e400"},
                                                                                       "jour": {"value": "31/02/2024"}})
    return [*recs, *extra[:-1], hostile, extra[-1]]


@pytest.mark.skipif(C is None, reason="the C module exporter._speedups is not built")
@pytest.mark.parametrize("db", ["sqlite", "postgresql", "mysql"], indirect=True)
def test_c_and_pure_python_write_the_same_tables(db, monkeypatch):
    _mode(monkeypatch, True)
    run_export(sink_for(db), _stream())
    with_c = snapshot(db)
    assert sum(len(rows) for rows in with_c.values()) > 200
    _mode(monkeypatch, False)
    run_export(sink_for(db), _stream(), run="20240302T100000Z")
    assert snapshot(db) == with_c
