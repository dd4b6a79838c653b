"""Deterministic, safe names: file names from service data and shortened identifiers.

Every function here is pure and stable across runs and machines: the same input always gives the
same output, so re-exports land on the same paths and columns.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from pathlib import Path

from .errors import ConfigError

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in range(10)
} | {f"{p}{c}" for p in ("COM", "LPT") for c in "¹²³"}
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def _truncate_utf8(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


# The names that repeat (form folders, field names, kinds) stay in a small cache; the ones that do
# not (every submission id and media name) only pass through it: a cache of 65,536 held ~20 MB of
# them, so memory grew with the account up to that size.
@functools.lru_cache(maxsize=1 << 12)
def safe_filename(name: str, *, max_bytes: int = 255, forbidden: str = "") -> str:
    """Make one path component safe on every common file system and remote.

    Separators, control characters and the characters Windows, SharePoint and Dropbox forbid are
    replaced by ``_``; ``.``/``..``, empty names and Windows device names (``CON``, ``nul.txt``)
    are prefixed; overlong names are cut on a UTF-8 boundary keeping the extension. Whenever the
    name had to change, a short hash of the original is appended, so two different originals
    never end up on the same safe name.
    """
    original = name
    name = unicodedata.normalize("NFC", name or "")
    cleaned = _BAD_CHARS.sub("_", name)
    if forbidden:
        cleaned = "".join("_" if c in forbidden else c for c in cleaned)
    cleaned = cleaned.strip(" .") if cleaned.strip(" .") else ""
    stem, dot, ext = cleaned.rpartition(".")
    if not dot:
        stem, ext = cleaned, ""
    if not cleaned or cleaned in (".", ".."):
        cleaned = "_"
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED or cleaned.split(".")[0].upper() in _WINDOWS_RESERVED:
        cleaned = "_" + cleaned
    changed = cleaned != original
    ext = ("." + ext) if dot and 0 < len(ext) <= 16 and stem else ""
    base = cleaned[: len(cleaned) - len(ext)] if ext else cleaned
    suffix = ("~" + short_hash(original)) if changed else ""
    room = max_bytes - len((suffix + ext).encode("utf-8"))
    if len(cleaned.encode("utf-8")) > max_bytes:
        suffix = "~" + short_hash(original)
        room = max_bytes - len((suffix + ext).encode("utf-8"))
    base = _truncate_utf8(base, max(room, 1))
    return base + suffix + ext


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """Join already-safe components under ``root`` and prove the result stays inside it."""
    root_p = Path(root).resolve()
    p = root_p.joinpath(*parts).resolve()
    if p != root_p and root_p not in p.parents:
        raise ConfigError(f"refusing to write outside the output directory: {'/'.join(parts)!r}")
    return p


def shorten_identifier(name: str, max_len: int | None) -> str:
    """Cut ``name`` to ``max_len`` characters, deterministically, keeping a hash of the whole
    name at the end so two long names sharing a prefix stay distinct."""
    if max_len is None or len(name) <= max_len:
        return name
    h = short_hash(name, 8)
    return name[: max_len - len(h) - 1] + "_" + h
