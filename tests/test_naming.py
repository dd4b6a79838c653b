
import pytest
from exporter.formats.base import OutputDir

from exporter.errors import ConfigError
from exporter.naming import safe_filename, safe_join, shorten_identifier

HOSTILE = ["../../etc/passwd", "/abs/path", "a\\b\\..\\c", "CON", "nul.txt", "com1", "x" * 300, "é" * 300 + ".jpg",
           "", ".", "..", " . ", "a:b*c?d\"e<f>g|h", "tab\tnew\nline", "\x00nul", "trailing. "]


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_filename_is_one_safe_component(name, tmp_path):
    safe = safe_filename(name)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert safe not in (".", "..")
    assert len(safe.encode("utf-8")) <= 255
    assert safe.split(".")[0].upper() not in {"CON", "NUL", "COM1", "PRN", "AUX"}
    p = safe_join(tmp_path, safe)
    assert p.parent == tmp_path.resolve()
    p.write_text("x")  # the file system accepts it


def test_safe_filename_is_stable_and_keeps_distinct_names_distinct():
    names = ["a/b", "a_b", "a\\b", "A/B", "x" * 300, "x" * 299 + "y"]
    safes = [safe_filename(n) for n in names]
    assert len(set(safes)) == len(names)
    assert safes == [safe_filename(n) for n in names]
    assert safe_filename("photo 1.jpg") == "photo 1.jpg"
    assert safe_filename("x" * 300 + ".jpeg").endswith(".jpeg")


def test_safe_join_refuses_escape(tmp_path):
    with pytest.raises(ConfigError):
        safe_join(tmp_path, "..", "x")


def test_output_dir_never_escapes(tmp_path):
    out = OutputDir(tmp_path / "o")
    with pytest.raises(ConfigError):
        out.path("forms/../../x")
    rel = out.media_relpath(__import__("exporter.model", fromlist=["MediaRef"]).MediaRef(
        "../f", "../../s", "photo", "../../../etc/passwd"), "../name")
    p = out.path(rel)
    assert (tmp_path / "o").resolve() in p.parents


def test_output_dir_refuses_a_planted_symlink_that_leads_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = OutputDir(tmp_path / "o")
    out.path("forms/1-a/media/s1/photo.jpg")  # folders known: the next ones below cost a mkdir + lstat
    (tmp_path / "o" / "forms" / "1-a" / "media" / "s2").symlink_to(outside)
    with pytest.raises(ConfigError, match="outside the output directory"):
        out.path("forms/1-a/media/s2/photo.jpg")
    (tmp_path / "o" / "forms" / "2-b").symlink_to(tmp_path / "o" / "forms" / "1-a")  # inside: followed
    p = out.path("forms/2-b/media/s3/photo.jpg")
    assert p.parent == (tmp_path / "o" / "forms" / "1-a" / "media" / "s3").resolve() and p.parent.is_dir()
    assert not any(outside.iterdir())


def test_shorten_identifier_deterministic_and_distinct():
    a = shorten_identifier("x" * 70 + "a", 63)
    b = shorten_identifier("x" * 70 + "b", 63)
    assert len(a) == 63 and len(b) == 63 and a != b
    assert shorten_identifier("short", 63) == "short"
    assert a == shorten_identifier("x" * 70 + "a", 63)


def test_published_files_have_normal_permissions(tmp_path):
    import os
    import stat

    from exporter.fsutil import atomic_write

    with atomic_write(tmp_path / "a.txt", "w", encoding="utf-8") as fh:
        fh.write("x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask
