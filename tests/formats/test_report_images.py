"""One media never fails a report: every awkward image of ``image_corpus`` is embedded or listed,
in DOCX and in PDF (``formats.images``: the rule both writers share)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import pytest
from docx.image.exceptions import UnrecognizedImageError
from exporter.formats import images
from exporter.formats.docx_writer import DocxWriter
from exporter.formats.pdf_writer import PdfWriter
from PIL import Image
from pypdf import PdfReader

from exporter.model import Account, Checkpoint, Media
from exporter.records import parse_form, parse_submission
from tests.formats.conftest import run_writer
from tests.formats.image_corpus import CORPUS, jpeg_led_by

FORM = {"id": "42", "name": "Corpus", "fields": {"photos": {"type": "photo", "caption": "Photos"}}}


def corpus_records(names: list[str]):
    form = parse_form(FORM)
    yield Account(source="test://")
    yield form
    sub = parse_submission(form, {"id": "s1", "record_number": "1", "fields": {
        "photos": {"value": ", ".join(names)}}})
    yield sub
    for ref in sub.media:
        ctype, data, _ = CORPUS[ref.name]
        yield Media.spooled(ref, ctype, iter([data]))
    yield Checkpoint(form.id, None)


def _listed(names, lines: list[str]) -> set[str]:
    """The corpus media a report lists as a file, with its size and why it is not shown."""
    out = set()
    for n in names:
        size = f"{len(CORPUS[n][1])} bytes" if len(CORPUS[n][1]) < 1000 else f"{len(CORPUS[n][1]) / 1e3:.1f} kB"
        if any(f"Photos: {n} — ../media/s1/{n} ({CORPUS[n][0]}, {size}, image" in line for line in lines):
            out.add(n)
    return out


NAMES = list(CORPUS)
EMBEDDED = [n for n in NAMES if CORPUS[n][2] == "embedded"]
LISTED = {n for n in NAMES if CORPUS[n][2] == "listed"}


def test_docx_embeds_or_lists_every_media(tmp_path):
    out, _ = run_writer(DocxWriter, tmp_path, {}, corpus_records(NAMES))
    path = tmp_path / next(p for p in out.published if p.suffix == ".docx")
    doc = docx.Document(path)
    assert len(doc.inline_shapes) == len(EMBEDDED)
    with zipfile.ZipFile(path) as z:
        pictures = [Image.open(io.BytesIO(z.read(n))) for n in z.namelist() if n.startswith("word/media/")]
    assert all(p.format in ("JPEG", "PNG") for p in pictures) and len(pictures) == len(EMBEDDED)
    paras = [p.text for p in doc.paragraphs]
    assert _listed(NAMES, paras) == LISTED
    assert any("bomb.png" in p and "image too large to embed" in p for p in paras)
    # every embedded one is captioned by its name, in the submission's order
    shown = [p.removeprefix("Photos: ") for p in paras if p.startswith("Photos: ") and " — " not in p]
    assert shown == EMBEDDED


def test_pdf_embeds_or_lists_every_media(tmp_path):
    out, _ = run_writer(PdfWriter, tmp_path, {}, corpus_records(NAMES))
    reader = PdfReader(tmp_path / next(p for p in out.published if p.suffix == ".pdf"))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert sum(len(page.images) for page in reader.pages) == len(EMBEDDED)
    lines = text.splitlines()
    assert _listed(NAMES, lines) == LISTED
    for n in EMBEDDED:
        assert f"Photos: {n}" in lines


def test_jpeg_led_by_a_comment_is_embedded_in_docx_as_a_plain_copy(tmp_path):
    """The field case: a valid JPEG whose first segment is a comment stopped the whole export."""
    data = CORPUS["com-first.jpg"][1]
    with pytest.raises(UnrecognizedImageError):
        DocxWriter.accepts_image(str(_write(tmp_path / "x.jpg", data)))
    out, _ = run_writer(DocxWriter, tmp_path / "out", {}, corpus_records(["com-first.jpg", "app13-first.jpg"]))
    path = tmp_path / "out" / next(p for p in out.published if p.suffix == ".docx")
    with zipfile.ZipFile(path) as z:
        blobs = [z.read(n) for n in z.namelist() if n.startswith("word/media/")]
    assert len(blobs) == 2 and all(b[:4] in (b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1") for b in blobs)
    assert all(Image.open(io.BytesIO(b)).size == (120, 90) for b in blobs)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_prepare_passes_plain_images_through_and_refuses_bombs(tmp_path):
    plain = _write(tmp_path / "a.jpg", CORPUS["progressive.jpg"][1])
    got = images.prepare(plain, tmp_path / "a-out", 1600)
    assert got.path == plain and (got.width, got.height) == (120, 90)  # untouched: no re-encoding
    with pytest.raises(images.Refused) as e:
        images.prepare(_write(tmp_path / "b.png", CORPUS["bomb.png"][1]), tmp_path / "b-out", 1600)
    assert e.value.reason == "too_large"
    with pytest.raises(images.Refused) as e:
        images.prepare(_write(tmp_path / "c.jpg", CORPUS["truncated.jpg"][1]), tmp_path / "c-out", 1600)
    assert e.value.reason == "unreadable"


def test_big_jpeg_is_decoded_at_a_reduced_scale_within_the_pixel_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_DECODED_PIXELS", 1_000_000)
    im = Image.new("RGB", (2000, 1500), (10, 200, 10))
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    src = _write(tmp_path / "big.jpg", buf.getvalue())
    got = images.prepare(src, tmp_path / "big-out", 400)  # drafted to 1/4 (500 x 375), then thumbnailed
    assert (got.width, got.height) == (400, 300)
    with pytest.raises(images.Refused) as e:  # kept at full size it would pass the budget
        images.prepare(src, tmp_path / "big-out2", 0)
    assert e.value.reason == "too_large"


def test_renderer_refusing_even_a_plain_copy_lists_the_media(tmp_path):
    src = _write(tmp_path / "a.jpg", jpeg_led_by(0xFE, b"x"))
    prepared = images.prepare(src, tmp_path / "a", 1600)

    def refuses(path):
        raise ValueError("no")

    with pytest.raises(images.Refused):
        images.for_renderer(prepared, refuses, tmp_path / "a")
