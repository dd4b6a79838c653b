"""Images in reports: the one rule the DOCX and PDF writers follow to embed a media or list it.

A media that looks like an image is decoded once by Pillow when it arrives (``prepare``):

- it is *refused* (the report lists it as a file) when Pillow cannot read it (not an image,
  truncated, unknown format), when it is a decompression bomb (Pillow's own check on the size its
  header announces), or when it would still hold more than ``MAX_DECODED_PIXELS`` once decoded.
  Memory stays bounded: the size is checked before any pixel is decoded, and a JPEG is decoded
  at 1/2, 1/4 or 1/8 scale (``Image.draft``) when that is enough for ``max_px``;
- it is *passed through* untouched when it is already a JPEG or PNG the renderers take as they
  are (upright, not larger than ``max_px``, a common mode, one frame);
- otherwise it is *re-encoded*: EXIF orientation applied, down-scaled to ``max_px``, written as a
  plain baseline JPEG (no transparency) or PNG (transparency), without metadata.

A renderer may still refuse a file Pillow reads: python-docx recognises a JPEG only when its first
segment is JFIF or EXIF, so a valid JPEG opening with a comment (COM) or another APPn segment
raised ``UnrecognizedImageError`` and stopped the whole export. ``for_renderer`` asks the
renderer's own parser first; when it refuses, it hands it a plain re-encoded copy
(``plain_copy``); when that is refused too, the media is listed as a file. One media never fails
a report.
"""
from __future__ import annotations

import os
import posixpath
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exporter.formats.report_model import FileItem, ImageItem, MediaItem, clean_text

from exporter.errors import FormatError
from exporter.model import FieldDef, Media, copy_media

#: largest image decoded (after JPEG draft scaling): 25 million pixels, at most 100 MB as RGBA
MAX_DECODED_PIXELS = 25_000_000
#: modes both renderers embed as they are
_PLAIN_MODES = frozenset({"RGB", "L", "RGBA", "LA", "P", "1"})
_UPRIGHT = (1, None)


@dataclass(frozen=True)
class Prepared:
    """A JPEG or PNG file both renderers can embed, and its size in pixels."""

    path: Path
    width: int
    height: int


class Refused(Exception):
    """The media is not embedded; ``reason`` is ``"unreadable"`` or ``"too_large"``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _open(src: Path, max_px: int):
    """Open ``src`` with its size checked before any pixel is decoded (JPEG draft applied):
    returns the image and its full size (before draft scaling)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # between 1x and 2x Pillow's bomb limit it only warns: our own limit below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(src)
    except Image.DecompressionBombError as e:
        raise Refused("too_large", str(e)) from None
    except Exception as e:  # noqa: BLE001 - any decoder failure means "not a readable image"
        raise Refused("unreadable", f"{type(e).__name__}: {e}") from None
    try:
        full = im.size
        if max_px and im.format == "JPEG" and max(im.size) > max_px:
            im.draft("RGB" if im.mode != "L" else "L", (max_px, max_px))  # decode at a reduced scale
        if im.size[0] * im.size[1] > MAX_DECODED_PIXELS:
            raise Refused("too_large", f"{im.size[0]} x {im.size[1]} pixels")
    except BaseException:
        im.close()
        raise
    return im, full


