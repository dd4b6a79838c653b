"""Rows of the export tables from records, as tuples in a fixed column order.

Each form's plan is compiled once (:class:`FormRows`): per table part, its columns and, per
column, the function that fits a typed value to it. A submission then becomes one tuple per part
of the form table and one per sub-form row and part, straight from its typed values, with no
other object made on the way. A value its typed column cannot hold exactly goes to the row's
``unparsed_text`` as served. (Typing itself, text to value, is ``exporter.records``'s.)
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from exporter.errors import SinkError
from exporter.model import EXPORT, FORM_PICTURE, Document, DocumentRef, GeoPoint, Media, Submission, extra_json
from exporter.values import meta_time

from .columns import DELETED_AT, ID_LEN, KEY_LEN, META_TIMES, lineage_key
from .dialects.base import SqlProfile
from .plans import ColumnPlan, FormPlan, TablePlan

#: rows of table parts: part name -> its rows (tuples in the order of its ``columns``)
Rows = dict[str, list[tuple]]
#: ``fn(value, text, unparsed)``: the cell of one column from a typed value and its served text
CellFn = Callable[[Any, "str | None", dict], Any]


class _Fit:
    """What fitting a value to its column depends on in a dialect (decimal precision, booleans)."""

    def __init__(self, profile: SqlProfile):
        self.profile = profile
        p, s = profile.numeric_precision, profile.numeric_scale
        self.max_int_digits = (p or 0) - s
        self.scale = s

    def number(self, v: Any, text: str | None, unparsed: dict, key: str) -> Any:
        if not isinstance(v, Decimal) or not v.is_finite():
            _keep(unparsed, key, text)
            return None
        if self.profile.numeric_precision is None:  # the column keeps any decimal exactly
            return v
        _sign, digits, exp = v.as_tuple()  # finite: the exponent is an int
        assert isinstance(exp, int)
        int_digits = max(len(digits) + exp, 0)
        if int_digits > self.max_int_digits:
            _keep(unparsed, key, text)
            return None
        if exp < -self.scale:  # more decimals than the column keeps: rounded, text kept
            _keep(unparsed, key, text)
            return v.quantize(Decimal(1).scaleb(-self.scale))
        return v


def _keep(unparsed: dict, key: str, text: str | None) -> None:
    if text is not None and text.strip() != "":
        unparsed[key] = text


def check_id(value: str | None, what: str, context: str) -> str:
    if value is None or value == "":
        raise SinkError(f"{what} is empty", context=context)
    if len(value) > ID_LEN:
        raise SinkError(f"{what} is {len(value)} characters long, more than the {ID_LEN} an id column holds",
                        context=context)
    return value


def media_key(form_id: str, submission_id: str, subform: str | None, row: int | None, field: str, name: str) -> str:
    """The ``media`` table's key for one media of one submission: ``<form id>/<submission id>/``
    followed by 16 hex digits of the sha256 of the whole natural key (form, submission, sub-form,
    row, field, name). Keys of one submission sit side by side and grow with the ids, so a load
    appends to the key's index instead of writing all over it. When the ids are not plain ASCII or
    too long for the column, the key is the natural key's whole sha256 (64 hex digits) instead."""
    return _submission_key(form_id, submission_id, lineage_key(
        form_id, submission_id, subform or "", "" if row is None else str(row), field, name))


def _submission_key(form_id: str, submission_id: str, h: str) -> str:
    """``<form id>/<submission id>/`` and 16 hex digits of ``h``, or ``h`` whole (see ``media_key``)."""
    if len(form_id) + len(submission_id) + 18 <= KEY_LEN and (form_id + submission_id).isascii():
        return f"{form_id}/{submission_id}/{h[:16]}"
    return h


def document_key(ref: DocumentRef) -> str:
    """The ``documents`` table's key of one vendor document, made like ``media_key`` from its
    natural key (form, submission (none for a layout picture), kind, export id or field)."""
    sid = ref.submission_id or ""
    return _submission_key(ref.form_id, sid, lineage_key("document", ref.form_id, sid, ref.doc_kind, ref.key))


#: the columns of a ``media`` table row (``media_row``), in order
MEDIA_COLUMNS = ("media_key", "form_id", "submission_id", "field", "subform", "row_index", "name", "content_type",
                 "size", "sha256", "path")


def _text_or_none(v: Any) -> str | None:
    return v if v is None or type(v) is str else str(v)


