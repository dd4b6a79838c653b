"""DOCX reports, read back with python-docx (an independent reader of the package)."""
from __future__ import annotations

import io
import tracemalloc
import weakref
import zipfile
from pathlib import Path

import docx
import pytest
from docx.shared import Mm
from exporter.formats.base import OutputDir, get_writer_class
from exporter.formats.docx_writer import DocxWriter
from PIL import Image

from exporter.errors import ConfigError, FormatError
from exporter.model import Media, MediaRef
from tests.benchmarks import bench_pdf
from tests.formats.conftest import (
    CONTROL,
    EMOJI,
    FORMULA,
    LONG_TEXT,
    MULTILINE,
    RTL,
    abandon_writer,
    build_dataset,
    rare_gc,
    run_writer,
)
from tests.formats.report_fixtures import (
    ARABIC,
    CELL_MARKER,
    CYRILLIC,
    END_MARKER,
    GREEK,
    HEBREW,
    LONG,
    MARKUP,
    before_checkpoint,
    extra_records,
    image_dataset,
)


def _reports(root: Path, out: OutputDir, suffix: str = ".docx") -> dict[str, Path]:
    return {p.stem: root / p for p in out.published if p.suffix == suffix}


def _kv(doc) -> dict[str, str]:
    """Every two-column caption/value table row of the document."""
    out = {}
    for t in doc.tables:
        for row in t.rows:
            cells = row.cells
            if len(cells) == 2:
                out.setdefault(cells[0].text, cells[1].text)
    return out


def _images(path: Path) -> list[bytes]:
    with zipfile.ZipFile(path) as z:
        return [z.read(n) for n in z.namelist() if n.startswith("word/media/")]


def test_registered_and_limits():
    assert get_writer_class("docx") is DocxWriter
    assert DocxWriter.limits.holds_whole_document  # the class declares the worst case
    assert not DocxWriter(OutputDir("/tmp/x-docx-limits"), {}).limits.holds_whole_document


def test_one_report_per_submission_with_every_field(tmp_path):
    ds = image_dataset()
    out, _ = run_writer(DocxWriter, tmp_path, {"report_lang": "en"}, ds.records())
    reports = _reports(tmp_path, out)
    assert set(reports) == {"1001", "1002", "1003"}
    form_dir = out.form_dir(ds.form)
    assert all(str(p.relative_to(tmp_path)).startswith(form_dir + "/reports/") for p in reports.values())

    doc = docx.Document(reports["1001"])
    paras = [p.text for p in doc.paragraphs]
    assert paras[0] == f"{ds.form.name} — #1"
    kv = _kv(doc)
    # metadata
    assert kv["Submission id"] == "1001" and kv["Record number"] == "1" and kv["Created"] == "2024-05-01 08:00:00"
    # typed values, formatted readably
    assert kv["Name"] == "Alice"
    assert kv["Comment"] == MULTILINE.replace("\r\n", "\n")
    assert kv["Amount"] == "-5"
    assert kv["Date"] == "2024-05-01" and kv["Time"] == "14:05" and kv["When"] == "2024-05-01 14:05:09"
    assert kv["Done?"] == "Yes"
    assert kv["Where"] == "48.8584, 2.2945"
    assert kv["Status"] == "Open:OPN"
    assert kv["Unknown type -> text"] == "kept as text"
    # captions in definition order (the kv tables after the metadata table)
    captions = [r.cells[0].text for t in doc.tables[1:] for r in t.rows if len(r.cells) == 2]
    expected = [f.caption for f in ds.form.value_fields() if f.kind not in ("media",)]
    assert captions == expected
    # section heading
    assert "Header" in paras
    # sub-form table: header = child captions (falls back to the name), rows = values
    sub = next(t for t in doc.tables if [c.text for c in t.rows[0].cells] == ["item", "qty", "checked", "when", "pic"])
    assert [c.text for c in sub.rows[1].cells] == ["Bolt M8", "12.50", "Yes", "2024-05-02", "row0.jpg"]
    assert [c.text for c in sub.rows[2].cells] == [FORMULA, "not a number", "No", "2024-13-45", ""]
    assert "Never filled (0 rows)" in paras and "No rows." in paras
    # the four images of this submission are embedded, readable, EXIF orientation applied
    imgs = [Image.open(io.BytesIO(b)) for b in _images(reports["1001"])]
    assert len(imgs) == 4
    assert sorted(i.size for i in imgs) == sorted([(480, 640), (300, 200), (400, 150), (320, 240)])
    assert "Photos: photo_1.jpg" in paras and "Signature: sig.png" in paras and "Row 1 · pic: row0.jpg" in paras


