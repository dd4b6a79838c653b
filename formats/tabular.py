"""What the tabular and document writers share: column plans and value conversion.

A *column plan* lists, for a form (or one of its sub-forms), the columns of its table in a stable
order: the metadata columns first (``_id`` then every ``META_KEYS`` entry prefixed with ``_``, the
way the service's flat records name them, so a field called ``email`` never collides with the
submitter's e-mail), then ``_extra`` (every other served key, ``model.extra_json``), then one
column per value field in definition order, headed by the field name.
Sub-form tables start with ``_submission_id`` and ``_row_index``. Headers are made unique (a field
whose name collides with an earlier header gets ``~2``, ``~3``...).

Cell conversion keeps the original served text wherever typing failed, so nothing is lost.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exporter.model import (
    MEDIA,
    META_KEYS,
    FieldDef,
    Form,
    GeoPoint,
    MediaRef,
    SubformRow,
    Submission,
    Value,
    extra_json,
)

# ---- columns -------------------------------------------------------------------------------

META, VALUE, SUBMISSION_ID, ROW_INDEX, EXTRA = "meta", "value", "submission_id", "row_index", "extra"


@dataclass(frozen=True)
class Column:
    header: str
    source: str  # META | VALUE | SUBMISSION_ID | ROW_INDEX | EXTRA
    key: str  # meta key or field name
    field: FieldDef | None = None

    @property
    def kind(self) -> str:
        if self.field is not None:
            return self.field.kind
        return "number" if self.source == ROW_INDEX else "text"


def _unique(columns: list[Column]) -> list[Column]:
    seen: set[str] = set()
    out = []
    for c in columns:
        header, n = c.header, 1
        while header.casefold() in seen:
            n += 1
            header = f"{c.header}~{n}"
        seen.add(header.casefold())
        out.append(c if header == c.header else Column(header, c.source, c.key, c.field))
    return out


def form_columns(form: Form) -> list[Column]:
    cols = [Column("_id", SUBMISSION_ID, "id")]
    cols += [Column("_" + k, META, k) for k in META_KEYS]
    cols.append(Column("_extra", EXTRA, "extra"))
    cols += [Column(f.name, VALUE, f.name, f) for f in form.value_fields()]
    return _unique(cols)


def subform_columns(sub: FieldDef) -> list[Column]:
    cols = [Column("_submission_id", SUBMISSION_ID, "id"), Column("_row_index", ROW_INDEX, "index")]
    cols += [Column(f.name, VALUE, f.name, f) for f in sub.children if f.has_value]
    return _unique(cols)


# ---- cells ---------------------------------------------------------------------------------


def iso(value: dt.date | dt.time | dt.datetime) -> str:
    return value.isoformat()


def decimal_text(d: Decimal) -> str:
    """Plain notation (no exponent) for finite numbers; ``NaN``/``Infinity`` as such."""
    if not d.is_finite():
        return str(d)
    return format(d, "f")


def media_links(out, form: Form, sub: Submission, field: str, names, base_dir: str,
                subform: str | None = None, row: int | None = None) -> list[tuple[str, str]]:
    """(name, path relative to ``base_dir``) for every media name of one cell."""
    links = []
    for name in names or ():
        ref = MediaRef(form.id, sub.id, field, name, subform, row)
        links.append((name, relative(out.media_relpath(ref, form.name), base_dir)))
    return links


def column_links(out, form: Form, sub: Submission, col: Column, value, base_dir: str,
                 subform: FieldDef | None = None, row: SubformRow | None = None) -> list[tuple[str, str]] | None:
    """The media links of one cell of a form or sub-form table: None unless ``col`` is a media
    column (``subform``/``row``: the sub-form and row of a sub-form table)."""
    if col.field is None or col.field.kind != MEDIA:
        return None
    return media_links(out, form, sub, col.key, value, base_dir, subform.name if subform else None,
                       row.index if row else None)


def relative(target: str, base_dir: str) -> str:
    """POSIX path of ``target`` relative to the directory ``base_dir`` (both relative to the
    output root)."""
    # pure string work: posixpath.relpath asks the OS for the current directory on every call,
    # which showed up in profiles (one call per media per writer)
    t = [p for p in target.split("/") if p and p != "."]
    b = [p for p in (base_dir or "").split("/") if p and p != "."]
    common = 0
    while common < min(len(t), len(b)) and t[common] == b[common]:
        common += 1
    return "/".join([".."] * (len(b) - common) + t[common:]) or "."


def text_cell(value: Value, text: str | None, links: list[tuple[str, str]] | None = None) -> tuple[str, bool]:
    """(cell text, is_free_text): the canonical text of a typed value, or the original text when
    typing failed (``value is None``). ``is_free_text`` is True when the text came from a person
    (not from our own formatting of a typed value): that is what formula guards apply to."""
    if value is None:
        return (text or ""), bool(text)
    if isinstance(value, bool):
        return ("true" if value else "false"), False
    if isinstance(value, Decimal):
        return decimal_text(value), False
    if isinstance(value, (dt.date, dt.time, dt.datetime)):
        return iso(value), False
    if isinstance(value, GeoPoint):
        return f"{value.latitude},{value.longitude}", False
    if isinstance(value, tuple):
        if links is not None:
            return "; ".join(p for _, p in links), False
        return "; ".join(value), True
    return str(value), True


def json_value(value: Value, text: str | None, links: list[tuple[str, str]] | None = None) -> Any:
    """A typed value as JSON data: dates ISO, Decimal as a string (keeps every digit), GeoPoint
    as ``{"lat", "lon"}``, media as ``[{"name", "path"}]``; ``None`` where typing failed (the
    original text is kept next to it)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, (dt.date, dt.time, dt.datetime)):
        return iso(value)
    if isinstance(value, GeoPoint):
        return {"lat": value.latitude, "lon": value.longitude}
    if isinstance(value, tuple):
        if links is not None:
            return [{"name": n, "path": p} for n, p in links]
        return list(value)
    return str(value)


