"""PostgreSQL + psycopg with ``-o background_load=true``: each batch's COPYs and commit run on a
background thread while the next batch is read (``CopyLoader.overlap``). Same tables as a plain
load, errors still one clear line naming the table, and nothing committed past a failure. (Off by
default on PostgreSQL, where the thread costs more than it saves; MariaDB/MySQL loads this way by
default: ``test_sql_multirow``.)"""
from __future__ import annotations

import sys
from dataclasses import replace

import pytest
from exporter.connectors.sql import create_sink

from exporter.errors import SinkError
from exporter.model import Checkpoint, Media
from exporter.sinks import RunContext

from .conftest import PG_ADMIN, _pg_schema
from .records_fixture import FORM_ID, ctx, form, full_stream, media_for, run_export, submission

TABLE = "visite_de_chantier_1001"
#: the option that turns background loads on
ON = {"background_load": True}


@pytest.fixture
def other_pg_db():
    yield from _pg_schema("postgresql", PG_ADMIN)


@pytest.fixture
def pg_pair(pg_db, other_pg_db):
    """Two schemas of the test database: one loaded with overlap, one without (the default)."""
    return pg_db, other_pg_db


def _tables(db) -> dict:
    """Every table's rows, but the clock: runs and lineage name runs, export_state.updated_at is now()."""
    out = {t: db.rows(t) for t in sorted(db.tables()) if t not in ("runs", "lineage")}
    out["export_state"] = [{k: v for k, v in r.items() if k != "updated_at"} for r in out["export_state"]]
    return out


def test_overlapped_load_equals_plain_load_also_on_reruns_and_edits(pg_pair):
    on, off = pg_pair
    f = form()
    edited = submission(f, "2", nom="Durand", rows=1, update="2024-03-05 12:00:00")
    again = [f, edited, *media_for(edited), Checkpoint(f.id, "2024-03-05 12:00:00")]
    for db, opts in ((on, ON), (off, {})):
        sink = create_sink(db.url, {**db.options, **opts})
        run_export(sink, full_stream(f), batch=2)
        run_export(create_sink(db.url, {**db.options, **opts}), full_stream(f), run="20240302T100000Z", batch=3)
        run_export(create_sink(db.url, {**db.options, **opts}), again, run="20240305T120000Z")
    assert _tables(on) == _tables(off)
    assert [r["status"] for r in on.rows("runs", order="run_id")] == ["ok", "ok", "ok"]
    assert create_sink(on.url, {**on.options, **ON}).load_state() == {FORM_ID: "2024-03-05 12:00:00"}
    assert sys.getswitchinterval() == pytest.approx(0.005)  # no process-wide tweak: the default, untouched


def test_failure_in_the_background_is_reported_and_nothing_past_it_is_committed(pg_pair):
    db, _ = pg_pair
    f = form()
    run_export(create_sink(db.url, {**db.options, **ON}), full_stream(f))
    before = {t: db.rows(t) for t in (TABLE, "media", "export_state")}
    sub = submission(f, "9", update="2024-04-01 00:00:00")
    huge = Media(sub.media[0], "image/jpeg", lambda: None, size=1 << 70, sha256="0" * 64)  # beyond BIGINT
    sink = create_sink(db.url, {**db.options, **ON})
    sink.open(ctx("20240401T000000Z"))
    sink.write([f])
    sink.commit()
    sink.write([sub, huge])  # the COPY into media fails on the background thread...
    sink.commit()  # ...so this commit never runs
    with pytest.raises(SinkError) as ei:
        sink.close(True)  # the failure surfaces at the next touch of the connection
    msg = str(ei.value)
    assert "\n" not in msg and "media" in msg and "bigint" in msg.lower(), msg
    assert {t: db.rows(t) for t in (TABLE, "media", "export_state")} == before
    assert [r["status"] for r in db.rows("runs", order="run_id")] == ["ok", "failed"]


def test_unread_mode_the_option_and_the_default_keep_loads_synchronous(pg_pair):
    db, _ = pg_pair
    for context, opts in ((replace(ctx(), mode="unread"), ON), (ctx(), {"background_load": False}), (ctx(), {}),
                          (ctx(), ON)):
        sink = create_sink(db.url, {**db.options, **opts})
        sink.open(context)
        try:
            assert sink._loader.overlapping is (context.mode != "unread" and opts == ON)
            assert sys.getswitchinterval() == pytest.approx(0.005)  # a background load tweaks nothing process-wide
        finally:
            sink.close(False)
    assert isinstance(ctx(), RunContext)


def test_next_batch_rows_are_made_ahead_yet_the_earlier_failure_is_the_one_reported(pg_pair):
    """A batch's rows are made before the sink waits for the previous batch's loads; when they
    cannot be made (an id too long for its column), the previous batch's failure in the
    background still comes first, as it would have without the rows made ahead."""
    db, _ = pg_pair
    f = form()
    sub = submission(f, "9", update="2024-04-01 00:00:00")
    huge = Media(sub.media[0], "image/jpeg", lambda: None, size=1 << 70, sha256="0" * 64)  # beyond BIGINT
    sink = create_sink(db.url, {**db.options, **ON})
    sink.open(ctx("20240401T000000Z"))
    try:
        sink.write([f])
        sink.commit()
        assert FORM_ID in sink._prepare([sub]).rows  # the form is planned: its rows are made ahead from now on
        sink.write([sub, huge])  # the COPY into media fails on the background thread
        sink.commit()
        with pytest.raises(SinkError) as ei:
            sink.write([submission(f, "x" * 300)])
        msg = str(ei.value)
        assert "media" in msg and "bigint" in msg.lower() and "x" * 300 not in msg, msg
    finally:
        sink.close(False)
    assert db.rows(TABLE) == []