def _has_alpha(im) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def _to_8bit(im):
    """16-bit and 32-bit grey images scaled to 8 bits (a plain conversion would clip to white)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        im = im.convert("I").point(lambda v: v * (1 / 256))
        return im.convert("L")
    if im.mode == "F":
        return im.convert("L")
    return im


def _encode(im, dst_stem: Path, max_px: int) -> Prepared:
    """Write ``im`` (loaded) as a plain JPEG or PNG next to ``dst_stem``, down-scaled to ``max_px``."""
    from PIL import Image, ImageOps

    orientation = im.getexif().get(0x0112, 1)
    img = ImageOps.exif_transpose(im) if orientation not in _UPRIGHT else im
    if max_px and max(img.size) > max_px:
        img.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)  # in place: no second full-size copy
    if _has_alpha(img):
        out = dst_stem.with_suffix(".png")
        img = img.convert("RGBA") if img.mode not in ("RGBA", "LA") else img
        img.save(out, "PNG")
    else:
        out = dst_stem.with_suffix(".jpg")
        img = _to_8bit(img)
        img.convert("RGB" if img.mode != "L" else "L").save(out, "JPEG", quality=85)
    return Prepared(out, img.size[0], img.size[1])


def prepare(src: Path, dst_stem: Path, max_px: int) -> Prepared:
    """The image in ``src`` as both renderers can embed it (see the module docstring); raises
    :class:`Refused` when it cannot be embedded."""
    im, full = _open(src, max_px)
    with im:
        try:
            im.load()
        except Exception as e:  # noqa: BLE001 - truncated or corrupt data
            raise Refused("unreadable", f"{type(e).__name__}: {e}") from None
        orientation = im.getexif().get(0x0112, 1)
        passes = (im.format in ("JPEG", "PNG") and orientation in _UPRIGHT and im.mode in _PLAIN_MODES
                  and (not max_px or max(full) <= max_px) and not getattr(im, "is_animated", False))
        if not passes:
            try:
                return _encode(im, dst_stem, max_px)
            except Exception as e:  # noqa: BLE001 - a mode or size Pillow cannot convert
                raise Refused("unreadable", f"{type(e).__name__}: {e}") from None
        # named by its type: reportlab copies a JPEG into the PDF as is only when its name says
        # .jpg (otherwise it decodes and hashes every pixel), python-docx names the part after it
        suffix = ".jpg" if im.format == "JPEG" else ".png"
        if src.suffix.lower() != suffix:
            named = dst_stem.with_suffix(suffix)
            os.replace(src, named)
            return Prepared(named, im.size[0], im.size[1])
        return Prepared(src, im.size[0], im.size[1])


def plain_copy(src: Path, dst_stem: Path) -> Prepared:
    """A re-encoded copy of a prepared image (baseline JPEG or PNG, no metadata, same size)."""
    im, _ = _open(src, 0)
    with im:
        try:
            im.load()
            return _encode(im, dst_stem, 0)
        except Exception as e:  # noqa: BLE001 - same as prepare
            raise Refused("unreadable", f"{type(e).__name__}: {e}") from None


def for_renderer(image: Prepared, accepts: Callable[[str], object], dst_stem: Path) -> Prepared:
    """``image`` if the renderer's parser ``accepts`` it, else a plain re-encoded copy it accepts;
    raises :class:`Refused` when it takes neither."""
    try:
        accepts(str(image.path))
        return image
    except Exception:  # noqa: BLE001, S110 - the renderer's parser refused it: try a plain copy
        pass
    plain = plain_copy(image.path, dst_stem.with_name(dst_stem.name + "-plain"))
    try:
        accepts(str(plain.path))
    except Exception as e:  # noqa: BLE001 - refused even re-encoded: listed as a file
        plain.path.unlink(missing_ok=True)
        raise Refused("unreadable", f"{type(e).__name__}: {e}") from None
    if plain.path != image.path:
        image.path.unlink(missing_ok=True)
    return plain


# --------------------------------------------------------------------------------------------
# A report's media: spooled, images prepared, each becoming an item of the report model
# --------------------------------------------------------------------------------------------

#: field types whose media are images (also any media served as ``image/*``)
IMAGE_FIELD_TYPES = frozenset({"photo", "signature", "paint", "schema", "drawing", "fixed_image"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


def looks_like_image(media: Media, fdef: FieldDef | None) -> bool:
    if (media.content_type or "").lower().startswith("image/"):
        return True
    if fdef is not None and fdef.type.lower() in IMAGE_FIELD_TYPES:
        return True
    return posixpath.splitext(media.ref.name.lower())[1] in IMAGE_EXTENSIONS


class MediaPreparer:
    """Copies the media of a report to a work directory, decoding images once (``prepare``):
    embedded when the renderer's parser ``accepts`` them, plain or re-encoded, else listed as
    files (a ``FileItem`` saying why)."""

    def __init__(self, max_px: int, labels: dict[str, str], accepts: Callable[[str], object] | None = None):
        self.max_px = max_px
        self.labels = labels
        self.accepts = accepts
        self._n = 0

    def prepare(self, media: Media, fdef: FieldDef | None, relpath: str | None, caption: str,
                workdir: Path) -> MediaItem:
        name = clean_text(media.ref.name)
        ctype = clean_text(media.content_type or "")
        size = media.size if type(media.size) is int else None
        if not looks_like_image(media, fdef):
            return FileItem(caption, name, relpath, ctype, size)
        self._n += 1
        raw = workdir / f"m{self._n}.bin"
        try:
            with open(raw, "wb") as fh:
                copy_media(media, fh)
        except OSError as e:
            raise FormatError(f"cannot spool media {media.ref.name!r}: {e}",
                              context=f"form {media.ref.form_id} submission {media.ref.submission_id}") from e
        size = raw.stat().st_size
        stem = workdir / f"m{self._n}"
        try:
            got = prepare(raw, stem, self.max_px)
            if self.accepts is not None:
                got = for_renderer(got, self.accepts, stem)
        except Refused as e:
            raw.unlink(missing_ok=True)
            return FileItem(caption, name, relpath, ctype, size, self.labels[e.reason])
        if got.path != raw:
            raw.unlink(missing_ok=True)
        return ImageItem(caption, name, str(got.path), got.width, got.height, relpath)
