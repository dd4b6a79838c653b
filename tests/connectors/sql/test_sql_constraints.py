"""Foreign keys and the media index: every backend ends a run with them. PostgreSQL (the
``late_constraints`` profile) creates a run's new tables without them and adds them once the run
has loaded its rows, or at the start of the next run when a run stopped before its end."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from exporter.connectors.sql import create_sink
from exporter.connectors.sql.dialects import profile_for

from exporter.errors import SinkError
from exporter.model import Checkpoint
from exporter.records import parse_form, parse_submission

from .records_fixture import ctx, form, full_stream, run_export, submission
from .test_sql_sink import CHILD, TABLE, sink_for


def constraints(db) -> tuple[set[tuple[str, tuple[str, ...], str]], set[str]]:
    """(foreign keys as (table, columns, referred table), names of the media table's indexes)."""
    with db.engine().connect() as c:
        insp = sa.inspect(c)
        fks = set()
        for t in insp.get_table_names(schema=db.schema):
            for fk in insp.get_foreign_keys(t, schema=db.schema):
                fks.add((t, tuple(fk["constrained_columns"]), fk["referred_table"].lower()))
        indexes = {ix["name"] for ix in insp.get_indexes("media", schema=db.schema)}
    return fks, indexes


WANT_FKS = {(CHILD, ("submission_id",), TABLE)}


def test_every_backend_ends_a_run_with_its_keys_and_index(db):
    run_export(sink_for(db), full_stream())
    fks, indexes = constraints(db)
    assert fks == WANT_FKS and "ix_media_submission" in indexes
    run_export(sink_for(db), full_stream(), run="20240302T100000Z")  # nothing added twice
    assert constraints(db) == (fks, indexes)


def test_continuation_tables_refer_to_the_first_part(db):
    fields = {f"champ_{i:03d}": {"type": "text"} for i in range(60)}
    fields["lignes"] = {"type": "subform", "fields": {"a": {"type": "text"}}}
    f = parse_form({"id": "55", "name": "Large", "fields": fields})
    s = parse_submission(f, {"id": "1", "fields": {"lignes": {"value": [{"a": {"value": "x"}}]}}})
    run_export(sink_for(db, max_columns=40), [f, s])
    fks, _ = constraints(db)
    parts = sorted(t for t in db.tables() if t.startswith("large_55_p"))
    assert parts == ["large_55_p2", "large_55_p3"]
    assert fks == {(p, ("submission_id",), "large_55") for p in [*parts, "large_55__lignes"]}


def test_postgresql_adds_them_once_the_run_has_loaded(pg_db):
    assert profile_for("postgresql").late_constraints and not profile_for("mysql").late_constraints
    f = form()
    sink = sink_for(pg_db)
    sink.open(ctx())
    sink.write([f, *full_stream(f)[1:]])
    sink.commit()
    fks, indexes = constraints(pg_db)
    assert fks == set() and indexes == set()  # loading: primary keys only
    sink.close(True)
    fks, indexes = constraints(pg_db)
    assert fks == WANT_FKS and indexes == {"ix_media_submission"}


def _stopped_run(pg_db):
    """A run that stopped after a committed batch: its rows stay, without their foreign key."""
    f = form()
    sink = sink_for(pg_db)
    sink.open(ctx())
    sink.write([f, submission(f, "1"), Checkpoint(f.id, "2024-03-01 10:00:00")])
    sink.commit()
    sink.close(False)
    assert constraints(pg_db)[0] == set() and len(pg_db.rows(CHILD)) == 2
    return f


def test_a_run_that_stopped_leaves_them_to_the_next_one(pg_db):
    _stopped_run(pg_db)
    sink = sink_for(pg_db)
    sink.open(ctx("20240302T100000Z"))  # the next run completes the tables before writing
    assert constraints(pg_db) == (WANT_FKS, {"ix_media_submission"})
    sink.close(True)


def test_rows_that_break_a_late_foreign_key_fail_the_next_run_in_one_line(pg_db):
    f = _stopped_run(pg_db)
    pg_db.execute(f'INSERT INTO "{pg_db.schema}"."{CHILD}" (submission_id, row_index) VALUES (\'orphan\', 0)')
    sink = sink_for(pg_db)
    with pytest.raises(SinkError) as ei:
        sink.open(ctx("20240302T100000Z"))
    # rolled back and closed by open itself: no lock held meanwhile
    assert sink._connection is None or not sink._connection.in_transaction()
    sink.close(False)
    msg = str(ei.value)
    assert CHILD in msg and "\n" not in msg
    assert constraints(pg_db)[0] == set()
    assert create_sink(pg_db.url, pg_db.options).load_state() == {f.id: "2024-03-01 10:00:00"}
