"""Extra fixtures for the report writers (DOCX, PDF): real images made with Pillow, and a second
form with the cases reports care about (audio and attachments, a missing media, an unreadable
image, a huge photo, a wide sub-form, a sub-form cell too long for one page, markup-looking text,
Greek/Cyrillic/RTL, a 40,000-character text with a marker at its very end)."""
from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image

from exporter.model import Account, Checkpoint, Media
from exporter.records import parse_form, parse_submission
from tests.formats.conftest import build_dataset

END_MARKER = "END-OF-LONG-TEXT-MARKER"
CELL_MARKER = "END-OF-CELL-MARKER"
LONG = ("Déjà vu, naïve façade; Ελληνικά και Русский текст. " * 1000)[:40000 - len(END_MARKER) - 1] + " " + END_MARKER
MARKUP = "<b>not bold</b> & &amp; <br/> <font size=40>x</font> <a href='javascript:x'>y</a>"
GREEK = "Καλημέρα κόσμε"
CYRILLIC = "Съешь же ещё этих мягких французских булок"
HEBREW = "שלום עולם"
ARABIC = "مرحبا بالعالم"
EMOJI_LINE = "before 😀👍🏽 after"


def before_checkpoint(records) -> Iterator:
    """The records of a stream up to its first Checkpoint (a run that fails before its form ends)."""
    for r in records:
        if isinstance(r, Checkpoint):
            return
        yield r


def jpeg_bytes(w: int, h: int, color=(200, 30, 30), orientation: int | None = None) -> bytes:
    im = Image.new("RGB", (w, h), color)
    for x in range(0, w, max(w // 8, 1)):  # a few stripes so the image is not uniform
        im.paste((30, 30, 200), (x, 0, min(x + max(w // 32, 1), w), h))
    buf = io.BytesIO()
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, "JPEG", quality=80, exif=exif.tobytes())
    else:
        im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def png_bytes(w: int, h: int, alpha: bool = False, color=(10, 120, 10)) -> bytes:
    im = Image.new("RGBA" if alpha else "RGB", (w, h), color + ((0,) if alpha else ()))
    stroke = color + ((255,) if alpha else ())
    for x in range(w):  # a diagonal "signature" stroke
        y = int(x * h / w)
        im.paste(stroke, (x, max(y - 2, 0), x + 1, min(y + 2, h)))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def image_dataset():
    """The shared dataset with real images (one EXIF-rotated, one PNG with alpha); ``../../evil.jpg``
    stays garbage, so it must be listed by name."""
    ds = build_dataset()
    ds.media_bytes.update({
        "photo_1.jpg": jpeg_bytes(640, 480, orientation=6),  # shows as 480 x 640
        "photo 2 é.png": png_bytes(300, 200),
        "sig.png": png_bytes(400, 150, alpha=True),
        "row0.jpg": jpeg_bytes(320, 240, color=(20, 160, 160)),
        "row-only.jpg": jpeg_bytes(200, 200, color=(160, 160, 20)),
    })
    return ds


EXTRA_FORM = {
    "id": "555",
    "name": "Réunion <b>&amp;</b> Ελληνικά",
    "fields": {
        "sec": {"type": "section", "caption": "Détails"},
        "markup": {"type": "text", "caption": "Caption <i>&amp;</i>"},
        "greek": {"type": "text", "caption": "Greek"},
        "cyr": {"type": "text", "caption": "Cyrillic"},
        "hebrew": {"type": "text", "caption": "Hebrew"},
        "arabic": {"type": "text", "caption": "Arabic"},
        "emoji": {"type": "text", "caption": "Emoji"},
        "long": {"type": "textarea", "caption": "Long text"},
        "voice": {"type": "audio", "caption": "Voice memo"},
        "files": {"type": "attached", "caption": "Attachments"},
        "photos": {"type": "photo", "caption": "Site photos"},
        "wide": {"type": "subform", "caption": "Wide table", "fields": {
            f"c{i}": {"type": "text", "caption": f"Column {i}"} for i in range(1, 9)}},
        "notes": {"type": "subform", "caption": "Notes", "fields": {
            "label": {"type": "text", "caption": "Label"},
            "detail": {"type": "textarea", "caption": "Detail"},
            "when": {"type": "date", "caption": "When"},
        }},
    },
}

EXTRA_SUBMISSIONS = [
    {"id": "s-1", "record_number": "7", "form_id": "555", "user_name": "Zoë", "create_time": "2024-06-01 10:00:00",
     "update_time": "2024-06-01 10:00:00", "fields": {
         "markup": {"value": MARKUP}, "greek": {"value": GREEK}, "cyr": {"value": CYRILLIC},
         "hebrew": {"value": HEBREW}, "arabic": {"value": ARABIC}, "emoji": {"value": EMOJI_LINE},
         "long": {"value": LONG},
         "voice": {"value": "voice memo.m4a"},
         "files": {"value": "report.pdf, missing.jpg"},
         "photos": {"value": "big.jpg, broken.jpg"},
         "wide": {"value": [{f"c{i}": {"value": f"r{r}c{i}"} for i in range(1, 9)} for r in range(1, 3)]},
         "notes": {"value": [
             {"label": {"value": "short"}, "detail": {"value": "fine"}, "when": {"value": "2024-06-01"}},
             {"label": {"value": "long one"}, "detail": {"value": ("word " * 2000) + CELL_MARKER},
              "when": {"value": "01/06/2024"}},
         ]},
     }},
    {"id": "s-2", "record_number": "8", "form_id": "555", "create_time": "2024-06-02 10:00:00",
     "update_time": "2024-06-02 10:00:00", "fields": {"greek": {"value": "δεύτερη"}}},
]

EXTRA_MEDIA = {
    "voice memo.m4a": ("audio/mp4", b"\x00\x00\x00\x18ftypM4A fake audio"),
    "report.pdf": ("application/pdf", b"%PDF-1.4 fake"),
    "big.jpg": ("image/jpeg", jpeg_bytes(3000, 2000, color=(220, 40, 40))),
    "broken.jpg": ("image/jpeg", b"\xff\xd8\xff\xe0 this is not really a jpeg"),
    # missing.jpg is named by the submission but never sent
}


def extra_form():
    return parse_form(EXTRA_FORM)


def extra_records(account: Account | None = None) -> Iterator:
    form = extra_form()
    yield account or Account(source="archive://test", timezone="Europe/Athens")
    yield form
    for raw in EXTRA_SUBMISSIONS:
        sub = parse_submission(form, raw)
        yield sub
        for ref in sub.media:
            if ref.name in EXTRA_MEDIA:
                ctype, data = EXTRA_MEDIA[ref.name]
                yield Media.spooled(ref, ctype, iter([data]))
    yield Checkpoint(form.id, "2024-06-02 10:00:00")