def test_images_fit_the_page_and_keep_aspect_ratio(tmp_path):
    out, _ = run_writer(DocxWriter, tmp_path, {}, extra_records())
    doc = docx.Document(_reports(tmp_path, out)["s-1"])
    shapes = list(doc.inline_shapes)
    assert len(shapes) == 1  # big.jpg only: broken.jpg cannot be read
    sec = doc.sections[0]
    assert abs(sec.page_width - Mm(210)) < Mm(1)  # A4 by default
    text_width = sec.page_width - sec.left_margin - sec.right_margin
    s = shapes[0]
    assert s.width <= text_width
    assert abs(s.width / s.height - 1600 / (1600 * 2000 / 3000)) < 0.01  # 3000x2000 down-scaled to 1600 px
    img = Image.open(io.BytesIO(_images(_reports(tmp_path, out)["s-1"])[0]))
    assert img.size == (1600, 1067)


def test_hostile_values_round_trip(tmp_path):
    ds = build_dataset()
    out, _ = run_writer(DocxWriter, tmp_path, {"report_lang": "en"}, ds.records())
    doc = docx.Document(_reports(tmp_path, out)["1002"])
    kv = _kv(doc)
    assert kv["Name"] == RTL + " " + EMOJI
    assert kv["Comment"] == LONG_TEXT  # 40,000 characters, not truncated
    assert kv["User"] == RTL and kv["First name"] == EMOJI
    assert kv["Amount"] == "12,345.67x"  # did not type: the served text
    assert kv["Done?"] == "maybe"
    # characters XML cannot hold become U+FFFD, everything else is kept
    assert kv["Hostile name"] == CONTROL.replace("\x07", "\ufffd").replace("\x00", "\ufffd").replace(
        "\x1b", "\ufffd").replace("\x0b", "\ufffd").replace("\x0c", "\ufffd")
    assert "Lines (0 rows)" in [p.text for p in doc.paragraphs]
    # unreadable media (bytes that are no image) are listed by name with their path, not embedded
    doc3 = docx.Document(_reports(tmp_path, out)["1003"])
    paras = [p.text for p in doc3.paragraphs]
    assert "Photos: ../../evil.jpg — ../media/1003/_.._evil~855d7fed.jpg (image/jpeg, 6 bytes, image could not be read)" in paras
    assert _images(_reports(tmp_path, out)["1003"]) == []


def test_other_media_listed_with_relative_paths(tmp_path):
    out, _ = run_writer(DocxWriter, tmp_path, {}, extra_records())
    reports = _reports(tmp_path, out)
    doc = docx.Document(reports["s-1"])
    paras = [p.text for p in doc.paragraphs]
    assert "Voice memo: voice memo.m4a — ../media/s-1/voice memo.m4a (audio/mp4, 22 bytes)" in paras
    assert "Attachments: report.pdf — ../media/s-1/report.pdf (application/pdf, 13 bytes)" in paras
    assert "Attachments: missing.jpg (not exported)" in paras
    assert "Site photos: broken.jpg — ../media/s-1/broken.jpg (image/jpeg, 30 bytes, image could not be read)" in paras
    # the relative path really points at where the media are stored
    media = out.media_relpath(next(r for r in extra_sub_refs() if r.name == "voice memo.m4a"), "Réunion <b>&amp;</b> Ελληνικά")
    assert (reports["s-1"].parent / "../media/s-1/voice memo.m4a").resolve() == (tmp_path / media).resolve()
    kv = _kv(doc)
    assert kv["Caption <i>&amp;</i>"] == MARKUP
    assert kv["Greek"] == GREEK and kv["Cyrillic"] == CYRILLIC and kv["Hebrew"] == HEBREW and kv["Arabic"] == ARABIC
    assert doc.paragraphs  # long text kept whole, marker at the end
    assert LONG in [r.cells[1].text for t in doc.tables for r in t.rows if len(r.cells) == 2]
    assert kv["Long text"].endswith(END_MARKER)
    # a wide sub-form (8 columns) becomes one caption/value table per row
    assert kv["Column 8"] == "r1c8"
    assert "Row 2" in paras
    notes = next(t for t in doc.tables if [c.text for c in t.rows[0].cells] == ["Label", "Detail", "When"])
    assert notes.rows[2].cells[1].text.endswith(CELL_MARKER) and notes.rows[2].cells[2].text == "2024-06-01"


