"""Copying an account archive into a zip as it is (connectors/archive/zipcopy.py, what a backup of
an archive does), and the zips the archive sink writes (same member settings)."""
import shutil
import subprocess
import zipfile

import pytest
from exporter.connectors.archive.reader import ArchiveReader
from exporter.connectors.archive.sink import ArchiveSink
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.archive.verify import verify
from exporter.connectors.archive.zipcopy import copy_to_zip

from exporter.errors import ArchiveError
from exporter.pipeline import new_run_id, run
from exporter.sinks import RunContext
from tests.conftest import require_tool


def _files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _members(z) -> dict[str, bytes]:
    with zipfile.ZipFile(z) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


@pytest.mark.parametrize("whole", [1 << 20, 64])  # 64: every file but the smallest streams in pieces
def test_a_folder_archive_is_copied_byte_for_byte_manifest_last(sample_archive, tmp_path, whole):
    out = tmp_path / "copy.zip"
    n = copy_to_zip(sample_archive, out, whole=whole)
    want = _files(sample_archive)
    assert n == len(want) and _members(out) == want  # the same archive: version, exported_at, hashes
    assert verify(out) == []
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
    assert infos[-1].filename == "manifest.json"
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    kinds = {i.filename.rsplit(".", 1)[-1]: i.compress_type for i in infos}
    assert kinds["jsonl"] == zipfile.ZIP_DEFLATED and kinds["json"] == zipfile.ZIP_DEFLATED
    assert kinds["png"] == zipfile.ZIP_STORED  # compressed already: stored as is
    assert not any(i.flag_bits & 0x08 for i in infos)  # sizes in every local header: readable as a stream
    unzip = require_tool("unzip")  # a standard reader takes it
    subprocess.run([unzip, "-tq", str(out)], check=True, capture_output=True)


def test_a_zip_archive_with_a_top_folder_is_copied_to_the_root(sample_archive, tmp_path):
    wrapped = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(wrapped, "w") as zf:
        for rel, data in _files(sample_archive).items():
            zf.writestr("account/" + rel, data)
    out = tmp_path / "copy.zip"
    copy_to_zip(wrapped, out)
    assert _members(out) == _files(sample_archive) and verify(out) == []


def test_a_missing_file_refuses_the_copy_and_leaves_nothing(sample_archive, tmp_path):
    src = tmp_path / "acc"
    shutil.copytree(sample_archive, src)
    next(p for p in src.rglob("*.png")).unlink()
    out = tmp_path / "copy.zip"
    with pytest.raises(ArchiveError, match="missing from the archive"):
        copy_to_zip(src, out)
    assert not out.exists()
    out.write_bytes(b"x")
    with pytest.raises(ArchiveError, match="exists"):  # never overwritten
        copy_to_zip(sample_archive, out)
    assert out.read_bytes() == b"x"


def test_a_damaged_file_is_copied_as_is_and_caught_by_verify(sample_archive, tmp_path):
    src = tmp_path / "acc"
    shutil.copytree(sample_archive, src)
    png = next(p for p in src.rglob("*.png"))
    png.write_bytes(png.read_bytes() + b"!")
    out = tmp_path / "copy.zip"
    copy_to_zip(src, out)
    assert any(p.startswith("size mismatch: ") and png.name in p for p in verify(out))


def test_the_archive_sinks_zip_stores_media_with_a_fixed_date(sample_archive, tmp_path):
    out = tmp_path / "rewritten.zip"
    run(ArchiveSource(sample_archive), [ArchiveSink(out)], RunContext(run_id=new_run_id(), source="test"))
    assert verify(out) == []
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
    assert infos[-1].filename == "manifest.json" and {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos if i.filename.endswith(".png")} == {zipfile.ZIP_STORED}
    assert {i.compress_type for i in infos if i.filename.endswith(".jsonl")} == {zipfile.ZIP_DEFLATED}
    assert not any(i.flag_bits & 0x08 for i in infos)
    reader = ArchiveReader(out)
    try:  # the same files as the source, manifest aside (a new exported_at, format version 2)
        assert {rel for rel, _ in reader.iter_files()} == set(_files(sample_archive)) - {"manifest.json"}
    finally:
        reader.close()


def test_the_copy_is_the_zip_the_zipfile_version_wrote_and_that_one_still_verifies(sample_archive, tmp_path):
    """Before ``zipwriter`` the copy went through ``zipfile`` (``writestr``, a fixed date, mode 0644,
    media stored): the same bytes now, and a zip written that way reads, verifies and copies."""
    old = tmp_path / "old.zip"
    reader = ArchiveReader(sample_archive)
    try:
        with zipfile.ZipFile(old, "w", allowZip64=True) as zf:
            for rel in [r for r, _ in reader.iter_files() if r != "manifest.json"] + ["manifest.json"]:
                info = zipfile.ZipInfo(rel, (1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED if rel.endswith((".png", ".jpg", ".pdf")) else zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, reader.read_bytes(rel))
    finally:
        reader.close()
    assert verify(old) == []
    new = tmp_path / "new.zip"
    copy_to_zip(sample_archive, new)
    assert new.read_bytes() == old.read_bytes()
    again = tmp_path / "again.zip"
    copy_to_zip(old, again)
    assert again.read_bytes() == old.read_bytes()
