"""The files destination keeps each form's aggregates current across incremental runs (issue 15):
edits replace rows, new submissions are added, the result equals a fresh full export of the same
data, a run that changes nothing writes nothing, per-run deltas only on request."""
import copy
import hashlib
import json
import shutil
import subprocess
import sys

import openpyxl
from click.testing import CliRunner
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.files import FilesSink
from exporter.connectors.files_store import STORE_PATH, FormStore

from exporter.cli import cli
from exporter.pipeline import new_run_id, run
from exporter.sinks import RunContext
from exporter.testing.fake_server import FakeKizeoServer

TOKEN = "tok-current-0123456789"
FORMATS = "json,csv,xlsx,xml"
FORM = "forms/1001-Inspection de chantier"


def export(srv, out, *args):
    r = CliRunner().invoke(cli, ["-q", "export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--to", str(out),
                                 "--format", FORMATS, *args], env={"KZ_TOKEN": TOKEN}, catch_exceptions=False)
    assert r.exit_code == 0, r.output


def aggregates(root):
    """Every aggregate file of every form: relative path -> comparable content (bytes; for XLSX
    the cells of every sheet, the workbook's creation time being no part of the data)."""
    out = {}
    for p in sorted((root / "forms").rglob("*")):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or "/submissions/" in rel or "/media/" in rel or rel.endswith("form.json"):
            continue
        if p.suffix == ".xlsx":
            wb = openpyxl.load_workbook(p, read_only=True)
            out[rel] = {ws.title: [tuple(c.value for c in row) for row in ws.iter_rows()] for ws in wb.worksheets}
            wb.close()
        else:
            out[rel] = p.read_bytes()
    return out


def stamps(root):
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


def edit(srv, form_id, sid, new_id=None, **fields):
    nested = copy.deepcopy(srv.store.submissions(form_id)[sid])
    if new_id:
        nested["id"] = new_id
        nested["record_number"] = str(int(nested["record_number"]) + 1000)
    nested["update_time"] = "2026-06-01 12:00:00"
    for name, value in fields.items():
        nested["fields"][name]["value"] = value
    srv.put_submission(form_id, nested)


def test_incremental_runs_keep_aggregates_equal_to_a_full_export(sample_archive, tmp_path):
    out, ref = tmp_path / "out", tmp_path / "ref"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, out)
        subs = list(srv.store.submissions("1001"))
        # an edit (a value and the sub-form rows), a new submission, an edit in another form
        edit(srv, "1001", subs[3], site="Chantier modifié", defauts=[])
        edit(srv, "1001", subs[0], new_id="799999", site="Nouveau chantier")
        edit(srv, "1002", next(iter(srv.store.submissions("1002"))), new_id="899999")
        export(srv, out, "--incremental", "cursor")
        # a second incremental run with one more edit
        edit(srv, "1001", subs[5], site="Deuxième modification")
        export(srv, out, "--incremental", "cursor")
        export(srv, ref)  # a fresh full export of the final data
        got, want = aggregates(out), aggregates(ref)
        assert set(got) == set(want)
        assert any(k.endswith(".xlsx") for k in got) and any(k.endswith("subform-defauts.csv") for k in got)
        for k in want:
            assert got[k] == want[k], k
        for k in want:  # every format byte for byte (no file carries the time it was written)
            assert (out / k).read_bytes() == (ref / k).read_bytes(), k
        csv = (out / FORM / "submissions.csv").read_bytes().decode("utf-8")
        assert "Deuxième modification" in csv and "Nouveau chantier" in csv and "799999" in csv
        assert csv.count(f"\r\n{subs[3]},") == 1  # the edited row replaced, not added
        assert not (out / FORM / "runs").exists()  # no per-run folder unless asked

        # nothing changed on the service: no file is written again, the store included
        before = stamps(out)
        export(srv, out, "--incremental", "cursor")
        after = stamps(out)
        assert after == before
        assert (out / FORM / "submissions.xlsx").stat().st_mtime_ns == before[f"{FORM}/submissions.xlsx"][0]


