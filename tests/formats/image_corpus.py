"""Awkward images made on the spot with Pillow (and, for what Pillow does not write, by hand from
the file format's structure): every kind of media a report writer met or may meet in the field.

``CORPUS`` maps a media name to (content type, bytes, expectation): ``"embedded"`` when a report
must show the picture, ``"listed"`` when it must list the media as a file instead.
"""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

_made = [0]


def _photo(mode: str = "RGB", size=(120, 90)) -> Image.Image:
    """A striped picture, a different colour each time (so no two media are the same image)."""
    _made[0] += 1
    im = Image.new("RGB", size, (200, (60 + 23 * _made[0]) % 256, 40))
    for x in range(0, size[0], 12):
        im.paste((40, 60, 200), (x, 0, x + 4, size[1]))
    return im.convert(mode)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_led_by(marker: int, payload: bytes) -> bytes:
    """A valid baseline JPEG whose first segment is ``marker`` (COM, APPn...) instead of JFIF:
    the JFIF APP0 Pillow writes is dropped and the segment put right after SOI."""
    data = _save(_photo(), "JPEG", quality=80)
    assert data[:4] == b"\xff\xd8\xff\xe0"
    app0_len = struct.unpack(">H", data[4:6])[0]
    return data[:2] + _segment(marker, payload) + data[4 + app0_len:]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_16bit_rgba(w: int = 40, h: int = 30) -> bytes:
    """A 16-bit-per-channel RGBA PNG (Pillow reads these but does not write them)."""
    rows = b"".join(b"\x00" + b"".join(struct.pack(">HHHH", 65535 * x // w, 20000, 40000, 65535 * y // h)
                                       for x in range(w)) for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(rows))
            + _png_chunk(b"IEND", b""))


def png_bomb(side: int = 40_000) -> bytes:
    """A PNG header announcing side x side pixels (1.6 billion by default): Pillow refuses to open
    it as a decompression bomb before reading any pixel."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b""))


def palette_png_transparent() -> bytes:
    im = _photo("RGB").quantize(8)
    return _save(im, "PNG", transparency=0)


def animated_gif() -> bytes:
    frames = [_photo("RGB").quantize(16), Image.new("P", (120, 90), 3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0, transparency=0)


CORPUS: dict[str, tuple[str, bytes, str]] = {
    "com-first.jpg": ("image/jpeg", jpeg_led_by(0xFE, b"made by a field camera"), "embedded"),
    "app2-first.jpg": ("image/jpeg", jpeg_led_by(0xE2, b"ICC_PROFILE\x00\x01\x01" + b"\x00" * 32), "embedded"),
    "app13-first.jpg": ("image/jpeg", jpeg_led_by(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x00"),
                        "embedded"),
    "progressive.jpg": ("image/jpeg", _save(_photo(), "JPEG", progressive=True, quality=80), "embedded"),
    "cmyk.jpg": ("image/jpeg", _save(_photo("CMYK"), "JPEG", quality=80), "embedded"),
    "rgba16.png": ("image/png", png_16bit_rgba(), "embedded"),
    "gray16.png": ("image/png", _save(_photo("L").convert("I;16"), "PNG"), "embedded"),
    "palette-alpha.png": ("image/png", palette_png_transparent(), "embedded"),
    "animated.gif": ("image/gif", animated_gif(), "embedded"),
    "picture.webp": ("image/webp", _save(_photo(), "WEBP"), "embedded"),
    "scan.tif": ("image/tiff", _save(_photo(), "TIFF", compression="tiff_lzw"), "embedded"),
    "truncated.jpg": ("image/jpeg", _save(_photo(size=(400, 300)), "JPEG")[:700], "listed"),
    "bomb.png": ("image/png", png_bomb(), "listed"),
    "png-named.jpg": ("image/jpeg", _save(_photo(), "PNG"), "embedded"),
    "jpeg-named.png": ("image/png", _save(_photo(), "JPEG"), "embedded"),
    "not-an-image.jpg": ("image/jpeg", b"<html><body>404 Not Found</body></html>\n" * 4, "listed"),
}
