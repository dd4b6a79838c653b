import json
import shutil
import zipfile

import pytest
from exporter.connectors.archive.reader import ArchiveReader
from exporter.connectors.archive.sink import ArchiveSink
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.archive.verify import verify

from exporter.errors import ArchiveError, NotFoundError
from exporter.pipeline import new_run_id, run
from exporter.sinks import RunContext


def _ctx():
    return RunContext(run_id=new_run_id(), source="test")


def test_sample_data_verifies(sample_archive):
    assert verify(sample_archive) == []
    m = ArchiveReader(sample_archive).manifest
    c = m["counts"]
    assert c["forms"] >= 3 and 40 <= c["submissions"] <= 60 and c["media"] > 0
    assert c["users"] >= 5 and c["groups"] >= 3 and c["lists"] == 2
    forms = [json.loads(line) for line in open(sample_archive / "forms.jsonl")]
    defs = [json.load(open(sample_archive / "forms" / f["id"] / "form.json")) for f in forms]
    assert any(any(fd.get("type") == "subform" for fd in d["fields"].values()) for d in defs)
    media = [json.loads(line) for f in forms if (sample_archive / "forms" / f["id"] / "media.jsonl").exists()
             for line in open(sample_archive / "forms" / f["id"] / "media.jsonl")]
    kinds = {m["content_type"] for m in media}
    assert {"image/jpeg", "image/png"} <= kinds
    groups = [json.loads(line) for line in open(sample_archive / "groups.jsonl")]
    assert any(g.get("parent_group_id") for g in groups)  # nested groups


def test_a_replayed_submission_keeps_its_line_and_decodes_it_when_read(sample_archive):
    """A replayed submission holds its archive line (one bytes object, not the payload's dicts);
    ``raw`` gives the decoded payload, the same as a submission parsed from the payload itself."""
    from exporter.records import parse_form, parse_submission

    reader = ArchiveReader(sample_archive)
    subs = {r.id: r for r in ArchiveSource(sample_archive).records({}) if r.kind == "submission"}
    seen = 0
    for f in reader.forms_index():
        form = parse_form(reader.form_raw(str(f["id"])))
        for line, payload in reader.submissions_lines(form.id):
            sub = subs[str(payload["id"])]
            assert line in vars(sub).values()  # held as the line, not yet decoded
            assert sub.raw == json.loads(line) == payload
            assert sub == parse_submission(form, payload)
            seen += 1
    assert seen == len(subs) > 0


@pytest.mark.parametrize("name", ["copy", "copy.zip"])
def test_round_trip_gives_identical_manifest_hashes(sample_archive, tmp_path, name):
    out = tmp_path / name
    summary = run(ArchiveSource(sample_archive), [ArchiveSink(out)], _ctx())
    assert summary.counts["submission"] == ArchiveReader(sample_archive).manifest["counts"]["submissions"]
    assert verify(out) == []
    assert ArchiveReader(out).files() == ArchiveReader(sample_archive).files()
    # and once more from the copy (zip -> dir or dir -> dir)
    out2 = tmp_path / "again"
    run(ArchiveSource(out), [ArchiveSink(out2)], _ctx())
    assert ArchiveReader(out2).files() == ArchiveReader(sample_archive).files()


def test_verify_names_every_difference(sample_archive, tmp_path):
    copy = tmp_path / "a"
    shutil.copytree(sample_archive, copy)
    sub = copy / "forms" / "1001" / "submissions.jsonl"
    sub.write_bytes(sub.read_bytes().replace(b"R\xc3\xa9sidence", b"Residence", 1))
    media = sorted((copy / "forms" / "1002" / "media").rglob("*.png"))[0]
    media.unlink()
    (copy / "stray.txt").write_text("x")
    problems = verify(copy)
    text = "\n".join(problems)
    assert "forms/1001/submissions.jsonl" in text and "mismatch" in text
    assert f"missing file: {media.relative_to(copy).as_posix()}" in text
    assert "file not in manifest: stray.txt" in text