def test_deltas_on_request_hold_only_what_changed(sample_archive, tmp_path):
    out = tmp_path / "out"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, out)
        export(srv, out, "--incremental", "cursor", "-o", "deltas=true")  # the overlap re-reads rows: none changed
        assert not (out / FORM / "runs").exists()
        sid = list(srv.store.submissions("1001"))[2]
        edit(srv, "1001", sid, site="Delta")
        export(srv, out, "--incremental", "cursor", "-o", "deltas=true")
        (run_dir,) = (out / FORM / "runs").iterdir()
        rows = (run_dir / "submissions.csv").read_text("utf-8").splitlines()
        assert len(rows) == 2 and rows[1].startswith(f"{sid},") and "Delta" in rows[1]
        assert not (out / "forms" / "1002-Bon de livraison" / "runs").exists()  # form without changes
        assert "Delta" in (out / FORM / "submissions.csv").read_text("utf-8")  # and the current table too


def test_a_full_run_drops_what_the_service_no_longer_has(sample_archive, tmp_path):
    out = tmp_path / "out"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, out)
        gone = list(srv.store.submissions("1001"))[1]
        del srv.store.submissions("1001")[gone]
        export(srv, out)
        assert f"\r\n{gone}," not in (out / FORM / "submissions.csv").read_bytes().decode("utf-8")
        assert gone not in (out / FORM / "submissions.jsonl").read_text("utf-8")


def ctx(mode="full", formats=("json", "csv")):
    return RunContext(run_id=new_run_id(), source="test", mode=mode, formats=formats)


def test_other_formats_rebuild_every_form(sample_archive, tmp_path):
    out = tmp_path / "o"
    run(ArchiveSource(sample_archive), [FilesSink(out)], ctx())
    assert not list(out.rglob("*.xlsx"))
    run(ArchiveSource(sample_archive, mode="cursor"), [FilesSink(out)], ctx("cursor", ("json", "csv", "xlsx")))
    assert (out / FORM / "submissions.xlsx").is_file()  # the forms had not changed, the formats had
    assert FormStore.cursors(out / STORE_PATH).keys() == {"1001", "1002", "1003"}


def test_store_rows_come_back_in_id_order_whatever_their_arrival(tmp_path):
    from exporter.connectors.files_store import sort_key

    ids = ["10", "9", "0100", "abc", "2", "100", "Z"]
    assert sorted(ids, key=sort_key) == ["2", "9", "10", "0100", "100", "Z", "abc"]


def test_same_bytes_leave_a_file_untouched(tmp_path):
    from exporter.fsutil import atomic_write

    p = tmp_path / "f"
    p.write_bytes(b"abc")
    ino = p.stat().st_ino
    with atomic_write(p, keep_same=True) as fh:
        fh.write(b"abc")
    assert p.stat().st_ino == ino and not list(tmp_path.glob(".*partial"))
    with atomic_write(p, keep_same=True) as fh:
        fh.write(b"abd")
    assert p.read_bytes() == b"abd"


