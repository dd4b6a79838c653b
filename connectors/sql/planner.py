"""Deterministic SQL names, driven by the dialect's declared capabilities.

Rules (docs/sql-layout.md repeats them):

* a name is made ASCII (accents folded, anything else but ``a-z0-9`` becomes ``_``), lowercased,
  with ``_`` runs collapsed; an empty name becomes ``field_<hash>``, a leading digit gets ``c_``;
* a reserved word of the dialect (``select``, ``order``, ``user``...) gets a trailing ``_``;
* a name longer than the dialect allows (PostgreSQL 63, MySQL/MariaDB 64, SQL Server 128,
  Access 64) is cut and ends with ``_`` + 8 hex digits of a hash of the whole name;
* a name already taken in its table or database, compared without case (``Name``/``name``), gets
  ``_`` + 6 hex digits of a hash of the *original* field name (cut again to fit);
* a plan is stored in the ``lineage`` table and reused, so a name once given never changes.

Same inputs, same names, on every machine.
"""
from __future__ import annotations

import re
import unicodedata

from exporter.naming import short_hash, shorten_identifier

from .dialects.base import SqlProfile

_NON_WORD = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """ASCII, lowercase, ``[a-z0-9_]`` only; may be empty."""
    folded = unicodedata.normalize("NFKD", text or "")
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    folded = folded.encode("ascii", "ignore").decode("ascii").lower()
    return _NON_WORD.sub("_", folded).strip("_")


class NamePlanner:
    def __init__(self, profile: SqlProfile):
        self.profile = profile
        caps = profile.capabilities
        self.max_len = caps.max_identifier_length
        self.reserved = caps.reserved_words

    # ------------------------------------------------------------------ primitives
    def base(self, text: str, *, empty_prefix: str = "field", digit_prefix: str = "c_") -> str:
        s = slug(text)
        if not s:
            s = f"{empty_prefix}_{short_hash(text or '', 6)}"
        if s[0].isdigit():
            s = digit_prefix + s
        return s

    def fit(self, name: str) -> str:
        """Apply the reserved-word and length rules to an already slugged name."""
        if name.lower() in self.reserved:
            name = name + "_"
        return shorten_identifier(name, self.max_len)

    def unique(self, name: str, taken: set[str], original: str) -> str:
        """``name`` (already fitted) made unique against ``taken`` (lowercased names), which is
        updated. Collisions get a hash of ``original``; the result is deterministic."""
        cand = name
        if cand.lower() in taken:
            h = short_hash(original, 6)
            n = 0
            while True:
                suffix = f"_{h}" if n == 0 else f"_{h}{n}"
                head = name if self.max_len is None else name[: self.max_len - len(suffix)]
                cand = head + suffix
                if cand.lower() not in taken:
                    break
                n += 1
        taken.add(cand.lower())
        return cand

    # ------------------------------------------------------------------ names of things
    def fixed(self, name: str) -> str:
        """A fixed (toolkit-chosen) column name, made safe for the dialect."""
        return self.fit(name)

    def column(self, field_name: str, taken: set[str], suffix: str = "", *, original: str | None = None) -> str:
        base = self.base(field_name)
        return self.unique(self.fit(base + suffix), taken, original if original is not None else field_name + suffix)

    def form_table(self, form_id: str, form_name: str, taken: set[str]) -> str:
        base = self.base(form_name, empty_prefix="form", digit_prefix="form_")
        fid = slug(form_id) or short_hash(form_id, 8)
        name = f"{base}_{fid}" if base != fid else f"form_{fid}"
        return self.unique(self.fit(name), taken, f"form {form_id}")

    def subform_table(self, parent: str, subform: str, taken: set[str]) -> str:
        return self.unique(self.fit(f"{parent}__{self.base(subform)}"), taken, f"{parent} subform {subform}")

    def part_table(self, main: str, index: int, taken: set[str]) -> str:
        """Continuation table ``index`` (2, 3, ...) of a table split for the column limit."""
        return self.unique(self.fit(f"{main}_p{index}"), taken, f"{main} part {index}")