def test_verify_counts_mismatch(sample_archive, tmp_path):
    copy = tmp_path / "a"
    shutil.copytree(sample_archive, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["counts"]["submissions"] += 1
    (copy / "manifest.json").write_text(json.dumps(m))
    assert any(p.startswith("count mismatch: submissions") for p in verify(copy))


def test_failed_run_leaves_no_archive(sample_archive, tmp_path):
    class Boom(Exception):
        pass

    class Failing(ArchiveSource):
        def records(self, state=None):
            for i, r in enumerate(super().records(state)):
                if i == 40:
                    raise Boom("source died")
                yield r

    for name in ("x", "x.zip"):
        with pytest.raises(Boom):
            run(Failing(sample_archive), [ArchiveSink(tmp_path / name)], _ctx())
        assert not (tmp_path / name).exists()
    assert list(tmp_path.iterdir()) == []  # no .partial left behind


def test_unknown_form_and_bad_archives(sample_archive, tmp_path):
    with pytest.raises(NotFoundError, match="unknown form id '999'"):
        ArchiveSource(sample_archive, forms=["999"])
    with pytest.raises(ArchiveError, match="no account archive"):
        ArchiveReader(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchiveError, match="manifest.json"):
        ArchiveReader(tmp_path / "empty")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ArchiveError, match="not a zip"):
        ArchiveReader(tmp_path / "junk.zip")


def test_zip_with_top_folder_is_read(sample_archive, tmp_path):
    z = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sample_archive.rglob("*"):
            if p.is_file():
                zf.write(p, "account/" + p.relative_to(sample_archive).as_posix())
    assert verify(z) == []