def test_store_gives_back_equal_records(sample_archive):
    import datetime as dt
    from decimal import Decimal

    from exporter.connectors.files_store import decode_form, decode_submission, encode_form, encode_submission

    from exporter.model import GeoPoint, MediaRef, SubformRow, Submission

    def same(a, b):  # repr: Decimal("1.50") stays 1.50, NaN stays NaN (which equals nothing)
        assert repr((a.form_id, a.id, a.meta, a.values, a.text, a.subforms, a.media)) == \
            repr((b.form_id, b.id, b.meta, b.values, b.text, b.subforms, b.media))

    hostile = Submission("1", "\ud800x", {"update_time": "2026-01-01 00:00:00", "email": None},
                         {"n": Decimal("1.50"), "nan": Decimal("NaN"), "big": Decimal("1E+400"), "b": False,
                          "d": dt.date(1, 1, 1), "t": dt.time(23, 59, 59, 999999, tzinfo=dt.UTC),
                          "dt": dt.datetime(2026, 3, 1, 10, 0, 0, 5), "g": GeoPoint(-0.0, 1e-300),
                          "m": ("a.jpg", "b\u2028.jpg"), "s": "=1+1\x00\r\n", "none": None},
                         {"n": "1,50", "s": None},
                         {"rows": [SubformRow(0, {"x": Decimal("-0")}, {"x": "-0"})]},
                         (MediaRef("1", "\ud800x", "m", "a.jpg"), MediaRef("1", "\ud800x", "m", "b", "rows", 0)))
    same(decode_submission(encode_submission(hostile)), hostile)
    assert encode_submission(decode_submission(encode_submission(hostile))) == encode_submission(hostile)
    for r in ArchiveSource(sample_archive).records({}):
        if r.kind == "form":
            back = decode_form(encode_form(r))
            assert (back.id, back.name, back.fields, back.class_, back.update_time, back.options, back.raw) == \
                (r.id, r.name, r.fields, r.class_, r.update_time, r.options, r.raw)
        elif r.kind == "submission":
            same(decode_submission(encode_submission(r)), r)


def test_unread_pages_of_one_form_make_one_table(sample_archive, tmp_path):
    """Unread mode closes each page of a form with a checkpoint, and more of the form follows."""
    from exporter.connectors.kizeo import KizeoClient, StaticToken
    from exporter.connectors.kizeo.source import WebSource

    out = tmp_path / "o"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        src = WebSource(KizeoClient(StaticToken(TOKEN), base_url=srv.base_url), mode="unread", action="a",
                        unread_limit=7, workers=1)
        summary = run(src, [FilesSink(out)], ctx("unread", ("json", "csv", "xlsx", "xml")))
        assert summary.counts["submission"] == 50 and len(srv.marked) > 3
        rows = (out / FORM / "submissions.csv").read_bytes().decode("utf-8").split("\r\n")[1:-1]
        assert sorted(r.split(",")[0] for r in rows) == sorted(srv.store.submissions("1001"))


