"""Rows of the export tables from records: a form's submissions (through its compiled plan) and
media. A value its typed column cannot hold exactly goes to the row's ``unparsed_text`` as served."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from exporter.errors import SinkError
from exporter.model import EXPORT, FORM_PICTURE, Document, DocumentRef, GeoPoint, Media, Submission, extra_json

from .columns import DELETED_AT, ID_LEN, KEY_LEN, META_TIMES, lineage_key
from .dialects.base import SqlProfile
from .plans import ColumnPlan, FormPlan, TablePlan


class _Converter:
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
        _sign, digits, exp = v.as_tuple()
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


# texts of metadata times already read (naive ones only: nothing to keep aside); a submission's six
# times are often equal and neighbouring submissions share them
_META_TIMES: dict[str, dt.datetime] = {}


def parse_meta_time(text: str | None, unparsed: dict, key: str) -> dt.datetime | None:
    v = _META_TIMES.get(text)  # type: ignore[arg-type]
    if v is not None:
        return v
    if text is None or not text.strip():
        return None
    try:
        v = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        unparsed[f"_meta:{key}"] = text
        return None
    if v.tzinfo is not None:
        unparsed[f"_meta:{key}"] = text
        return v.replace(tzinfo=None)
    if len(_META_TIMES) >= 4096:
        _META_TIMES.clear()
    _META_TIMES[text] = v
    return v


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
MEDIA_COLUMNS = ["media_key", "form_id", "submission_id", "field", "subform", "row_index", "name", "content_type",
                 "size", "sha256", "path"]


def media_row(m: Media, size: int | None, sha256: str | None, path: str | None) -> dict:
    """The ``media`` table row of one media file (its bytes, with ``--media-in-db``, go in after)."""
    r = m.ref
    fid, sid = r.form_id, r.submission_id
    if not fid or not sid or len(fid) > ID_LEN or len(sid) > ID_LEN:
        ctx = f"form {fid} submission {sid} media {r.name}"
        check_id(fid, "form id", ctx)
        check_id(sid, "submission id", ctx)
    return dict(zip(MEDIA_COLUMNS, (media_key(fid, sid, r.subform, r.row, r.field, r.name), fid, sid, r.field,
                                    r.subform, r.row, r.name, m.content_type, size, sha256, path), strict=True))


#: the columns of a ``documents`` table row (``document_row``), in order
DOCUMENT_COLUMNS = ["document_key", "form_id", "submission_id", "kind", "export_id", "field", "name", "content_type",
                    "size", "sha256", "path"]


def document_row(d: Document, size: int | None, sha256: str | None, path: str | None) -> dict:
    """The ``documents`` table row of one vendor document (its bytes, with ``--media-in-db``, go in
    after): ``export_id`` for a custom export, ``field`` for a layout picture (whose
    ``submission_id`` is NULL)."""
    r = d.ref
    ctx = f"form {r.form_id} submission {r.submission_id} document {d.name}"
    check_id(r.form_id, "form id", ctx)
    if r.submission_id is not None:
        check_id(r.submission_id, "submission id", ctx)
    return dict(zip(DOCUMENT_COLUMNS, (
        document_key(r), r.form_id, r.submission_id, r.doc_kind, r.key if r.doc_kind == EXPORT else None,
        r.key if r.doc_kind == FORM_PICTURE else None, d.name, d.content_type, size, sha256, path), strict=True))


def _cell_fn(c: ColumnPlan, conv: _Converter):
    """``fn(value, text, unparsed)``: the cell of column ``c`` from a typed value and its served
    text; a text that did not type is kept in ``unparsed`` (the row's ``unparsed_text``)."""
    k, name = c.sql_kind, c.field
    if k == "text":
        def text(v, t, un, _tuple=tuple):
            if t is None and v is not None and not isinstance(v, _tuple):
                return str(v)
            return t
        return text
    if k == "number":
        number = conv.number

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
        as_int = conv.profile.boolean_as_int

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


class _RowPlan:
    """One table plan compiled for ``submission_rows``: per part, (column, field, fn)."""

    __slots__ = ("parts", "first", "key", "row_key", "unparsed", "cols", "single")

    def __init__(self, tp: TablePlan, conv: _Converter):
        self.parts = tuple(tp.parts)
        self.first = tp.parts[0]
        self.key = tp.key_columns[0]
        self.row_key = tp.key_columns[1] if len(tp.key_columns) > 1 else None
        self.unparsed = tp.unparsed_column
        active = tp.active()
        # (part, column, field, fn) in plan order: the row dicts get their keys in that order
        self.cols = tuple((c.table, c.column, c.field, _cell_fn(c, conv)) for c in active)
        self.single = len(self.parts) == 1


class _CompiledRows:
    __slots__ = ("profile", "main", "meta", "subs", "extra", "deleted")

    def __init__(self, plan: FormPlan, profile: SqlProfile):
        conv = _Converter(profile)
        self.profile = profile
        self.main = _RowPlan(plan.main, conv)
        self.meta = tuple((mk, col, mk in META_TIMES) for mk, col in plan.main.meta_columns.items())
        self.extra = plan.main.extra_column
        self.subs = tuple((name, _RowPlan(tp, conv)) for name, tp in plan.subforms.items())
        self.deleted = plan.main.deleted_column or DELETED_AT


def _compiled(plan: FormPlan, profile: SqlProfile) -> _CompiledRows:
    c = plan.compiled
    if c is None or c.profile is not profile:
        c = plan.compiled = _CompiledRows(plan, profile)
    return c


def _dumps(un: dict) -> str:
    return json.dumps(un, ensure_ascii=False, sort_keys=True)


def submission_rows(plan: FormPlan, sub: Submission, profile: SqlProfile
                    ) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Rows of one submission: {part table: row} for the form, {part table: [rows]} for sub-forms."""
    comp = _compiled(plan, profile)
    sid = check_id(sub.id, "submission id", f"form {plan.form.id} submission {sub.id}")
    return _submission_rows(comp, sid, sub)


def records_rows(plan: FormPlan, profile: SqlProfile, records: Iterable[Any]
                 ) -> tuple[dict[str, list[dict]], list[dict]]:
    """The rows ``submission_rows`` makes of the ``Submission``\\ s among ``records``, per table
    part, and the ``media`` rows ``media_row`` makes of their ``Media`` (sizes and hashes as the
    records give them, no path)."""
    rows: dict[str, list[dict]] = {}
    media: list[dict] = []
    for r in records:
        if r.kind == "media":
            media.append(media_row(r, r.size, r.sha256, None))
            continue
        parent, children = submission_rows(plan, r, profile)
        for part, row in parent.items():
            rows.setdefault(part, []).append(row)
        for part, more in children.items():
            rows.setdefault(part, []).extend(more)
    return rows, media


def _submission_rows(comp: _CompiledRows, sid: str, sub: Submission
                     ) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    main = comp.main
    unparsed: dict[str, str] = {}
    if main.single:
        first = {main.key: sid}
        parent = {main.first: first}
    else:
        parent = {p: {main.key: sid} for p in main.parts}
        first = parent[main.first]
    meta = sub.meta
    for mk, col, is_time in comp.meta:
        t = meta.get(mk)
        first[col] = parse_meta_time(t, unparsed, mk) if is_time else t
    values, texts = sub.values.get, sub.text.get
    if main.single:
        for _part, col, name, fn in main.cols:
            first[col] = fn(values(name), texts(name), unparsed)
    else:
        for part, col, name, fn in main.cols:
            parent[part][col] = fn(values(name), texts(name), unparsed)
    first[main.unparsed] = _dumps(unparsed) if unparsed else None
    first[comp.extra] = extra_json(sub.extra)
    first[comp.deleted] = None  # served: not deleted (any more)
    children: dict[str, list[dict]] = {}
    sub_rows = sub.subforms
    for sf_name, tp in comp.subs:
        if tp.single:
            out = children.setdefault(tp.first, [])
        else:
            for p in tp.parts:
                children.setdefault(p, [])
        key, row_key, unparsed_col = tp.key, tp.row_key, tp.unparsed
        for row in sub_rows.get(sf_name, ()):
            un: dict[str, str] = {}
            rvalues, rtexts = row.values.get, row.text.get
            if tp.single:
                r = {key: sid, row_key: row.index}
                for _part, col, name, fn in tp.cols:
                    r[col] = fn(rvalues(name), rtexts(name), un)
                r[unparsed_col] = _dumps(un) if un else None
                out.append(r)
                continue
            prow = {p: {key: sid, row_key: row.index} for p in tp.parts}
            for part, col, name, fn in tp.cols:
                prow[part][col] = fn(rvalues(name), rtexts(name), un)
            prow[tp.first][unparsed_col] = _dumps(un) if un else None
            for p, r in prow.items():
                children[p].append(r)
    return parent, children