def test_cursor_replay_only_newer(sample_archive):
    src = ArchiveSource(sample_archive, forms=["1003"], mode="cursor", overlap_seconds=0)
    all_subs = [r for r in ArchiveSource(sample_archive, forms=["1003"]).records({}) if r.kind == "submission"]
    times = sorted(s.update_time for s in all_subs)
    cursor = times[len(times) // 2]
    newer = [r for r in src.records({"1003": cursor}) if r.kind == "submission"]
    assert newer and all(s.update_time >= cursor for s in newer)
    assert len(newer) == sum(1 for t in times if t >= cursor)
    ck = [r for r in ArchiveSource(sample_archive, forms=["1003"]).records({}) if r.kind == "checkpoint"]
    assert ck[0].cursor == times[-1]


def test_manifest_file_list_is_streamed_not_loaded(sample_archive, tmp_path):
    reader = ArchiveReader(sample_archive)
    assert "files" not in reader.manifest  # the head only: counts, account, format
    entries = list(reader.iter_files())
    on_disk = [p for p in sample_archive.rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert len(entries) == len(on_disk) == len(dict(entries))
    # the sink remembers no media path while writing (it streams entries to a temporary file)
    sink = ArchiveSink(tmp_path / "a")
    run(ArchiveSource(sample_archive), [sink], _ctx())
    assert not any("/media/" in p for p in sink._seen)
    assert len(sink._seen) < 20


def test_manifest_in_another_layout_is_still_read(sample_archive, tmp_path):
    copy = tmp_path / "a"
    shutil.copytree(sample_archive, copy)
    m = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(m, indent=4, sort_keys=True))
    assert verify(copy) == []
    assert ArchiveReader(copy).files() == ArchiveReader(sample_archive).files()


@pytest.mark.parametrize("count", [2, 3])
def test_form_parts_hold_every_submission_and_its_media_once(sample_archive, count):
    from exporter.model import FormPart

    def content(forms):
        out = []
        for r in ArchiveSource(sample_archive).records({}, account=False, forms=forms):
            if r.kind == "submission":
                out.append(("s", r.form_id, r.id))
            elif r.kind == "media":
                out.append(("m", r.ref.form_id, r.ref.submission_id, r.ref.field, r.ref.row, r.ref.name, r.sha256))
        return out

    whole = content(["1001"])
    parts = [content([FormPart("1001", i, count, rows=4)]) for i in range(count)]
    assert sorted(x for p in parts for x in p) == sorted(whole)
    assert all(p for p in parts)  # 4-submission slices dealt round-robin: every part has some
    # slices are dealt in order: part i holds submissions 4i..4i+3, then 4(i+count)...
    subs = [x for x in whole if x[0] == "s"]
    assert [x for x in parts[1] if x[0] == "s"][:4] == subs[4:8]


def _replay(source) -> list:
    """What a source yields, in order (submissions with their typed values, media, checkpoints)."""
    out = []
    for x in source.records({"1003": "2024-01-01 00:00:00"} if source.mode == "cursor" else {}):
        if x.kind == "submission":
            out.append(("s", x.form_id, x.id, repr(x.values), repr(x.subforms)))
        elif x.kind == "media":
            out.append(("m", x.ref, x.content_type, x.size, x.sha256))
        elif x.kind == "checkpoint":
            out.append(("c", x.form_id, x.cursor))
    return out


def test_a_bad_line_is_named(sample_archive, tmp_path):
    copy = tmp_path / "a"
    shutil.copytree(sample_archive, copy)
    subs = copy / "forms" / "1001" / "submissions.jsonl"
    lines = subs.read_bytes().splitlines(keepends=True)
    subs.write_bytes(b"".join([lines[0], b"  \n", lines[1], b'{"id": "x", "bad": tru}\n', *lines[2:]]))
    with pytest.raises(ArchiveError, match=r"forms/1001/submissions.jsonl line 4 is not valid JSON"):
        _replay(ArchiveSource(copy))
    subs.write_bytes(b"".join([lines[0], b"\n", lines[1], *lines[2:]]))  # a blank line is skipped
    assert _replay(ArchiveSource(copy)) == _replay(ArchiveSource(sample_archive))
    media = copy / "forms" / "1001" / "media.jsonl"
    media.write_bytes(b"[1, 2]\n" + media.read_bytes())
    with pytest.raises(ArchiveError, match=r"forms/1001/media.jsonl.* is not a JSON object"):
        _replay(ArchiveSource(copy))


# ---- format versions ------------------------------------------------------------------------------


def _as_version_1(path) -> None:
    """An archive of the current code made one of format version 1: no file v2 added (documents,
    deleted.jsonl) and the manifest's version and counts as version 1 wrote them."""
    assert not [p for p in path.rglob("*") if p.name in ("documents.jsonl", "deleted.jsonl")
                or "documents" in p.parts or "form_pictures" in p.parts]
    m = path / "manifest.json"
    text = m.read_text("utf-8")
    old = ',\n  "documents": 0,\n  "deleted": 0\n },'
    assert '"format_version": 2,' in text and old in text
    m.write_text(text.replace('"format_version": 2,', '"format_version": 1,').replace(old, "\n },"), "utf-8")


def test_an_archive_of_the_previous_format_version_replays_and_verifies(sample_archive, tmp_path):
    v1 = tmp_path / "v1"
    run(ArchiveSource(sample_archive), [ArchiveSink(v1)], _ctx())
    _as_version_1(v1)
    reader = ArchiveReader(v1)
    assert reader.manifest["format_version"] == 1 and "documents" not in reader.manifest["counts"]
    reader.close()
    assert verify(v1) == []
    # replayed: into a current archive (same files, version 2, nothing new), into SQLite and files
    v2 = tmp_path / "v2"
    summary = run(ArchiveSource(v1, vendor_pdf=True, vendor_exports=True), [ArchiveSink(v2)], _ctx())
    assert summary.counts.get("document", 0) == 0 and verify(v2) == []
    r1, r2 = ArchiveReader(v1), ArchiveReader(v2)
    assert r1.files() == r2.files() and r2.manifest["format_version"] == 2
    assert r2.manifest["counts"] == {**r1.manifest["counts"], "documents": 0, "deleted": 0}
    r1.close()
    r2.close()
    from click.testing import CliRunner

    from exporter.cli import cli

    res = CliRunner().invoke(cli, ["export", "-s", str(v1), "--to", f"sqlite:///{tmp_path / 'x.db'}",
                                   "--to", str(tmp_path / "files"), "--vendor-pdf"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "files").rglob("submissions.csv"))) == r1.manifest["counts"]["forms"]


def test_an_archive_of_a_newer_format_version_is_refused(sample_archive, tmp_path):
    copy = tmp_path / "v9"
    shutil.copytree(sample_archive, copy)
    m = copy / "manifest.json"
    m.write_text(m.read_text("utf-8").replace('"format_version": 1,', '"format_version": 9,'), "utf-8")
    with pytest.raises(ArchiveError, match="format version 9 is newer"):
        ArchiveReader(copy)

