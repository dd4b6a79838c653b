"""The fast load paths (COPY, multi-row INSERT, plain INSERT tried before merging) against
their edge cases, on every backend: a submission sent again in the same run, and values the
database refuses (driver errors raised outside SQLAlchemy must still be one clear SinkError)."""
from __future__ import annotations

import hashlib

import pytest
from exporter.connectors.sql import create_sink

from exporter.errors import SinkError
from exporter.model import Checkpoint, Media, MediaRef
from exporter.records import parse_submission

from .records_fixture import FORM_ID, account_records, ctx, form, media_for, run_export, submission

TABLE = "visite_de_chantier_1001"
CHILD = TABLE + "__lignes"
PAYLOAD = b"\x89PNG fake image"


def sink_for(db, **opts):
    return create_sink(db.url, {**db.options, **opts})


def _stream_with_resend(f):
    """Submissions 1, 2, 3, then 2 again, edited: a field changed, one sub-form row fewer (and
    its media), the photo replaced by another one."""
    recs: list = [*account_records(), f]
    for sid in ("1", "2", "3"):
        s = submission(f, sid, rows=2)
        recs += [s, *media_for(s)]
    edited = submission(f, "2", nom="Durand", rows=1, update="2024-03-02 08:00:00",
                        extra={"photo": {"value": "p2b.jpg"}, "quantite": {"value": "7"}})
    assert {m.name for m in edited.media} == {"p2b.jpg", "v2_0.jpg"}
    recs += [edited, *media_for(edited), Checkpoint(f.id, "2024-03-02 08:00:00")]
    return recs


@pytest.mark.parametrize("batch", [3, 4, 1000], ids=["batches-of-3", "batches-of-4", "one-batch"])
def test_submission_sent_twice_in_one_run(db, batch):
    f = form()
    run_export(sink_for(db), _stream_with_resend(f), batch=batch)
    rows = {r["submission_id"]: r for r in db.rows(TABLE)}
    assert sorted(rows) == ["1", "2", "3"]
    assert rows["2"]["nom"] == "Durand" and rows["2"]["photo"] == "p2b.jpg"
    assert float(rows["2"]["quantite"]) == 7
    assert str(rows["2"]["update_time"]) == "2024-03-02 08:00:00"
    assert rows["1"]["nom"] == rows["3"]["nom"] == "Dupont"
    kids = [(k["submission_id"], k["row_index"], k["article"], k["vue"]) for k in db.rows(CHILD)]
    assert kids == [("1", 0, "art0", "v1_0.jpg"), ("1", 1, "art1", "v1_1.jpg"),
                    ("2", 0, "art0", "v2_0.jpg"),
                    ("3", 0, "art0", "v3_0.jpg"), ("3", 1, "art1", "v3_1.jpg")]
    media = {(m["submission_id"], m["name"]): m for m in db.rows("media")}
    assert sorted(media) == [("1", "p1.jpg"), ("1", "v1_0.jpg"), ("1", "v1_1.jpg"),
                             ("2", "p2b.jpg"), ("2", "v2_0.jpg"),
                             ("3", "p3.jpg"), ("3", "v3_0.jpg"), ("3", "v3_1.jpg")]
    m = media[("2", "v2_0.jpg")]
    assert (m["subform"], m["row_index"], m["field"]) == ("lignes", 0, "vue")
    assert m["sha256"] == hashlib.sha256(PAYLOAD + b"v2_0.jpg").hexdigest()
    assert create_sink(db.url, db.options).load_state() == {FORM_ID: "2024-03-02 08:00:00"}


def test_submission_sent_twice_then_rerun_is_stable(db):
    f = form()
    run_export(sink_for(db), _stream_with_resend(f), batch=4)
    first = {t: db.rows(t) for t in (TABLE, CHILD, "media")}
    run_export(sink_for(db), _stream_with_resend(f), run="20240303T100000Z", batch=5)
    assert {t: db.rows(t) for t in (TABLE, CHILD, "media")} == first


def _fails_cleanly(db, bad_records, table: str, words: tuple[str, ...]) -> SinkError:
    f = form()
    good = submission(f, "1")
    sink = sink_for(db)
    sink.open(ctx())
    try:
        sink.write([f])
        sink.commit()
        with pytest.raises(SinkError) as ei:
            sink.write([good, *media_for(good), *bad_records, Checkpoint(f.id, "2024-03-01 10:00:00")])
    finally:
        sink.close(False)
    msg = str(ei.value)
    assert "\n" not in msg and table in msg, msg
    assert any(w in msg.lower() for w in words), msg
    assert db.rows(TABLE) == [] and db.rows(CHILD) == [] and db.rows("media") == []
    assert create_sink(db.url, db.options).load_state() == {}
    return ei.value


def test_value_out_of_range_is_a_clear_error(db):
    """A media size beyond BIGINT: every database refuses it, each driver in its own way (raw
    COPY / executemany cursors raise driver errors SQLAlchemy never sees)."""
    f = form()
    sub = submission(f, "2")
    ref = sub.media[0]
    huge = Media(ref, "image/jpeg", lambda: None, size=1 << 70, sha256="0" * 64)
    _fails_cleanly(db, [sub, huge], "media", ("range", "overflow", "too large", "numeric", "bigint", "value"))


def test_nul_in_a_text_is_refused_by_postgresql_and_kept_elsewhere(db):
    """PostgreSQL texts cannot hold NUL: COPY and psycopg refuse it, psqlODBC would silently cut
    the text at the NUL, so the sink refuses it first. SQLite and MariaDB keep it."""
    f = form()
    bad = parse_submission(f, {"id": "9", "update_time": "2024-03-01 10:00:00",
                               "fields": {"nom": {"value": "nul \x00 inside"}}})
    if db.kind.startswith("postgresql"):
        err = _fails_cleanly(db, [bad], TABLE, ("0x00", "nul"))
        assert "\x00" not in str(err)
    else:
        run_export(sink_for(db), [f, bad, Checkpoint(f.id, "2024-03-01 10:00:00")])
        assert [r["nom"] for r in db.rows(TABLE)] == ["nul \x00 inside"]


def test_text_without_a_utf8_form_is_a_clear_error(db):
    """A lone surrogate (valid in JSON as an escape) has no UTF-8 form: the driver fails to
    encode it before the server sees it; still one clear error naming the table."""
    f = form()
    bad = parse_submission(f, {"id": "9", "update_time": "2024-03-01 10:00:00",
                               "fields": {"nom": {"value": "lone surrogate \udcff"}}})
    _fails_cleanly(db, [bad], TABLE, ("surrogate", "encode", "utf"))


def test_media_without_its_submission_in_the_batch_is_written(db):
    """Media records whose submission came in an earlier batch or run are written as they come."""
    f = form()
    s = submission(f, "1")
    run_export(sink_for(db), [f, s, Checkpoint(f.id, None)])
    late = Media.spooled(MediaRef(f.id, "1", "photo", "p1.jpg"), "image/jpeg", iter([b"x"]))
    run_export(sink_for(db), [f, late], run="20240302T100000Z")
    assert [(m["submission_id"], m["name"], m["size"]) for m in db.rows("media")] == [("1", "p1.jpg", 1)]