def media_row(m: Media, size: Any, sha256: Any, path: str | None) -> tuple:
    """The ``media`` table row of one media file (its bytes, with ``--media-in-db``, go in after), in
    ``MEDIA_COLUMNS`` order. A size that is not a whole number (an archive may hold anything
    there) is unknown: NULL."""
    r = m.ref
    fid, sid = r.form_id, r.submission_id
    if not fid or not sid or len(fid) > ID_LEN or len(sid) > ID_LEN:
        ctx = f"form {fid} submission {sid} media {r.name}"
        check_id(fid, "form id", ctx)
        check_id(sid, "submission id", ctx)
    return (media_key(fid, sid, r.subform, r.row, r.field, r.name), fid, sid, r.field, r.subform, r.row, r.name,
            _text_or_none(m.content_type), size if type(size) is int else None, _text_or_none(sha256), path)


#: the columns of a ``documents`` table row (``document_row``), in order
DOCUMENT_COLUMNS = ("document_key", "form_id", "submission_id", "kind", "export_id", "field", "name", "content_type",
                    "size", "sha256", "path")


def document_row(d: Document, size: Any, sha256: Any, path: str | None) -> tuple:
    """The ``documents`` table row of one vendor document (its bytes, with ``--media-in-db``, go in
    after), in ``DOCUMENT_COLUMNS`` order: ``export_id`` for a custom export, ``field`` for a layout
    picture (whose ``submission_id`` is NULL)."""
    r = d.ref
    ctx = f"form {r.form_id} submission {r.submission_id} document {d.name}"
    check_id(r.form_id, "form id", ctx)
    if r.submission_id is not None:
        check_id(r.submission_id, "submission id", ctx)
    return (document_key(r), r.form_id, r.submission_id, r.doc_kind, r.key if r.doc_kind == EXPORT else None,
            r.key if r.doc_kind == FORM_PICTURE else None, d.name, _text_or_none(d.content_type),
            size if type(size) is int else None, _text_or_none(sha256), path)


def _cell_fn(c: ColumnPlan, fit: _Fit) -> CellFn:
    """The cell of column ``c`` from a typed value and its served text; a text that did not type
    is kept in ``unparsed`` (the row's ``unparsed_text``)."""
    k, name = c.sql_kind, c.field
    if k == "text":
        def text(v, t, un, _tuple=tuple):
            if t is None and v is not None and not isinstance(v, _tuple):
                return str(v)
            return t
        return text
    if k == "number":
        number = fit.number

        def num(v, t, un):
            if v is None:
                _keep(un, name, t)
                return None
            return number(v, t, un, name)
        return num
    if k == "double":
        lat = c.part == "lat"
        lon = c.part == "lon"

        def double(v, t, un):
            if isinstance(v, GeoPoint):
                return v.latitude if lat else v.longitude
            if lon:  # the text is kept once, under the field name, by the lat column
                return None
            _keep(un, name, t)
            return None
        return double
    if k == "boolean":
        as_int = fit.profile.boolean_as_int

        def boolean(v, t, un):
            if isinstance(v, bool):
                return int(v) if as_int else v
            _keep(un, name, t)
            return None
        return boolean
    if k in ("date", "time", "datetime"):
        ok = {"date": lambda x: isinstance(x, dt.date) and not isinstance(x, dt.datetime),
              "time": lambda x: isinstance(x, dt.time),
              "datetime": lambda x: isinstance(x, dt.datetime)}[k]
        exact = {"date": dt.date, "time": dt.time, "datetime": dt.datetime}[k]

        def temporal(v, t, un):
            if type(v) is exact or ok(v):
                return v
            _keep(un, name, t)
            return None
        return temporal
    return lambda v, t, un: t


class TableRows:
    """One table plan (a form or a sub-form, possibly split in parts) compiled: the columns of each
    part, in row order, and the cells that fill them. Part 0's row ends with its fixed columns."""

    __slots__ = ("parts", "columns", "cells", "split")

    def __init__(self, tp: TablePlan, fit: _Fit, lead: list[str], tail: list[str]):
        self.parts = tuple(tp.parts)
        active = tp.active()
        #: (field, fn) of every active column, part after part
        self.cells: tuple[tuple[str, CellFn], ...] = tuple(
            (c.field, _cell_fn(c, fit)) for p in tp.parts for c in active if c.table == p)
        self.columns: dict[str, tuple[str, ...]] = {}
        #: for a table in several parts: (part, first cell, end) of each, in ``cells``
        self.split: tuple[tuple[str, int, int], ...] = ()
        start = 0
        split = []
        for i, p in enumerate(tp.parts):
            mine = [c.column for c in active if c.table == p]
            keys = tp.key_columns
            self.columns[p] = (*keys, *(lead if i == 0 else ()), *mine, *(tail if i == 0 else ()))
            split.append((p, start, start + len(mine)))
            start += len(mine)
        if len(tp.parts) > 1:
            self.split = tuple(split)


