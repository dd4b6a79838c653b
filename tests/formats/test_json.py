import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from exporter.formats.base import OutputDir, get_writer_class
from exporter.formats.json_writer import JsonWriter

from exporter.model import GeoPoint
from tests.formats.conftest import (
    BAD_FIELD,
    CONTROL,
    DOTDOT_FIELD,
    FORM_ID,
    LONE_SURROGATE,
    LONG_TEXT,
    RAW_FORM,
    abandon_writer,
    run_writer,
)


def _expected(value):
    """The JSON form of a typed value, computed independently of the writer."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, GeoPoint):
        return {"lat": value.latitude, "lon": value.longitude}
    return value


def _form_dir(root: Path) -> Path:
    (d,) = [p for p in (root / "forms").iterdir() if p.name.startswith(FORM_ID)]
    return d


def test_registry_finds_json():
    assert get_writer_class("json") is JsonWriter
    assert JsonWriter.limits.per_submission_files


def test_jsonl_round_trip(dataset, tmp_path):
    run_writer(JsonWriter, tmp_path, {}, dataset.records())
    fdir = _form_dir(tmp_path)
    lines = (fdir / "submissions.jsonl").read_bytes().decode("utf-8").splitlines()
    assert len(lines) == len(dataset.submissions)
    for line, sub in zip(lines, dataset.submissions, strict=False):
        doc = json.loads(line)
        assert doc["id"] == sub.id and doc["form_id"] == FORM_ID
        assert doc["meta"] == sub.meta
        assert doc["text"] == sub.text  # original text of every value, exactly
        for f in dataset.form.value_fields():
            got, want = doc["values"][f.name], sub.values[f.name]
            if f.kind == "media" and want is not None:
                assert [m["name"] for m in got] == list(want)
                for m in got:  # relative to the JSONL file, pointing where the files sink puts media
                    target = (fdir / m["path"]).resolve()
                    assert target.parent.name == sub.id and target.parent.parent.name == "media"
                    assert fdir.resolve() in target.parents
            else:
                assert got == _expected(want), f.name
        for sf in dataset.form.subforms():
            rows = doc["subforms"][sf.name]
            assert [r["index"] for r in rows] == [r.index for r in sub.subforms[sf.name]]
            for got_row, row in zip(rows, sub.subforms[sf.name], strict=False):
                assert got_row["text"] == row.text
                for c in sf.children:
                    if c.has_value and c.kind != "media":
                        assert got_row["values"][c.name] == _expected(row.values[c.name])


def test_hostile_values_survive(dataset, tmp_path):
    run_writer(JsonWriter, tmp_path, {}, dataset.records())
    fdir = _form_dir(tmp_path)
    docs = {d["id"]: d for d in map(json.loads, (fdir / "submissions.jsonl").open(encoding="utf-8"))}
    assert docs["1002"]["values"]["comment"] == LONG_TEXT and len(LONG_TEXT) == 40000
    assert docs["1002"]["values"][BAD_FIELD] == CONTROL
    assert docs["1003"]["values"][BAD_FIELD] == LONE_SURROGATE  # written as \ud83d, read back the same
    assert docs["1003"]["values"]["amount"] == "12345678901234567890.123456789"  # no float rounding
    assert docs["1001"]["values"]["amount"] == "-5"
    assert docs["1002"]["values"]["amount"] is None and docs["1002"]["text"]["amount"] == "12,345.67x"
    assert docs["1001"]["values"]["where"] == {"lat": 48.8584, "lon": 2.2945}
    assert docs["1001"]["values"]["done"] is True and docs["1003"]["values"]["done"] is False
    assert docs["1001"]["values"][DOTDOT_FIELD] == "traversal value"
    # every file is valid UTF-8, nothing escaped the output directory
    for p in tmp_path.rglob("*"):
        assert tmp_path.resolve() in p.resolve().parents
        if p.is_file():
            p.read_bytes().decode("utf-8")
    assert not any(p.name.endswith(".partial") for p in tmp_path.rglob("*"))


def test_per_submission_files_and_definitions(dataset, tmp_path):
    run_writer(JsonWriter, tmp_path, {}, dataset.records())
    fdir = _form_dir(tmp_path)
    files = sorted(p.name for p in (fdir / "submissions").iterdir())
    assert files == ["1001.json", "1002.json", "1003.json"]
    doc = json.loads((fdir / "submissions" / "1001.json").read_text("utf-8"))
    assert doc["values"]["name"] == "Alice"
    photo = doc["values"]["photo"][0]
    assert photo["path"] == "../media/1001/photo_1.jpg"  # relative to the submissions/ folder
    assert doc["subforms"]["lines"][0]["values"]["pic"] == [{"name": "row0.jpg", "path": "../media/1001/row0.jpg"}]
    assert {m["name"] for m in doc["media"]} == {"photo_1.jpg", "photo 2 é.png", "sig.png", "row0.jpg"}
    assert json.loads((fdir / "form.json").read_text("utf-8")) == RAW_FORM

    users = json.loads((tmp_path / "users.json").read_text("utf-8"))
    assert [u["id"] for u in users] == ["11", "12"] and users[0]["admin"] is True
    assert users[1]["login"] == '=HYPERLINK("x")'
    groups = json.loads((tmp_path / "groups.json").read_text("utf-8"))
    assert groups[0]["users"] == ["11", "12"] and groups[0]["leaders"] == ["11"]
    assert groups[1]["parent_id"] == "5"
    (l77,) = (tmp_path / "lists").glob("77-*.json")
    lst = json.loads(l77.read_text("utf-8"))
    assert [i["line"] for i in lst["items"]] == list(dataset.lists[0].items)
    assert lst["items"][2]["levels"] == [[{"label": "Région A", "code": "RA"}],
                                         [{"label": "Ville 1", "code": "V1"}, {"label": "Extra", "code": None}]]
    (l78,) = (tmp_path / "lists").glob("78-*.json")  # "../../escape" stays inside lists/
    assert l78.parent == tmp_path / "lists"


def test_empty_form_and_empty_account(tmp_path, dataset):
    run_writer(JsonWriter, tmp_path, {}, [dataset.account, dataset.empty_form])
    assert (tmp_path / "forms" / "900-Empty form" / "submissions.jsonl").read_text() == ""
    assert json.loads((tmp_path / "users.json").read_text()) == []
    assert json.loads((tmp_path / "groups.json").read_text()) == []


def test_incremental_run_goes_to_run_folder(dataset, tmp_path):
    run_writer(JsonWriter, tmp_path, {}, dataset.records(), run_id="20240510T120000", incremental=True)
    fdir = _form_dir(tmp_path)
    jsonl = fdir / "runs" / "20240510T120000" / "submissions.jsonl"
    doc = json.loads(jsonl.read_text("utf-8").splitlines()[0])
    assert doc["values"]["photo"][0]["path"] == "../../media/1001/photo_1.jpg"
    assert (fdir / jsonl.parent / doc["values"]["photo"][0]["path"]).resolve() == \
        (fdir / "media" / "1001" / "photo_1.jpg").resolve()


def test_failed_run_leaves_nothing_pending(dataset, tmp_path):
    recs = list(dataset.records())
    abandon_writer(JsonWriter, tmp_path, {}, recs[:12])
    assert not list(tmp_path.rglob("*.jsonl")) and not list(tmp_path.rglob("*.partial"))
    assert not (tmp_path / "users.json").exists()


def test_submission_before_form_is_an_error(dataset, tmp_path):
    from exporter.errors import FormatError

    w = JsonWriter(OutputDir(tmp_path), {})
    with pytest.raises(FormatError, match="1001"):
        w.write(dataset.submissions[0])


def test_every_writer_follows_the_protocol(tmp_path):
    from exporter.formats.base import FormatLimits, FormatWriter

    for key in ("json", "csv", "xlsx", "xml"):
        cls = get_writer_class(key)
        assert cls.key == key and cls.description and isinstance(cls.limits, FormatLimits)
        assert isinstance(cls(OutputDir(tmp_path / key), {}), FormatWriter)


def test_account_file_records_source_and_timezone(tmp_path):
    import json

    from exporter.formats.base import OutputDir
    from exporter.formats.json_writer import JsonWriter

    from exporter.model import Account

    out = OutputDir(tmp_path, run_id="r1")
    w = JsonWriter(out, {})
    w.write(Account(source="https://forms.example/rest/v3", timezone="Europe/Paris", exported_at="x"))
    w.close(True)
    out.publish_all()
    assert json.loads((tmp_path / "account.json").read_text()) == {
        "source": "https://forms.example/rest/v3", "timezone": "Europe/Paris"}