def test_a_store_killed_mid_commit_is_rolled_back_when_read(tmp_path):
    import subprocess
    import sys

    path = tmp_path / STORE_PATH
    store = FormStore(path)
    store.begin()
    store.db.execute("INSERT INTO forms (form_id, definition, checkpointed, cursor) VALUES ('1', '[]', 1, 'c1')")
    store.commit()
    store.close()
    # a process writes a big transaction (spilled to the file, so a journal is left) and dies
    code = (f"import os, sqlite3; db = sqlite3.connect({str(path)!r}, isolation_level=None); "
            "db.execute('PRAGMA cache_size=1'); db.execute('BEGIN'); "
            "[db.execute('INSERT INTO meta VALUES (?, ?)', (str(i), 'x' * 500)) for i in range(3000)]; "
            "db.execute(\"UPDATE forms SET cursor = 'c2'\"); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert path.with_name(path.name + "-journal").exists()
    assert FilesSink(tmp_path).load_state() == {"1": "c1"}


def test_a_bad_deltas_value_is_refused_before_anything_is_created(sample_archive, tmp_path):
    r = CliRunner().invoke(cli, ["export", "-s", str(sample_archive), "--to", str(tmp_path / "o"),
                                 "-o", "deltas=maybe"])
    assert r.exit_code == 2 and "deltas" in r.output
    assert not (tmp_path / "o").exists()


def test_an_aggregate_removed_by_hand_comes_back_on_the_next_run(sample_archive, tmp_path):
    out = tmp_path / "out"
    run(ArchiveSource(sample_archive), [FilesSink(out)], ctx(formats=("json", "csv", "xml")))
    (out / FORM / "submissions.csv").unlink()
    (out / FORM / "subform-defauts.csv").unlink()
    (out / "exporter-forms.xsd").unlink()
    kept = stamps(out)
    run(ArchiveSource(sample_archive, mode="cursor"), [FilesSink(out)], ctx("cursor", ("json", "csv", "xml")))
    assert (out / FORM / "submissions.csv").is_file() and (out / FORM / "subform-defauts.csv").is_file()
    assert (out / "exporter-forms.xsd").is_file()
    after = stamps(out)
    assert {k for k in kept if kept[k] != after[k]} <= {STORE_PATH}  # no other file rewritten


def test_an_account_changed_since_the_last_run_is_in_every_aggregate(sample_archive, tmp_path):
    # the same data re-exported from a newer snapshot: a fresh export would carry its exported_at
    out, ref, newer = tmp_path / "out", tmp_path / "ref", tmp_path / "newer"
    shutil.copytree(sample_archive, newer)
    manifest = newer / "manifest.json"
    data = json.loads(manifest.read_text("utf-8"))
    data["exported_at"] = "2031-01-01T00:00:00Z"
    manifest.write_text(json.dumps(data), "utf-8")
    run(ArchiveSource(sample_archive), [FilesSink(out)], ctx(formats=("xml",)))
    run(ArchiveSource(newer), [FilesSink(out)], ctx(formats=("xml",)))
    run(ArchiveSource(newer), [FilesSink(ref)], ctx(formats=("xml",)))
    assert 'exported_at="2031-01-01T00:00:00Z"' in (out / FORM / "submissions.xml").read_text("utf-8")
    assert aggregates(out) == aggregates(ref)


def test_a_second_export_into_a_folder_being_written_is_refused_in_one_line(sample_archive, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(  # another live run writing into the folder
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from exporter.fsutil import claim; "
         "claim(Path(sys.argv[1])); print('ready', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        r = CliRunner().invoke(cli, ["-q", "export", "-s", str(sample_archive), "--to", str(out), "--format", FORMATS])
        assert r.exit_code == 1, r.output
        assert "another export" in r.output and str(holder.pid) in r.output and len(r.output.strip().splitlines()) == 1
        assert [p.name for p in out.iterdir() if not p.name.startswith(".exporter-run.")] == []  # nothing written
    finally:
        holder.kill()
        holder.wait()
    r = CliRunner().invoke(cli, ["-q", "export", "-s", str(sample_archive), "--to", str(out), "--format", FORMATS])
    assert r.exit_code == 0, r.output  # the holder is dead: its marker is swept


def renamed_copy(archive, dest, form_id, old, new):
    """A copy of ``archive`` where form ``form_id`` is called ``new`` (its manifest kept true)."""
    shutil.copytree(archive, dest)
    manifest = json.loads((dest / "manifest.json").read_text("utf-8"))
    for rel in ("forms.jsonl", f"forms/{form_id}/form.json"):
        p = dest / rel
        p.write_text(p.read_text("utf-8").replace(old, new), "utf-8")
        if rel in manifest["files"]:
            data = p.read_bytes()
            manifest["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (dest / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    return dest


def test_a_form_renamed_on_the_service_takes_its_folder_along(sample_archive, tmp_path):
    out, ref = tmp_path / "out", tmp_path / "ref"
    renamed = renamed_copy(sample_archive, tmp_path / "renamed", "1001", "Inspection de chantier", "Inspections")
    run(ArchiveSource(sample_archive), [FilesSink(out)], ctx())
    run(ArchiveSource(renamed, mode="cursor"), [FilesSink(out)], ctx("cursor"))
    run(ArchiveSource(renamed), [FilesSink(ref)], ctx())
    assert not (out / FORM).exists()  # no stale copy of the form under its old name
    new = "forms/1001-Inspections"
    assert aggregates(out) == aggregates(ref)
    files = sorted(p.relative_to(ref).as_posix() for p in (ref / new).rglob("*") if p.is_file())
    assert any("/media/" in f for f in files) and any("/submissions/" in f for f in files)
    assert sorted(p.relative_to(out).as_posix() for p in (out / new).rglob("*") if p.is_file()) == files
