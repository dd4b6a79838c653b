"""``export --pseudonymise``: one stage between the source and every destination. The same key gives
byte-identical files and equal tables across runs, another key other values; hmac digests are the
documented HMAC-SHA256 and join across users and submissions; dropped fields leave the definition,
the values and their media; rounding; sub-form fields; the archive keeps the data as served unless
--pseudonymise-archive; both payload shapes give the same result; the web service and --jobs too."""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner
from exporter.connectors.archive.reader import ArchiveReader

from exporter.cli import cli
from exporter.model import Account
from exporter.privacy.pseudonymise import Pseudonymiser
from exporter.privacy.spec import parse_spec
from exporter.records import flatten_submission, parse_form, parse_submission
from tests.privacy.conftest import search_files, search_sql, search_sqlite_bytes

KEY_A = "a" * 16 + "0123456789abcdef"
KEY_B = "b" * 16 + "0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
SPEC = ["users=hmac,type:geoloc=round:2,type:signature=drop,type:date=round:month",
        "field:commentaires=hmac,field:photo_defaut=drop,field:cout_estime=hmac,type:datetime=round:month"]
ORIGINAL = ["mdupont", "marie.dupont@example.com", "Marie Dupont", "+33 6 12 34 56 78", "MAT-101",
            "signature_700000.png", "50.752851", "RAS."]


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def export(source, out: Path, key: str, *more) -> None:
    db = f"sqlite:///{out}.db"
    args = [a for s in SPEC for a in ("--pseudonymise", s)]
    r = invoke("-q", "export", "-s", source, "--to", out, "--to", db, "--format", "json,csv,xlsx,xml",
               *args, "--pseudonymise-key-env", "PK", *more, env={"PK": key})
    assert r.exit_code == 0, r.output


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".exporter" not in p.parts}


def tables_of(db: Path) -> dict[str, list]:
    engine = sa.create_engine(f"sqlite:///{db}")
    out = {}
    with engine.connect() as c:
        for name in sa.inspect(c).get_table_names():
            if name not in ("runs", "export_state", "lineage"):  # a run's own times and id
                t = sa.Table(name, sa.MetaData(), autoload_with=c)
                out[name] = sorted(map(tuple, c.execute(sa.select(t))), key=repr)
    engine.dispose()
    return out