class FormRows:
    """A form's plan compiled for rows (see the module docstring); made once per plan."""

    __slots__ = ("profile", "form_id", "main", "meta", "times", "subs")

    def __init__(self, plan: FormPlan, profile: SqlProfile):
        fit = _Fit(profile)
        main = plan.main
        self.profile = profile
        self.form_id = plan.form.id
        #: the metadata key of each metadata column, in row order, and (position, key) of the times
        self.meta = tuple(main.meta_columns)
        self.times = tuple((i, mk) for i, mk in enumerate(self.meta) if mk in META_TIMES)
        tail = [main.unparsed_column, main.extra_column or "extra_keys", main.deleted_column or DELETED_AT]
        self.main = TableRows(main, fit, list(main.meta_columns.values()), tail)
        self.subs = tuple((name, TableRows(tp, fit, [], [tp.unparsed_column])) for name, tp in plan.subforms.items())

    def columns(self) -> dict[str, tuple[str, ...]]:
        """Every part's columns, in row order."""
        out = dict(self.main.columns)
        for _name, tr in self.subs:
            out.update(tr.columns)
        return out

    def add(self, sub: Submission, out: Rows) -> None:
        """The rows of one submission, appended to ``out``'s lists (one per part)."""
        sid = sub.id
        if not sid or len(sid) > ID_LEN:
            check_id(sid, "submission id", f"form {self.form_id} submission {sid}")
        un: dict[str, str] = {}
        lead: list[Any] = list(map(sub.meta.get, self.meta))
        for i, mk in self.times:
            t = lead[i]
            if t is not None:
                v, keep = meta_time(t)
                if keep:
                    un[f"_meta:{mk}"] = t
                lead[i] = v
        values, texts = sub.values.get, sub.text.get
        main = self.main
        cells = [fn(values(name), texts(name), un) for name, fn in main.cells]
        extra = sub.extra
        tail = (json.dumps(un, ensure_ascii=False, sort_keys=True) if un else None,
                extra_json(extra) if extra else None, None)
        if not main.split:
            out[main.parts[0]].append((sid, *lead, *cells, *tail))
        else:
            for i, (part, a, b) in enumerate(main.split):
                out[part].append((sid, *lead, *cells[a:b], *tail) if i == 0 else (sid, *cells[a:b]))
        sub_rows = sub.subforms
        for sf_name, tr in self.subs:
            rows = sub_rows.get(sf_name)
            if not rows:
                continue
            for row in rows:
                un = {}
                values, texts = row.values.get, row.text.get
                cells = [fn(values(name), texts(name), un) for name, fn in tr.cells]
                unparsed = json.dumps(un, ensure_ascii=False, sort_keys=True) if un else None
                if not tr.split:
                    out[tr.parts[0]].append((sid, row.index, *cells, unparsed))
                    continue
                for i, (part, a, b) in enumerate(tr.split):
                    out[part].append((sid, row.index, *cells[a:b], unparsed) if i == 0 else (sid, row.index, *cells[a:b]))


def form_rows(plan: FormPlan, profile: SqlProfile) -> FormRows:
    """``plan`` compiled for ``profile`` (kept with the plan: a plan is not changed once made)."""
    c = plan.compiled
    if c is None or c.profile is not profile:
        c = plan.compiled = FormRows(plan, profile)
    return c


def records_rows(plan: FormPlan, profile: SqlProfile, records: Iterable[Any]) -> tuple[Rows, list[tuple]]:
    """The rows of the ``Submission``\\ s among ``records``, per table part (every part listed, empty
    or not), and the ``media`` rows ``media_row`` makes of their ``Media`` (sizes and hashes as
    the records give them, no path)."""
    fr = form_rows(plan, profile)
    rows: Rows = {p: [] for p in fr.columns()}
    media: list[tuple] = []
    add = fr.add
    for r in records:
        if r.kind == "media":
            media.append(media_row(r, r.size, r.sha256, None))
        else:
            add(r, rows)
    return rows, media


def submission_rows(plan: FormPlan, sub: Submission, profile: SqlProfile
                    ) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """The rows of one submission as dicts (column -> value), for tests and tools: {part: row} of
    the form table, {part: [rows]} of its sub-form tables."""
    fr = form_rows(plan, profile)
    cols = fr.columns()
    out: Rows = {p: [] for p in cols}
    fr.add(sub, out)
    parent = {p: dict(zip(cols[p], out[p][0], strict=True)) for p in fr.main.parts}
    children = {p: [dict(zip(cols[p], r, strict=True)) for r in out[p]] for _n, tr in fr.subs for p in tr.parts}
    return parent, children