def extra_sub_refs():
    for r in extra_records():
        if getattr(r, "kind", "") == "submission" and r.id == "s-1":
            return r.media
    return ()


def test_single_document_per_form(tmp_path):
    ds = image_dataset()
    out, w = run_writer(DocxWriter, tmp_path, {"report_lang": "en", "docx_single": "true"}, ds.records())
    assert w.limits.holds_whole_document
    paths = [tmp_path / p for p in out.published]
    assert [p.name for p in paths] == [out.safe(ds.form.name + ".docx"), "Empty form.docx"]
    assert str(out.published[0]).startswith(out.aggregate_dir(ds.form) + "/")
    doc = docx.Document(paths[0])
    titles = [p.text for p in doc.paragraphs if p.style.name == "Heading 1"]
    assert titles == ["Contents"] + [f"{ds.form.name} — #{i}" for i in (1, 2, 3)]
    breaks = doc.element.body.xml.count('w:type="page"')
    assert breaks == 3
    # images: 4 (submission 1) + 1 (submission 3, row-only.jpg); evil.jpg is listed, not embedded
    imgs = _images(paths[0])
    assert len(imgs) == 5 and all(Image.open(io.BytesIO(b)).size for b in imgs)
    assert len(doc.inline_shapes) == 5
    # media paths are relative to the document, which sits in the form folder
    listed = "— media/1003/_.._evil~855d7fed.jpg (image/jpeg, 6 bytes, image could not be read)"
    assert any(p.text.endswith(listed) for p in doc.paragraphs)
    empty = docx.Document(paths[1])
    assert "No submissions." in [p.text for p in empty.paragraphs]


def test_single_document_volumes_and_incremental(tmp_path):
    ds = image_dataset()
    options = {"report_lang": "en", "docx_single": True, "report_max_submissions": 2}
    out, _ = run_writer(DocxWriter, tmp_path, options, ds.records(), incremental=True, run_id="r-7")
    names = sorted(str(p) for p in out.published)
    base = out.aggregate_dir(ds.form)
    assert base.endswith("/runs/r-7")
    stem = ds.form.name
    assert names == sorted([f"{base}/{out.safe(stem + '.docx')}", f"{base}/{out.safe(stem + ' (part 2).docx')}"])
    part2 = docx.Document(tmp_path / names[0] if "part 2" in names[0] else tmp_path / names[1])
    assert [p.text for p in part2.paragraphs if p.style.name == "Heading 1"][1:] == [f"{stem} — #3"]
    # incremental run: a form without new submissions gets no empty document
    assert not any("Empty form" in n for n in names)


def test_french_labels(tmp_path):
    out, _ = run_writer(DocxWriter, tmp_path, {"report_lang": "fr"}, build_dataset().records())
    kv = _kv(docx.Document(_reports(tmp_path, out)["1001"]))
    assert kv["Done?"] == "Oui" and kv["Numéro"] == "1"


def test_bad_options_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="report_lang"):
        DocxWriter(OutputDir(tmp_path), {"report_lang": "xx"})
    with pytest.raises(ConfigError, match="docx_single"):
        DocxWriter(OutputDir(tmp_path), {"docx_single": "perhaps"})
    with pytest.raises(ConfigError, match="report_image_max_px"):
        DocxWriter(OutputDir(tmp_path), {"report_image_max_px": "big"})


def test_submission_before_its_form_is_refused(tmp_path):
    ds = build_dataset()
    w = DocxWriter(OutputDir(tmp_path), {})
    with pytest.raises(FormatError, match="submission 1001"):
        w.write(ds.submissions[0])
    w.close(False)


