"""The files sink: layout, atomic publication, re-runs, hostile names, incremental runs."""
import hashlib

import pytest
from exporter.connectors.archive.reader import ArchiveReader
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.files import FilesSink, create_sink

from exporter.model import Checkpoint, Media, MediaRef
from exporter.pipeline import new_run_id, run
from exporter.records import parse_form, parse_submission
from exporter.sinks import RunContext


def ctx(mode="full", formats=("json", "csv")):
    return RunContext(run_id=new_run_id(), source="test", mode=mode, formats=formats)


def tree(root):
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_full_export_layout_and_media(sample_archive, tmp_path):
    out = tmp_path / "o"
    summary = run(ArchiveSource(sample_archive), [create_sink(f"file://{out}", {})], ctx())
    assert summary.counts["submission"] == 50
    form_dir = out / "forms" / "1001-Inspection de chantier"
    for name in ("form.json", "submissions.csv", "submissions.jsonl", "subform-defauts.csv"):
        assert (form_dir / name).is_file(), name
    # every media of the archive is there, byte for byte, under its submission
    reader = ArchiveReader(sample_archive)
    n = 0
    for f in ("1001", "1002"):
        for m in reader.media_index(f):
            forms = {"1001": "1001-Inspection de chantier", "1002": "1002-Bon de livraison"}
            p = out / "forms" / forms[f] / "media" / m["submission_id"] / m["name"]
            assert hashlib.sha256(p.read_bytes()).hexdigest() == m["sha256"]
            n += 1
    assert n > 50
    assert not [p for p in out.rglob("*.partial")]
    assert set(FilesSink(out).load_state()) == {"1001", "1002", "1003"}  # kept in its store


def test_rerun_gives_identical_files(sample_archive, tmp_path):
    out = tmp_path / "o"
    run(ArchiveSource(sample_archive), [FilesSink(out)], ctx())
    first = tree(out)
    media = next(out.rglob("*.jpg"))
    mtime = media.stat().st_mtime_ns
    run(ArchiveSource(sample_archive), [FilesSink(out)], ctx())
    assert tree(out) == first
    assert media.stat().st_mtime_ns == mtime  # identical media are not rewritten


def test_failed_run_publishes_nothing(sample_archive, tmp_path):
    out = tmp_path / "o"

    class Dies(ArchiveSource):
        def records(self, state=None):
            for r in super().records(state):
                if r.kind == "submission" and r.id == "800003":
                    raise OSError("network gone")
                yield r

    with pytest.raises(OSError):
        run(Dies(sample_archive), [FilesSink(out)], ctx())
    names = {p.name for p in out.rglob("*") if p.is_file()}
    assert not any(n.endswith((".csv", ".jsonl", ".partial")) for n in names)
    assert ".exporter-state.json" not in names  # state did not advance


def test_incremental_run_keeps_the_full_tables(sample_archive, tmp_path):
    out = tmp_path / "o"
    run(ArchiveSource(sample_archive), [FilesSink(out)], ctx())
    full_csv = (out / "forms" / "1003-Relevé de compteur" / "submissions.csv").read_bytes()
    c = ctx(mode="cursor")
    run(ArchiveSource(sample_archive, mode="cursor"), [FilesSink(out)], c)
    assert (out / "forms" / "1003-Relevé de compteur" / "submissions.csv").read_bytes() == full_csv
    assert not (out / "forms" / "1003-Relevé de compteur" / "runs").exists()  # deltas only on request


HOSTILE_FORM = {"id": "../../x", "name": "../../evil/CON", "fields": {
    "../f": {"type": "photo", "caption": "<b>"}, "t": {"type": "text"}}}


def test_hostile_names_stay_inside(tmp_path):
    form = parse_form(HOSTILE_FORM)
    names = ["../../../../etc/passwd", "/abs.jpg", "..\\..\\win.jpg", "CON", "x" * 300 + ".jpg", "a:b*?.png"]
    sub = parse_submission(form, {"id": "../1", "fields": {"../f": {"value": ", ".join(names)},
                                                             "t": {"value": "=cmd|' /C calc'!A0"}}})
    recs = [form, sub] + [Media.spooled(MediaRef(form.id, sub.id, "../f", n), "image/jpeg", iter([n.encode()]))
                          for n in names] + [Checkpoint(form.id, None)]

    class Src:
        description = "hostile"

        def records(self, state):
            return iter(recs)

        def acknowledge(self, b):
            pass

        def close(self):
            pass

    out = tmp_path / "o"
    run(Src(), [FilesSink(out)], ctx())
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(out.resolve() in p.resolve().parents for p in files)
    media = [p for p in files if "media" in p.parts]
    assert len(media) == len(names)
    assert {p.read_bytes().decode() for p in media} == set(names)
    assert all(len(p.name.encode()) <= 255 for p in files)


def test_nothing_grows_with_the_number_of_files(sample_archive, tmp_path):
    sink = FilesSink(tmp_path / "o")
    run(ArchiveSource(sample_archive), [sink], ctx())
    assert sink.out.published == []  # nobody reads them here: not kept
    assert len(sink._media_done) <= 4  # one submission's media at most