def digest(key: str, text: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_same_key_same_bytes_other_key_other_values(sample_archive, tmp_path):
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    export(sample_archive, one, KEY_A)
    export(sample_archive, two, KEY_A)
    export(sample_archive, other, KEY_B)
    a, b, c = files_of(one), files_of(two), files_of(other)
    assert a == b  # byte-identical, every file
    assert tables_of(Path(f"{one}.db")) == tables_of(Path(f"{two}.db"))
    assert a.keys() == c.keys() and a["users.csv"] != c["users.csv"]
    assert tables_of(Path(f"{one}.db"))["users"] != tables_of(Path(f"{other}.db"))["users"]
    # the documented digest, the same for a user and the submissions that copy their columns
    users = list(csv.DictReader(io.StringIO(a["users.csv"].decode())))
    marie = next(u for u in users if u["id"] == "101")
    assert marie["login"] == digest(KEY_A, "mdupont") and marie["email"] == digest(KEY_A, "marie.dupont@example.com")
    assert json.loads(marie["_extra"])["user_ref1"] == digest(KEY_A, "MAT-101")
    subs = list(csv.DictReader(io.StringIO(a["forms/1001-Inspection de chantier/submissions.csv"].decode())))
    first = next(s for s in subs if s["_id"] == "700000")
    assert first["_login"] == marie["login"] and first["_user_name"] == digest(KEY_A, "Marie Dupont")
    assert first["commentaires"] == digest(KEY_A, "RAS.")
    # nothing of the original is left anywhere but where it was asked to stay
    assert search_files(one, ORIGINAL) == []
    assert search_sql(sa.create_engine(f"sqlite:///{one}.db"), None, ORIGINAL) == []
    assert search_sqlite_bytes(Path(f"{one}.db"), ["mdupont", "marie.dupont@example.com"]) == []


def test_drop_round_and_subform_fields(sample_archive, tmp_path):
    out = tmp_path / "out"
    export(sample_archive, out, KEY_A)
    form = out / "forms" / "1001-Inspection de chantier"
    assert "signature" not in json.loads((form / "form.json").read_text("utf-8"))["fields"]
    header = (form / "submissions.csv").read_text("utf-8").splitlines()[0].split(",")
    assert "signature" not in header and "photos" in header
    sub_header = (form / "subform-defauts.csv").read_text("utf-8").splitlines()[0].split(",")
    assert "photo_defaut" not in sub_header and "cout_estime" in sub_header
    media = [p.name for p in (form / "media").rglob("*") if p.is_file()]
    assert media and not any(n.startswith(("signature", "defaut")) for n in media)
    assert not list((out / "forms").glob("1002-*/media/*/sig_client*"))
    docs = {d["id"]: d for d in map(json.loads, (form / "submissions.jsonl").read_text("utf-8").splitlines())}
    first = docs["700000"]
    assert first["values"]["position"] == {"lat": 50.75, "lon": 3.15}
    assert first["text"]["position"] == "50.75,3.15" and first["values"]["date_visite"] == "2026-01-01"
    rows = [r for d in docs.values() for r in d["subforms"]["defauts"]]
    assert rows and all(len(r["values"]["cout_estime"] or "x" * 64) == 64 for r in rows)
    assert all("photo_defaut" not in r["values"] for r in rows)
    delivery = next((out / "forms").glob("1002-*")) / "submissions.jsonl"
    d = json.loads(delivery.read_text("utf-8").splitlines()[0])
    assert d["text"]["livre_le"] == "2026-01-01 00:00"
    with sa.create_engine(f"sqlite:///{out}.db").connect() as c:
        cols = {x["name"] for x in sa.inspect(c).get_columns("inspection_de_chantier_1001")}
        assert "signature" not in cols and "position_lat" in cols
        assert c.exec_driver_sql("SELECT COUNT(*) FROM media WHERE field IN ('signature', 'signature_client', "
                                 "'photo_defaut')").scalar() == 0
        types = {x["name"]: str(x["type"]) for x in sa.inspect(c).get_columns("inspection_de_chantier_1001__defauts")}
        assert "cout_estime" in types and "NUMERIC" not in types["cout_estime"]  # hmac: a text column


def test_the_archive_keeps_the_original_unless_asked(sample_archive, tmp_path):
    kept, changed = tmp_path / "kept", tmp_path / "changed"
    r = invoke("export", "-s", sample_archive, "--to", f"archive://{kept}", "--to", tmp_path / "f",
               "--pseudonymise", "users=hmac,type:signature=drop", "--pseudonymise-key-env", "PK", env={"PK": KEY_A})
    assert r.exit_code == 0, r.output
    assert f"archive {kept} keeps the data as served" in r.output
    assert (kept / "users.jsonl").read_bytes() == (sample_archive / "users.jsonl").read_bytes()
    assert (kept / "forms/1001/submissions.jsonl").read_bytes() == (
        sample_archive / "forms/1001/submissions.jsonl").read_bytes()
    assert search_files(tmp_path / "f", ["mdupont"]) == []
    r = invoke("-q", "export", "-s", sample_archive, "--to", f"archive://{changed}", "--pseudonymise-archive",
               "--pseudonymise", "users=hmac,type:signature=drop", "--pseudonymise-key-env", "PK", env={"PK": KEY_A})
    assert r.exit_code == 0, r.output
    assert invoke("verify", changed).exit_code == 0
    assert search_files(changed, ["mdupont", "Marie Dupont", "signature_700000"]) == []
    reader = ArchiveReader(changed)
    assert next(reader.users_raw())["login"] == digest(KEY_A, "mdupont")
    assert not any(m["field"] == "signature" for m in reader.media_index("1001"))
    reader.close()


def test_both_payload_shapes_give_the_same_records(sample_archive):
    """A submission served nested (GET /data/{id}) or flat (data/advanced) is pseudonymised alike."""
    reader = ArchiveReader(sample_archive)
    form = parse_form(reader.form_raw("1001"))
    raws = list(reader.submissions_raw("1001"))[:5]
    reader.close()
    spec = parse_spec(SPEC, key_env="PK")
    out = {}
    for shape in ("nested", "flat"):
        stage = Pseudonymiser(spec, KEY_A.encode())
        subs = [parse_submission(form, raw if shape == "nested" else flatten_submission(raw)) for raw in raws]
        records = stage.apply([Account(source="x"), form, *subs])
        out[shape] = [(r.values, r.text, r.meta, r.subforms, r.media) for r in records if r.kind == "submission"]
    assert out["nested"] == out["flat"]
    assert out["nested"][0][2]["login"] == digest(KEY_A, "mdupont")


def test_from_the_web_service(sample_archive, tmp_path):
    from exporter.testing.fake_server import FakeKizeoServer

    with FakeKizeoServer(str(sample_archive), "tok-0123456789") as srv:
        r = invoke("-q", "export", "-s", srv.base_url, "--token-env", "TK", "--to", tmp_path / "out",
                   "--pseudonymise", "field:commentaires=drop,users=drop", env={"TK": "tok-0123456789"})
        assert r.exit_code == 0, r.output
        r = invoke("-q", "export", "-s", srv.base_url, "--token-env", "TK", "--to", tmp_path / "x",
                   "--pseudonymise", "field:comments=drop", env={"TK": "tok-0123456789"})
        assert r.exit_code == 2 and "no form of this run has a field 'comments'" in r.output
    assert search_files(tmp_path / "out", ["mdupont", "RAS.", "Marie Dupont"]) == []
    assert not (tmp_path / "x").exists()


def test_parallel_workers_pseudonymise_too(sample_archive, pg_db):
    """``--jobs 2``: each worker process builds the same stage (its key read from the variable)."""
    env = {**os.environ, "PK": KEY_A, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "exporter", "-q", "export", "-s", str(sample_archive), "--jobs", "2",
                          "--to", pg_db.url, "-o", f"schema={pg_db.schema}", "--pseudonymise", "users=hmac",
                          "--pseudonymise-key-env", "PK"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert search_sql(pg_db.engine(), pg_db.schema, ["mdupont", "Marie Dupont", "jmartin"]) == []
    rows = pg_db.rows("inspection_de_chantier_1001")
    assert {r["login"] for r in rows} >= {digest(KEY_A, "mdupont")} and len(rows) == 25
