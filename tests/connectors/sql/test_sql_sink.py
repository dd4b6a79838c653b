"""The SQL sink against real databases: SQLite, PostgreSQL (COPY and generic paths), MariaDB."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import sqlalchemy as sa
from exporter.connectors.sql import create_sink
from exporter.connectors.sql.columns import lineage_key
from exporter.connectors.sql.rows import media_key

from exporter.errors import SinkError
from exporter.model import Checkpoint
from exporter.records import parse_form, parse_submission

from .conftest import PG_ADMIN
from .records_fixture import (
    FORM_ID,
    account_records,
    ctx,
    form,
    form_payload,
    full_stream,
    media_for,
    run_export,
    submission,
)

TABLE = "visite_de_chantier_1001"
CHILD = TABLE + "__lignes"


def sink_for(db, **opts):
    return create_sink(db.url, {**db.options, **opts})


def snapshot(db, skip=("runs", "export_state", "lineage")) -> dict:
    out = {}
    for t in sorted(db.tables()):
        if t not in skip:
            out[t] = db.rows(t)
    return out


def test_full_export(db):
    run_export(sink_for(db), full_stream())
    tables = db.tables()
    for t in ("users", "user_groups", "group_members", "lists", "list_items", "forms", "media", "lineage",
              "runs", "export_state", TABLE, CHILD):
        assert t in tables
    rows = db.rows(TABLE)
    assert [r["submission_id"] for r in rows] == ["1", "2", "3"]
    r = rows[0]
    assert r["nom"] == "Dupont"
    assert Decimal(str(r["quantite"])) == Decimal("12.5")
    assert r["jour"] == dt.date(2024, 2, 29)
    assert r["heure"] == dt.time(8, 30)
    assert r["quand"] == dt.datetime(2024, 2, 29, 8, 30, 15)
    assert r["valide"] in (True, 1)
    assert float(r["position_lat"]) == pytest.approx(45.18) and float(r["position_lon"]) == pytest.approx(5.72)
    assert r["photo"] == "p1.jpg"
    assert r["create_time"] == dt.datetime(2024, 3, 1, 9, 0)
    assert r["record_number"] == "1" and r["user_id"] == "u1"
    assert r["unparsed_text"] is None
    assert "titre" not in db.columns(TABLE)  # layout fields hold no value
    kids = db.rows(CHILD)
    assert [(k["submission_id"], k["row_index"], k["article"]) for k in kids][:2] == [("1", 0, "art0"), ("1", 1, "art1")]
    assert len(kids) == 6
    media = db.rows("media", order="name")
    assert len(media) == 9
    assert {m["name"] for m in media if m["subform"] == "lignes"} >= {"v1_0.jpg", "v1_1.jpg"}
    assert all(m["size"] and len(m["sha256"]) == 64 for m in media)
    members = {(m["group_id"], m["user_id"], m["role"]) for m in db.rows("group_members")}
    assert members == {("g1", "u1", "member"), ("g1", "u2", "member"), ("g1", "u1", "leader")}
    items = db.rows("list_items")
    assert (items[0]["line"], items[0]["l1_label"], items[0]["l1_code"], items[0]["l1_c2_label"],
            items[0]["l2_label"], items[0]["l2_code"]) == ("Vis:V1|Acier:AC\\M6:6", "Vis", "V1", "Acier", "M6", "6")
    assert items[2]["l1_label"] == "plain" and items[2]["l1_code"] is None
    assert db.rows("users")[0]["admin"] in (True, 1)
    lineage = {(x["field_name"], x["part"]): x for x in db.rows("lineage") if x["object"] == "column"}
    assert lineage[("quantite", "value")]["column_name"] == "quantite"
    assert lineage[("quantite", "value")]["caption"] == "Quantité"
    assert lineage[("position", "lat")]["column_name"] == "position_lat"
    assert lineage[("article", "value")]["table_name"] == CHILD
    runs = db.rows("runs")
    assert runs[0]["status"] == "ok" and runs[0]["submissions"] == 3 and runs[0]["media"] == 9
    state = create_sink(db.url, db.options).load_state()
    assert state == {FORM_ID: "2024-03-01 10:00:00"}


def test_rerun_gives_identical_tables(db):
    run_export(sink_for(db), full_stream())
    first = snapshot(db)
    run_export(sink_for(db), full_stream(), run="20240302T100000Z", batch=7)
    assert snapshot(db) == first
    assert len(db.rows("runs")) == 2


def test_media_keys_and_keys_written_by_an_earlier_version(db):
    run_export(sink_for(db), full_stream())
    media = db.rows("media")
    # keys are "<form>/<submission>/<16 hex>": a load appends to the index instead of scattering
    assert all(m["media_key"].startswith(f"{m['form_id']}/{m['submission_id']}/") and len(m["media_key"].split("/")[2]) == 16
               for m in media)
    assert len({m["media_key"] for m in media}) == len(media) == 9
    # an earlier version keyed media by the whole sha256: re-running replaces those rows (the
    # submissions already exist, so their media rows are deleted first), never duplicates them
    with db.engine().begin() as c:
        t = sa.Table("media", sa.MetaData(schema=db.schema), autoload_with=c)
        for m in media:
            old = lineage_key(m["form_id"], m["submission_id"], m["subform"] or "",
                              "" if m["row_index"] is None else str(m["row_index"]), m["field"], m["name"])
            c.execute(t.update().where(t.c.media_key == m["media_key"]).values(media_key=old))
    assert all(len(m["media_key"]) == 64 for m in db.rows("media"))
    run_export(sink_for(db), full_stream(), run="20240302T100000Z")
    again = db.rows("media")
    assert sorted(m["media_key"] for m in again) == sorted(m["media_key"] for m in media)


def test_media_key_falls_back_to_the_whole_hash():
    assert media_key("1001", "42", None, None, "photo", "a.jpg").startswith("1001/42/")
    assert media_key("1001", "42", "rows", 0, "photo", "a.jpg") != media_key("1001", "42", "rows", 1, "photo", "a.jpg")
    long_id = "x" * 60
    assert media_key("1001", long_id, None, None, "photo", "a.jpg") == lineage_key("1001", long_id, "", "", "photo", "a.jpg")
    assert len(media_key("1001", "été", None, None, "photo", "a.jpg")) == 64  # not ASCII: SQL Server's VARCHAR


def test_edited_submission_replaces_row_and_all_children(db):
    f = form()
    run_export(sink_for(db), full_stream(f))
    edited = submission(f, "2", nom="Durand", rows=1, update="2024-03-05 12:00:00")
    run_export(sink_for(db), [f, edited, *media_for(edited), Checkpoint(f.id, "2024-03-05 12:00:00")],
               run="20240305T120000Z")
    rows = {r["submission_id"]: r for r in db.rows(TABLE)}
    assert rows["2"]["nom"] == "Durand" and rows["1"]["nom"] == "Dupont"
    kids = [k for k in db.rows(CHILD) if k["submission_id"] == "2"]
    assert [k["row_index"] for k in kids] == [0]
    assert len([k for k in db.rows(CHILD) if k["submission_id"] == "1"]) == 2
    names = sorted(m["name"] for m in db.rows("media") if m["submission_id"] == "2")
    assert names == ["p2.jpg", "v2_0.jpg"]
    assert create_sink(db.url, db.options).load_state() == {FORM_ID: "2024-03-05 12:00:00"}


def test_schema_evolution_adds_keeps_and_never_converts(db):
    f1 = form()
    run_export(sink_for(db), full_stream(f1, n=1))
    # new field, removed field (jour), and quantite changes from number to text
    f2 = form(extra_fields={"commentaire": {"type": "textarea"}}, drop=("jour",), retype={"quantite": "text"})
    s = parse_submission(f2, {"id": "9", "fields": {"nom": {"value": "Neuf"}, "quantite": {"value": "beaucoup"},
                                                     "commentaire": {"value": "ajouté"}}})
    s1_again = parse_submission(f2, {"id": "1", "fields": {"nom": {"value": "Dupont"}, "quantite": {"value": "12,5"}}})
    run_export(sink_for(db), [f2, s, s1_again, Checkpoint(f2.id, None)], run="20240306T000000Z")
    cols = db.columns(TABLE)
    assert "commentaire" in cols and "jour" in cols and "quantite" in cols and "quantite__text" in cols
    rows = {r["submission_id"]: r for r in db.rows(TABLE)}
    assert rows["9"]["commentaire"] == "ajouté" and rows["9"]["quantite__text"] == "beaucoup"
    assert rows["9"]["quantite"] is None and rows["9"]["jour"] is None
    # the old typed values stay where they were
    assert Decimal(str(rows["1"]["quantite"])) == Decimal("12.5")
    assert rows["1"]["jour"] == dt.date(2024, 2, 29)
    assert rows["1"]["quantite__text"] == "12,5"
    lineage = {(x["field_name"], x["sql_type"]): x["status"] for x in db.rows("lineage") if x["object"] == "column"}
    assert lineage[("quantite", "number")] == "retyped"
    assert lineage[("quantite", "text")] == "active"
    assert lineage[("jour", "date")] == "removed"
    # the field comes back with its first type: its first column is reused, nothing renamed
    f3 = form()
    run_export(sink_for(db), [f3, submission(f3, "10")], run="20240307T000000Z")
    assert Decimal(str({r["submission_id"]: r for r in db.rows(TABLE)}["10"]["quantite"])) == Decimal("12.5")
    lineage = {(x["field_name"], x["sql_type"]): x["status"] for x in db.rows("lineage") if x["object"] == "column"}
    assert lineage[("quantite", "number")] == "active" and lineage[("quantite", "text")] == "retyped"
    assert lineage[("jour", "date")] == "active"


HOSTILE = {
    "select": {"type": "text"},
    "order": {"type": "number"},
    'quote"d': {"type": "text"},
    "semi;colon--": {"type": "text"},
    "back`tick]": {"type": "text"},
    "Name": {"type": "text"},
    "name": {"type": "text"},
    "x" * 70: {"type": "text"},
    "x" * 69 + "y": {"type": "text"},
    "Température °C": {"type": "number"},
    "日本語": {"type": "text"},
    "submission_id": {"type": "text"},
    "unparsed_text": {"type": "text"},
}


def test_hostile_names_and_values(db):
    f = parse_form({"id": "7; DROP TABLE users", "name": 'Robert"); DROP TABLE forms;--', "fields": HOSTILE})
    huge = "é" * (1 << 20)
    values = {
        "select": {"value": "Robert'); DROP TABLE users;--"}, "order": {"value": "1e3"},
        'quote"d': {"value": 'a "quoted" \\ back\\slash\ttab\nnewline'}, "semi;colon--": {"value": huge},
        "back`tick]": {"value": "🙂 emoji"}, "Name": {"value": "upper"}, "name": {"value": "lower"},
        "x" * 70: {"value": "long1"}, "x" * 69 + "y": {"value": "long2"},
        "Température °C": {"value": "-3,5"}, "日本語": {"value": "こんにちは"},
        "submission_id": {"value": "field, not key"}, "unparsed_text": {"value": "field too"},
    }
    s = parse_submission(f, {"id": "1", "fields": values})
    run_export(sink_for(db), [f, s, Checkpoint(f.id, "x")])
    lineage = {x["field_name"]: x for x in db.rows("lineage") if x["object"] == "column"}
    table = lineage["select"]["table_name"]
    cols = {x["field_name"]: x["column_name"] for x in lineage.values()}
    assert len({c.lower() for c in cols.values()}) == len(HOSTILE)
    limit = create_sink(db.url, db.options).capabilities.max_identifier_length
    assert all(len(c) <= limit for c in cols.values())
    assert cols["select"] == "select_" and cols["order"] == "order_"
    assert cols["Name"].lower() != cols["name"].lower()
    assert cols["submission_id"] != "submission_id" and cols["unparsed_text"] != "unparsed_text"
    row = db.rows(table)[0]
    assert row["submission_id"] == "1"
    assert row[cols["select"]] == "Robert'); DROP TABLE users;--"
    assert Decimal(str(row[cols["order"]])) == 1000
    assert row[cols['quote"d']] == 'a "quoted" \\ back\\slash\ttab\nnewline'
    assert row[cols["semi;colon--"]] == huge
    assert row[cols["back`tick]"]] == "🙂 emoji"
    assert {row[cols["Name"]], row[cols["name"]]} == {"upper", "lower"}
    assert row[cols["x" * 70]] == "long1" and row[cols["x" * 69 + "y"]] == "long2"
    assert Decimal(str(row[cols["Température °C"]])) == Decimal("-3.5")
    assert row[cols["日本語"]] == "こんにちは"
    assert row[cols["submission_id"]] == "field, not key"
    assert {"users", "forms"} <= db.tables()
    assert create_sink(db.url, db.options).load_state() == {"7; DROP TABLE users": "x"}


def test_unparsable_values_keep_their_text(db):
    f = form()
    s = submission(f, "1", extra={"quantite": {"value": "douze"}, "jour": {"value": "31/02/2024"},
                                  "heure": {"value": "25h"}, "valide": {"value": "peut-être"},
                                  "position": {"value": "nowhere"}, "quand": {"value": "hier"}})
    run_export(sink_for(db), [f, s])
    row = db.rows(TABLE)[0]
    assert row["quantite"] is None and row["jour"] is None and row["valide"] is None
    assert row["position_lat"] is None and row["position_lon"] is None
    assert json.loads(row["unparsed_text"]) == {"quantite": "douze", "jour": "31/02/2024", "heure": "25h",
                                                "valide": "peut-être", "position": "nowhere", "quand": "hier"}
    too_precise = submission(f, "2", extra={"quantite": {"value": "1.123456789012345"}})
    huge = submission(f, "3", extra={"quantite": {"value": "1" * 70}})
    run_export(sink_for(db), [f, too_precise, huge], run="20240302T000000Z")
    rows = {r["submission_id"]: r for r in db.rows(TABLE)}
    if db.kind != "sqlite":
        assert json.loads(rows["2"]["unparsed_text"]) == {"quantite": "1.123456789012345"}
        assert rows["3"]["quantite"] is None
        assert json.loads(rows["3"]["unparsed_text"]) == {"quantite": "1" * 70}


def test_failed_batch_rolls_back_and_state_does_not_advance(db):
    f = form()
    run_export(sink_for(db), full_stream(f))
    before = snapshot(db, skip=("runs",))
    other = parse_form({"id": "2002", "name": "Autre", "fields": {"a": {"type": "text"}}})
    bad = parse_submission(other, {"id": "z" * 300, "fields": {"a": {"value": "x"}}})
    edited = submission(f, "1", nom="NE DOIT PAS RESTER", rows=0, update="2024-04-01 00:00:00")
    sink = sink_for(db)
    sink.open(ctx("20240401T000000Z"))
    sink.write([f])
    sink.commit()
    with pytest.raises(SinkError) as ei:
        sink.write([*account_records()[:1], other, edited, Checkpoint(f.id, "2024-04-01 00:00:00"), bad])
    assert "submission id" in str(ei.value)
    sink.close(False)
    after = snapshot(db, skip=("runs",))
    for t in after:  # the form's own bookkeeping may be refreshed; data and state must not move
        if t not in ("lineage", "forms") and not t.startswith("autre"):
            assert after[t] == before[t], t
    assert {r["submission_id"]: r["nom"] for r in db.rows(TABLE)}["1"] == "Dupont"
    assert create_sink(db.url, db.options).load_state() == {FORM_ID: "2024-03-01 10:00:00"}
    assert [r["status"] for r in db.rows("runs", order="run_id")] == ["ok", "failed"]


def test_close_not_ok_discards_pending_batch(db):
    f = form()
    sink = sink_for(db)
    sink.open(ctx())
    sink.write([f])
    sink.commit()
    sink.write([submission(f, "1"), Checkpoint(f.id, "2024-03-01 10:00:00")])
    sink.close(False)
    assert db.rows(TABLE) == []
    assert create_sink(db.url, db.options).load_state() == {}


def test_incompatible_table_of_the_same_name(db):
    q = "`" if db.kind.startswith("mysql") else '"'
    name = f"{db.schema}.{TABLE}" if db.schema else TABLE
    qualified = ".".join(f"{q}{p}{q}" for p in name.split("."))
    db.execute(f"CREATE TABLE {qualified} (submission_id INTEGER, other_thing INTEGER)")
    sink = sink_for(db)
    sink.open(ctx())
    with pytest.raises(SinkError) as ei:
        sink.write(full_stream(n=1))
    sink.close(False)
    msg = str(ei.value)
    assert TABLE in msg and "incompatible" in msg
    assert db.rows("users") == [] and db.rows("forms") == []
    assert [x for x in db.rows("lineage") if x["form_id"] == FORM_ID] == []


def test_wide_form_is_split_into_continuation_tables(db):
    fields = {f"champ_{i:03d}": {"type": "number" if i % 2 else "text"} for i in range(60)}
    f = parse_form({"id": "55", "name": "Large", "fields": fields})
    s = parse_submission(f, {"id": "1", "fields": {k: {"value": str(i)} for i, k in enumerate(fields)}})
    run_export(sink_for(db, max_columns=40), [f, s])
    parts = sorted(t for t in db.tables() if t.startswith("large_55"))
    assert parts == ["large_55", "large_55_p2", "large_55_p3"]
    assert all(len(db.columns(p)) <= 40 for p in parts)
    merged = {}
    for p in parts:
        (row,) = db.rows(p)
        assert row["submission_id"] == "1"
        merged.update(row)
    assert merged["champ_000"] == "0" and Decimal(str(merged["champ_059"])) == 59
    # a new field later goes to the last part with room, existing columns never move
    f2 = parse_form({"id": "55", "name": "Large", "fields": {**fields, "ajout": {"type": "text"}}})
    run_export(sink_for(db, max_columns=40), [f2, parse_submission(f2, {"id": "2", "fields": {"ajout": {"value": "a"}}})],
               run="20240302T000000Z")
    where = {x["field_name"]: x["table_name"] for x in db.rows("lineage") if x["object"] == "column"}
    assert where["ajout"] == "large_55_p3" and where["champ_000"] == "large_55"


def test_media_bytes_in_database(db, monkeypatch):
    import exporter.connectors.sql.dialects.postgresql as pg

    monkeypatch.setattr(pg, "CHUNK", 1000)  # several appends on PostgreSQL
    f = form()
    s = submission(f, "1", rows=1)
    payload = bytes(range(256)) * 40
    media = media_for(s, payload)
    run_export(sink_for(db, media_in_db=True), [f, s, *media])
    got = {m["name"]: m for m in db.rows("media")}
    for m in media:
        row = got[m.ref.name]
        assert bytes(row["content"]) == payload + m.ref.name.encode()
        assert row["size"] == len(payload) + len(m.ref.name) and row["sha256"] == m.sha256


def test_load_state_on_an_empty_database(db):
    assert create_sink(db.url, db.options).load_state() == {}


def test_stored_plan_is_reused_even_if_the_form_is_renamed(db):
    f = form()
    run_export(sink_for(db), [f, submission(f, "1")])
    renamed = parse_form({**form_payload(), "name": "Tout autre nom"})
    run_export(sink_for(db), [renamed, submission(renamed, "2")], run="20240302T000000Z")
    assert not any(t.startswith("tout_autre") for t in db.tables())
    assert [r["submission_id"] for r in db.rows(TABLE)] == ["1", "2"]


def test_account_timezone_is_recorded_with_the_run(db):
    from exporter.model import Account

    run_export(sink_for(db), [Account(source="https://forms.example/rest/v3", timezone="Europe/Paris"), *full_stream()])
    runs = db.rows("runs")
    assert [r["timezone"] for r in runs] == ["Europe/Paris"]
    assert runs[0]["status"] == "ok"


@pytest.mark.parametrize("extra", [{}, {"loader": "generic"}, {"background_load": True}],
                         ids=["copy", "generic", "copy_background"])
def test_hostile_schema_name_on_postgresql(pg_db, extra):
    # a schema named with %, quotes and a semicolon: every statement, COPY and merges included
    # (a re-run merges), must name it exactly; also those the background thread sends (off by
    # default on PostgreSQL, where this test once ran them by default)
    name = f'exp%s "q\' ;{pg_db.schema[-6:]}'
    admin = sa.create_engine(PG_ADMIN)
    quoted = '"' + name.replace('"', '""') + '"'
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {quoted}".replace("%", "%%"))
    try:
        opts = {"schema": name, **extra}
        for run in ("20240301T100000Z", "20240302T100000Z"):
            run_export(create_sink(pg_db.url, opts), full_stream(n=3), run=run)
        with admin.connect() as c:
            n = c.exec_driver_sql(f"SELECT count(*) FROM {quoted}.media".replace("%", "%%")).scalar()
            runs = c.exec_driver_sql(f"SELECT count(*) FROM {quoted}.runs".replace("%", "%%")).scalar()
            insp = sa.inspect(c)
            fks = [fk["referred_table"] for fk in insp.get_foreign_keys(CHILD, schema=name)]
            indexes = [ix["name"] for ix in insp.get_indexes("media", schema=name)]
        assert n == 9 and runs == 2
        assert fks == [TABLE] and indexes == ["ix_media_submission"]  # added at the run's end, in that schema
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {quoted} CASCADE".replace("%", "%%"))
        admin.dispose()


def test_lists_of_new_shapes_in_later_batches_keep_every_split_column(db):
    """Each list in its own batch, each needing more split columns than the one before: the
    columns added earlier in the run keep being written (they were once dropped from the table's
    description when later columns were added, and earlier levels came out NULL)."""
    from exporter.records import parse_list

    lists = [parse_list({"id": "a", "name": "A", "items": ["Un:U1"]}),
             parse_list({"id": "b", "name": "B", "items": ["Deux:D2|Sac:SAC"]}),
             parse_list({"id": "c", "name": "C", "items": ["Trois:T3|Kg:KG\\Sous:S1"]})]
    run_export(sink_for(db), lists, batch=1)
    rows = {r["list_id"]: r for r in db.rows("list_items")}
    assert (rows["a"]["l1_label"], rows["a"]["l1_code"]) == ("Un", "U1")
    assert (rows["b"]["l1_label"], rows["b"]["l1_code"], rows["b"]["l1_c2_label"]) == ("Deux", "D2", "Sac")
    assert (rows["c"]["l1_label"], rows["c"]["l1_c2_code"], rows["c"]["l2_label"], rows["c"]["l2_code"]) == (
        "Trois", "KG", "Sous", "S1")


def test_opening_a_database_that_holds_the_tables_reads_the_catalog_a_few_times(pg_db):
    """Scheduled runs open a database that holds every table already: the shape check reads the
    columns and keys of all the fixed tables at once (``reflects_many``): nine catalog queries in
    all, where asking table by table (existence, columns, key) made fifty-four."""
    run_export(sink_for(pg_db), full_stream())
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sink = sink_for(pg_db)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note)
    try:
        sink.open(ctx("20240302T100000Z"))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", note)
    sink.close(True)
    catalog = [s for s in seen if "pg_catalog" in s]
    assert 0 < len(catalog) <= 12, f"{len(catalog)} catalog queries"
    assert [r["status"] for r in pg_db.rows("runs", order="run_id")] == ["ok", "ok"]
