"""Every key the service sends is kept, in every destination (issue 16): submission metadata
beyond ``META_KEYS`` (``_transform_status``, ``_pull_time``, ``_user_ref1..20``... and whatever
a later API version adds), user keys beyond ``USER_KEYS`` (``is_admin``, ``store_validator``,
``user_ref1..20``), group keys beyond ``GROUP_KEYS``, values of fields the definition does not
know, keys of sub-form rows the sub-form does not know, structured values of a field whose type
the model does not know, and external-list keys beyond ``LIST_KEYS`` (an item served as an object
is kept as its JSON text). Known keys are typed columns; the rest goes, unchanged, into one
JSON ``_extra`` cell (CSV, XLSX) / ``extra_keys`` column (SQL) / ``<extra>`` element (XML) /
``extra`` object (JSON), read back from an archive replay the same."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from exporter.connectors.archive.sink import ArchiveSink

from exporter.cli import cli
from exporter.model import Account, Checkpoint
from exporter.pipeline import new_run_id
from exporter.records import parse_form, parse_group, parse_list, parse_submission, parse_user
from exporter.sinks import RunContext
from tests.connectors.conftest_kizeo import EXTRA_GROUP, EXTRA_META, EXTRA_USER, GROUPS, TOKEN, USERS, serve

pytestmark = pytest.mark.network

FORM = {"id": "61", "name": "Nouveautés", "update_time": "2026-05-01 00:00:00",
        "fields": {"titre": {"caption": "Titre", "type": "text"},
                   "trace": {"caption": "Tracé", "type": "drawing_v9"},  # a type the model does not know
                   "lignes": {"caption": "Lignes", "type": "subform",
                              "fields": {"forme": {"type": "shape_3d"}}}}}

TRACE = {"points": [[1, 2], [3.5, -4]], "couleur": "bleu"}
NESTED = {"id": "500", "record_number": "1", "form_id": "61", "user_id": "7",
          "create_time": "2026-05-01 08:00:00", "update_time": "2026-05-01 09:00:00", **EXTRA_META,
          "fields": {"titre": {"value": "Été"}, "trace": {"value": TRACE, "type": "drawing_v9"},
                     "lignes": {"value": [{"forme": {"value": {"cube": 2}}, "couleur": {"value": "rouge"}}]},
                     "ancien": {"value": "champ retiré", "type": "text"}}}
FLAT = {"_id": "501", "_record_number": "2", "_form_id": "61", "_user_id": "7",
        "_create_time": "2026-05-02 08:00:00", "_update_time": "2026-05-02 09:00:00",
        "_pull_time": "2026-05-03 00:00:00", "_user_ref1": "à plat", "_v4_key": [1, 2],
        "titre": "Plat", "trace": ["a", "b"], "lignes": [{"forme": "x"}, {"forme": "y", "poids": 3}],
        "ancien": "aussi retiré"}

#: what the model reads of NESTED / FLAT goes to typed columns; the rest is this, as served
WANT_EXTRA = {
    "500": {**EXTRA_META, "fields": {"ancien": "champ retiré"}, "subforms": {"lignes": {"0": {"couleur": "rouge"}}}},
    "501": {"pull_time": "2026-05-03 00:00:00", "user_ref1": "à plat", "v4_key": [1, 2],
            "fields": {"ancien": "aussi retiré"}, "subforms": {"lignes": {"1": {"poids": 3}}}},
}
#: list keys the model does not read (``LIST_KEYS``), served by /lists/{id}/complete
EXTRA_LIST = {"nb_items": 3, "filters": [{"col": 1, "val": "B"}], "is_advanced": False, "future": {"a": None}}
LISTS = [{"id": "910", "name": "Étages", "class": "", "update_time": "2026-01-02 00:00:00", **EXTRA_LIST,
          "items": ["Bas:B", {"label": "Haut", "code": "H", "couleur": "rouge"}, 7]},
         {"id": "911", "name": "Sans clé", "items": ["x"]}]
WANT_LIST_EXTRA = {"910": EXTRA_LIST, "911": None}
WANT_LINES = {"910": ["Bas:B", '{"code":"H","couleur":"rouge","label":"Haut"}', "7"], "911": ["x"]}
WANT_USER_EXTRA = {"7": EXTRA_USER, "8": None}
WANT_GROUP_EXTRA = {"1": EXTRA_GROUP, "2": None}


def _build(path: Path) -> Path:
    sink = ArchiveSink(path)
    sink.open(RunContext(run_id=new_run_id(), source="fixture"))
    sink.write([Account(source="fixture", raw={"source": "fixture"})])
    sink.write([parse_user(u) for u in USERS])
    sink.write([parse_group(g) for g in GROUPS])
    sink.write([parse_list(x) for x in LISTS])
    form = parse_form(FORM)
    sink.write([form, parse_submission(form, NESTED), parse_submission(form, FLAT), Checkpoint(form.id, None)])
    sink.commit()
    sink.close(True)
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("extra") / "arch")


def _export(source: str, *args: str) -> None:
    r = CliRunner().invoke(cli, ["export", "-s", source, "--token-env", "KZ_TOKEN", *args],
                           env={"KZ_TOKEN": TOKEN}, catch_exceptions=False)
    assert r.exit_code == 0, r.output


def _one(root: Path, name: str) -> Path:
    found = sorted(root.rglob(name))
    assert len(found) == 1, (name, found)
    return found[0]


def _loads(text):
    return None if text in (None, "") else json.loads(text)


def test_parsing_keeps_every_unknown_key_whichever_the_shape():
    form = parse_form(FORM)
    nested, flat = parse_submission(form, NESTED), parse_submission(form, FLAT)
    assert nested.extra == WANT_EXTRA["500"] and flat.extra == WANT_EXTRA["501"]
    # a structured value of an unknown type: its JSON text, not nothing
    assert json.loads(nested.text["trace"]) == TRACE and nested.values["trace"] == nested.text["trace"]
    assert flat.text["trace"] == '["a","b"]'
    assert json.loads(nested.subforms["lignes"][0].text["forme"]) == {"cube": 2}
    assert parse_user(USERS[0]).extra == EXTRA_USER and parse_user(USERS[1]).extra == {}
    assert parse_group(GROUPS[0]).extra == EXTRA_GROUP and parse_group(GROUPS[1]).extra == {}
    assert {x["id"]: parse_list(x).extra or None for x in LISTS} == WANT_LIST_EXTRA
    assert {x["id"]: list(parse_list(x).items) for x in LISTS} == WANT_LINES


def _check_files(out: Path) -> None:
    with open(_one(out, "submissions.csv"), encoding="utf-8-sig", newline="") as fh:
        rows = {r["_id"]: r for r in csv.DictReader(fh)}
    assert {sid: _loads(r["_extra"]) for sid, r in rows.items()} == WANT_EXTRA
    assert json.loads(rows["500"]["trace"]) == TRACE
    with open(_one(out, "users.csv"), encoding="utf-8-sig", newline="") as fh:
        assert {r["id"]: _loads(r["_extra"]) for r in csv.DictReader(fh)} == WANT_USER_EXTRA
    with open(_one(out, "groups.csv"), encoding="utf-8-sig", newline="") as fh:
        assert {r["id"]: _loads(r["_extra"]) for r in csv.DictReader(fh)} == WANT_GROUP_EXTRA
    with open(_one(out, "lists.csv"), encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["id"]: _loads(r["_extra"]) for r in rows} == WANT_LIST_EXTRA
    assert {r["id"]: int(r["items"]) for r in rows} == {k: len(v) for k, v in WANT_LINES.items()}
    with open(_one(out, "list_items.csv"), encoding="utf-8-sig", newline="") as fh:
        items = list(csv.DictReader(fh))
    assert {lid: [r["line"] for r in items if r["list_id"] == lid] for lid in WANT_LINES} == WANT_LINES

    import openpyxl

    wb = openpyxl.load_workbook(_one(out, "users.xlsx"), read_only=True)
    header, *data = [list(r) + [None] * 40 for r in wb.worksheets[0].iter_rows(values_only=True)]
    assert {r[0]: _loads(r[header.index("_extra")]) for r in data} == WANT_USER_EXTRA
    wb.close()
    wb = openpyxl.load_workbook(_one(out, "groups.xlsx"), read_only=True)
    header, *data = [list(r) + [None] * 40 for r in wb["groups"].iter_rows(values_only=True)]
    assert {r[0]: _loads(r[header.index("_extra")]) for r in data} == WANT_GROUP_EXTRA
    wb.close()

    wb = openpyxl.load_workbook(_one(out, "lists.xlsx"), read_only=True)
    header, *data = [list(r) + [None] * 10 for r in wb["lists"].iter_rows(values_only=True)]
    assert {r[0]: _loads(r[header.index("_extra")]) for r in data} == WANT_LIST_EXTRA
    wb.close()

    wb = openpyxl.load_workbook(_one(out, "submissions.xlsx"), read_only=True)
    ws = wb.worksheets[0]
    header, *data = [list(r) + [None] * 40 for r in ws.iter_rows(values_only=True)]
    i, j = header.index("_id"), header.index("_extra")
    assert {r[i]: _loads(r[j]) for r in data} == WANT_EXTRA
    wb.close()

    from lxml import etree

    xml = _one(out, "submissions.xml")
    ns = {"x": "urn:exporter:forms:1"}
    doc = etree.parse(str(xml))
    got = {s.get("id"): _loads(s.findtext("x:extra", namespaces=ns)) for s in doc.iterfind(".//x:submission", ns)}
    assert got == WANT_EXTRA
    schema = etree.XMLSchema(etree.parse(str(Path(__file__).parents[2] / "formats" / "exporter-forms.xsd")))
    schema.assertValid(doc)

    lines = [json.loads(x) for x in _one(out, "submissions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {d["id"]: d["extra"] or None for d in lines} == WANT_EXTRA
    users = json.loads(_one(out, "users.json").read_text(encoding="utf-8"))
    users = users if isinstance(users, list) else users["users"]
    assert {u["id"]: u["extra"] or None for u in users} == WANT_USER_EXTRA
    groups = json.loads(_one(out, "groups.json").read_text(encoding="utf-8"))
    groups = groups if isinstance(groups, list) else groups["groups"]
    assert {g["id"]: g["extra"] or None for g in groups} == WANT_GROUP_EXTRA
    for lid, want in WANT_LIST_EXTRA.items():
        doc = json.loads(next((out / "lists").glob(f"{lid}-*.json")).read_text(encoding="utf-8"))
        assert (doc["extra"] or None) == want and [i["line"] for i in doc["items"]] == WANT_LINES[lid]


def test_files_keep_every_key_the_service_sends(archive, tmp_path):
    with serve(archive) as srv:
        _export(srv.base_url, "--to", str(tmp_path / "out"), "--format", "csv,xlsx,xml,json")
    _check_files(tmp_path / "out")


def test_an_archive_replay_keeps_every_key(archive, tmp_path):
    with serve(archive) as srv:
        _export(srv.base_url, "--to", f"archive://{tmp_path / 'copy'}")
    served = [json.loads(x) for x in next((tmp_path / "copy").rglob("submissions.jsonl")).read_text("utf-8").splitlines()]
    assert any("user_ref20" in s or "_user_ref20" in s for s in served)
    _export(str(tmp_path / "copy"), "--to", str(tmp_path / "out"), "--format", "csv,xlsx,xml,json")
    _check_files(tmp_path / "out")



def test_the_files_store_round_trips_the_extra_keys():
    from exporter.connectors.files_store import decode_submission, encode_submission

    form = parse_form(FORM)
    for raw in (NESTED, FLAT):
        sub = parse_submission(form, raw)
        back = decode_submission(encode_submission(sub))
        assert back.extra == sub.extra and back.extra
        assert encode_submission(back) == encode_submission(sub)
    # a store written before the extra keys were kept: read as none
    old = json.loads(encode_submission(parse_submission(form, FLAT)))[:7]
    assert decode_submission(json.dumps(old)).extra == {}