def row_cells(columns: list[Column], sub: Submission, row: SubformRow | None = None) -> Iterator[tuple[Column, Any, str | None]]:
    """(column, typed value, original text) for every column of a form row or sub-form row."""
    values = row.values if row is not None else sub.values
    texts = row.text if row is not None else sub.text
    for c in columns:
        if c.source == SUBMISSION_ID:
            yield c, sub.id, sub.id
        elif c.source == ROW_INDEX:
            yield c, row.index if row is not None else None, None
        elif c.source == META:
            v = sub.meta.get(c.key)
            yield c, v, v
        elif c.source == EXTRA:
            v = extra_json(sub.extra)
            yield c, v, v
        else:
            yield c, values.get(c.key), texts.get(c.key)


# ---- text hygiene --------------------------------------------------------------------------

#: what starts a formula; with the full-width forms (East Asian spreadsheets read a leading
#: U+FF1D as =)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")

#: a phone number or a signed number: one leading sign, then only digits, spaces, dots, dashes
#: and parentheses (at least one digit). No letter, no operator but the dash: nothing a
#: spreadsheet could call, reference or link; ``+1+1`` (a second ``+``) is not one.
PLAIN_NUMBER = re.compile(r"[+-][0-9 .()-]*[0-9][0-9 .()-]*")


#: spaces a spreadsheet may skip before reading a formula (`` =1+1``)
LEADING_SPACES = " \u00a0\u3000"


def guard_formula(text: str) -> str:
    """Neutralise a spreadsheet formula: text starting with ``= + - @``, tab or CR, after any
    leading spaces, gets ``'``, unless it is only a phone number or a signed number
    (``+33 6 12 34 56 78``, ``-12.5``)."""
    bare = text.lstrip(LEADING_SPACES)
    if bare.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(bare):
        return "'" + text
    return text


#: characters XML 1.0 (and so XLSX) cannot hold
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def escape_forbidden(text: str) -> str:
    """Replace every character XML 1.0 forbids by a visible ``\\uXXXX`` escape."""
    return XML_FORBIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def list_item_columns(items) -> tuple[int, int]:
    """(levels, columns per level) needed to show every item of a list."""
    levels = cols = 0
    for item in items:
        levels = max(levels, len(item.levels))
        for lv in item.levels:
            cols = max(cols, len(lv))
    return levels, cols


def list_item_headers(levels: int, cols: int) -> list[str]:
    out = []
    for lv in range(1, levels + 1):
        for c in range(1, cols + 1):
            out += [f"level{lv}_col{c}_label", f"level{lv}_col{c}_code"]
    return out


def list_item_cells(item, levels: int, cols: int) -> list[str | None]:
    out: list[str | None] = []
    for lv in range(levels):
        level = item.levels[lv] if lv < len(item.levels) else ()
        for c in range(cols):
            col = level[c] if c < len(level) else None
            out += [col.label if col else None, col.code if col else None]
    return out


USER_FIELDS = ("id", "login", "first_name", "last_name", "email", "phone", "admin", "main_group_id",
               "create_time")
#: the users table's columns: ``USER_FIELDS`` then ``_extra`` (every other served key, ``extra_json``)
USER_COLUMNS = (*USER_FIELDS, "_extra")


def long_value_path(out, base: str, long_name: str) -> str:
    """Where a writer keeps the full text of a cell it cut (``out``: its ``OutputDir``):
    ``<base>/long-values/<long_name>.txt``, relative to the output's root."""
    return "/".join(p for p in (base, "long-values", out.safe(long_name + ".txt")) if p)


def user_long_name(user_id: str, column: str) -> str:
    """The ``long_name`` of a users table cell: its file is ``long_value_path(out, "", ...)``."""
    return f"user-{user_id}-{column}"


def user_cell(user, key: str) -> Any:
    """One cell of the users table (``USER_COLUMNS``)."""
    return extra_json(user.extra) if key == "_extra" else getattr(user, key)
GROUP_FIELDS = ("id", "name", "parent_id")
#: the groups table's columns: ``GROUP_FIELDS`` then ``_extra``
GROUP_COLUMNS = (*GROUP_FIELDS, "_extra")


def group_cells(group) -> list:
    """The cells of one group (``GROUP_COLUMNS``)."""
    return [group.id, group.name, group.parent_id, extra_json(group.extra)]


LIST_FIELDS = ("id", "name", "class", "update_time", "items")
#: the lists table's columns (``lists.csv``, ``lists.xlsx``): ``LIST_FIELDS`` (``items``: how many)
#: then ``_extra`` (every other served key of the list, ``extra_json``)
LIST_COLUMNS = (*LIST_FIELDS, "_extra")


def list_cells(lst) -> list:
    """The cells of one external list (``LIST_COLUMNS``); its items have files of their own."""
    return [lst.id, lst.name, lst.class_, lst.update_time, len(lst.items), extra_json(lst.extra)]


def group_members(group) -> Iterator[tuple[str, str, str]]:
    """(group_id, user_id, role) with role ``member`` or ``leader``; a leader who is also listed
    as a member appears once per role."""
    for uid in group.users:
        yield group.id, uid, "member"
    for uid in group.leaders:
        yield group.id, uid, "leader"