def test_failed_run_publishes_nothing(tmp_path):
    ds = image_dataset()
    _, w = abandon_writer(DocxWriter, tmp_path, {"docx_single": True}, before_checkpoint(ds.records()))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == []
    assert not w._tmp.exists()  # temporary media removed


# ---- memory ----------------------------------------------------------------------------------


def _small_records(n: int, single_photo: bytes):
    """``n`` small submissions of the benchmark form, each with one tiny photo."""
    form = None
    for r in bench_pdf.records(n, 0, 1):
        if r.kind == "form":
            form = r
        yield r
        if r.kind == "submission":
            ref = MediaRef(form.id, r.id, "photo", "p.jpg")
            r.media = (ref,)
            r.values["photo"] = ("p.jpg",)
            yield Media.spooled(ref, "image/jpeg", iter([single_photo]))


class _CountingDocx(DocxWriter):
    """Keeps a weak reference to every document it creates (to see which are still alive)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.made: list = []

    def _new_document(self):
        doc = super()._new_document()
        self.made.append(weakref.ref(doc))
        return doc


def _tiny_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 90, 160)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("options", [{}, {"docx_single": True, "report_max_submissions": 4}])
def test_saved_documents_are_freed_with_a_rarely_running_collector(tmp_path, options):
    """A python-docx document is a web of reference cycles: with the collector threshold the
    pipeline ran with (and a host application may set), every saved report stayed in memory (1.4 GB
    for 500 reports)."""
    with rare_gc():
        out, w = run_writer(_CountingDocx, tmp_path, options, _small_records(24, _tiny_jpeg()))
        alive = sum(r() is not None for r in w.made)
    assert len(w.made) == (24 if not options else 6)
    assert alive == 0


def test_per_submission_memory_is_flat(tmp_path):
    """Peak traced memory of 4 vs 16 reports differs by less than one report's worth."""
    photo = _tiny_jpeg()

    def peak(n: int) -> int:
        with rare_gc():
            tracemalloc.start()
            try:
                run_writer(DocxWriter, tmp_path / str(n), {}, _small_records(n, photo))
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    peak(2)  # warm-up: imports and caches
    small, big = peak(4), peak(16)
    assert big - small < 300_000, (small, big)  # a leaked report costs ~0.5 MB of traced memory


def _noisy_jpeg(seed: int) -> bytes:
    """A photo that does not compress (random pixels): about 100 KB."""
    import random

    rnd = random.Random(seed)
    buf = io.BytesIO()
    Image.frombytes("RGB", (320, 240), rnd.randbytes(320 * 240 * 3)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_single_document_holds_no_image_bytes(tmp_path):
    """docx_single holds the document's XML until it is saved, not its images: each stays in its
    file and is read when the package is written (python-docx itself keeps an image part's bytes
    and a decoded copy). Traced memory just before the save, 4 vs 16 submissions, each with its
    own ~90 KB photo: less than two photos apart (holding them would add 12)."""
    photos = [_noisy_jpeg(i) for i in range(16)]
    assert min(len(p) for p in photos) > 80_000

    def records(n: int):
        it, done = iter(photos), set()
        for r in _small_records(n, b""):
            if r.kind != "media":
                yield r
            elif r.ref.submission_id not in done:  # one photo per submission, its own
                done.add(r.ref.submission_id)
                yield Media.spooled(r.ref, "image/jpeg", iter([next(it)]))

    class Measured(DocxWriter):
        def _save_single(self):
            self.held = tracemalloc.get_traced_memory()[0]
            super()._save_single()

    def held(n: int) -> tuple[int, Path]:
        tracemalloc.start()
        try:
            out, w = run_writer(Measured, tmp_path / str(n), {"docx_single": True}, records(n))
            return w.held, tmp_path / str(n) / out.published[0]
        finally:
            tracemalloc.stop()

    held(2)  # warm-up: imports and caches
    (small, _), (big, path) = held(4), held(16)
    assert big - small < 2 * len(photos[0]), (small, big)
    assert len(docx.Document(path).inline_shapes) == 16
    assert sorted(_images(path)) == sorted(photos)  # each stored once, passed through untouched
