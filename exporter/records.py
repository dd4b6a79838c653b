"""Turn service payloads (either record shape) into canonical records.

Shared by the web-service source and the archive source, so an archive replays exactly as the
service would have been read. Every function here is pure: dict in, record out.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from .errors import BadAnswerError
from .model import (
    BOOLEAN,
    DATE,
    DATETIME,
    GEOLOC,
    GROUP_KEYS,
    LAYOUT,
    LIST_KEYS,
    MEDIA,
    META_KEYS,
    NUMBER,
    SUBFORM,
    TIME,
    USER_KEYS,
    ExternalList,
    FieldDef,
    Form,
    GeoPoint,
    Group,
    MediaRef,
    SubformRow,
    Submission,
    User,
    Value,
    kind_of,
)


def _s(v: Any) -> str | None:
    """Service ids and values arrive as strings, numbers or null: normalise to str/None."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


# --------------------------------------------------------------------------------------------
# Forms
# --------------------------------------------------------------------------------------------


def _field_defs(fields: Any, context: str) -> tuple[FieldDef, ...]:
    if fields in (None, [], {}):
        return ()
    if isinstance(fields, list):  # some exports give a list of {name:..} objects
        items = [(f.get("name") or f.get("id"), f) for f in fields if isinstance(f, dict)]
    elif isinstance(fields, dict):
        items = list(fields.items())
    else:
        raise BadAnswerError(f"form fields are a {type(fields).__name__}, expected an object", context=context)
    out = []
    for name, spec in items:
        if not isinstance(spec, dict):
            spec = {"type": "text"}
        ftype = _s(spec.get("type")) or "text"
        kind = kind_of(ftype)
        children: tuple[FieldDef, ...] = ()
        if kind == SUBFORM:
            children = _field_defs(spec.get("fields") or spec.get("subfields") or spec.get("children"),
                                   f"{context} sub-form {name}")
        out.append(FieldDef(
            name=str(name), type=ftype, kind=kind, caption=_s(spec.get("caption")) or "",
            subtype=_s(spec.get("subtype")), required=bool(spec.get("required")),
            list_id=_s(spec.get("list_id")) or None, children=children, raw=spec,
        ))
    return tuple(out)


def parse_form(payload: dict) -> Form:
    """``payload`` is the ``form`` object of ``GET /forms/{id}``."""
    if not isinstance(payload, dict) or "id" not in payload:
        raise BadAnswerError("form definition without an id")
    fid = _s(payload["id"])
    return Form(
        id=fid, name=_s(payload.get("name")) or fid,
        fields=_field_defs(payload.get("fields"), f"form {fid}"),
        class_=_s(payload.get("class")), update_time=_s(payload.get("update_time")),
        options=payload.get("options") if isinstance(payload.get("options"), dict) else {},
        raw=payload,
    )


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

_DATE_RES = [
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), lambda m: dt.date(int(m[1]), int(m[2]), int(m[3]))),
    (re.compile(r"^(\d{2})/(\d{2})/(\d{4})$"), lambda m: dt.date(int(m[3]), int(m[2]), int(m[1]))),
]
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_DATETIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$")
_TRUE = {"1", "true", "yes", "oui", "on", "vrai", "x"}
_FALSE = {"0", "false", "no", "non", "off", "faux", ""}


def typed_value(fdef: FieldDef, text: str | None, options: dict, cell: dict | None = None) -> Value:
    """Type one served value from its field definition. Returns None where the text does not
    parse; the caller keeps the text, so nothing is lost. (Parsing a whole submission runs the
    same converters through a per-form plan, see below.)"""
    bools = (_s(options.get("checkbox_output_true_value")), _s(options.get("checkbox_output_false_value")))
    return _CONVERTERS.get(fdef.kind, _conv_text)(text, cell, bools)


def _subform_rows(cell: Any) -> list:
    if isinstance(cell, dict) and "value" in cell:
        cell = cell["value"]
    if cell in (None, ""):
        return []
    if isinstance(cell, list):
        return cell
    raise BadAnswerError(f"sub-form value is a {type(cell).__name__}, expected a list of rows")


# --------------------------------------------------------------------------------------------
# Compiled parse plans
#
# One converter per field kind (``typed_value`` calls them one value at a time). Parsing a
# submission runs a per-form plan: the converters chosen once per field, with fast paths for the
# common ISO shapes that only accept texts the regex path would read the same way, falling back
# to it otherwise.
# --------------------------------------------------------------------------------------------

_date_iso = dt.date.fromisoformat
_time_iso = dt.time.fromisoformat
_datetime_iso = dt.datetime.fromisoformat
_PARSE_ERRORS = (InvalidOperation, ValueError, OverflowError)


def _conv_text(text: str | None, cell: dict | None, bools: Any) -> Value:
    return text


def _conv_number(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    if not t:
        return None
    try:
        return Decimal(t.replace(",", ".").replace(" ", ""))
    except _PARSE_ERRORS:
        return None


def _date_slow(t: str) -> Value:
    try:
        for rx, make in _DATE_RES:
            m = rx.match(t)
            if m:
                return make(m)
    except _PARSE_ERRORS:
        return None
    return None


def _conv_date(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    if len(t) == 10 and t[4] == "-":
        try:
            v = _date_iso(t)
        except ValueError:
            pass
        else:
            if v.isoformat() == t:  # exactly YYYY-MM-DD in ASCII digits: what the regex reads
                return v
    return _date_slow(t)


def _time_slow(t: str) -> Value:
    m = _TIME_RE.match(t)
    try:
        return dt.time(int(m[1]), int(m[2]), int(m[3] or 0)) if m else None
    except _PARSE_ERRORS:
        return None


def _conv_time(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    n = len(t)
    if (n == 5 or n == 8) and t[2] == ":":
        try:
            v = _time_iso(t)
        except ValueError:
            pass
        else:
            if v.tzinfo is None and v.microsecond == 0 and v.isoformat()[:n] == t and (n == 8 or not v.second):
                return v
    return _time_slow(t)


def _datetime_slow(t: str) -> Value:
    m = _DATETIME_RE.match(t)
    if not m:
        return None
    try:
        return dt.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
    except _PARSE_ERRORS:
        return None


def _conv_datetime(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    n = len(t)
    if (n == 19 or n == 16) and t[4] == "-":
        sep = t[10]
        if sep == " " or sep == "T":
            try:
                v = _datetime_iso(t)
            except ValueError:
                pass
            else:
                if (v.tzinfo is None and v.microsecond == 0 and v.isoformat(sep)[:n] == t
                        and (n == 19 or not v.second)):
                    return v
    return _datetime_slow(t)


def _conv_boolean(text: str | None, cell: dict | None, bools: Any) -> Value:
    if cell and isinstance(cell.get("boolean"), bool):
        return cell["boolean"]
    if text is None:
        return None
    t = text.strip()
    true_v, false_v = bools
    if true_v is not None and t == true_v:
        return True
    if false_v is not None and t == false_v:
        return False
    low = t.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return None


def _conv_geoloc(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    try:
        parts = [p.strip() for p in t.replace(";", ",").split(",")]
        if len(parts) < 2 or not parts[0]:
            return None
        lat, lon = float(parts[0]), float(parts[1])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return None
        return GeoPoint(lat, lon)
    except _PARSE_ERRORS:
        return None


def _conv_media(text: str | None, cell: dict | None, bools: Any) -> Value:
    """The media names of a value: comma-separated, blanks around each name dropped, empty names
    skipped (one name, the usual case, without splitting)."""
    if text is None:
        return None
    if "," not in text:
        t = text.strip()
        return (t,) if t else ()
    return tuple([n for n in map(str.strip, text.split(",")) if n])


_CONVERTERS = {NUMBER: _conv_number, DATE: _conv_date, TIME: _conv_time, DATETIME: _conv_datetime,
               BOOLEAN: _conv_boolean, GEOLOC: _conv_geoloc, MEDIA: _conv_media}


_FLAT_META_KEYS = tuple("_" + k for k in META_KEYS)


def _json_text(v: list | dict) -> str | None:
    """The text of a structured value served where the model expects a text (a field of a type
    it does not know): compact JSON, keys sorted, so it is kept as served."""
    return json.dumps(v, ensure_ascii=False, sort_keys=True, separators=(",", ":")) if v else None


class _ParsePlan:
    """What parsing a submission of one form definition needs, worked out once."""

    __slots__ = ("fields", "top", "has_bool", "bools", "known_nested", "known_flat", "names", "row_names")

    def __init__(self, fields: tuple[FieldDef, ...]):
        self.fields = fields  # kept: the cache key is its identity
        # (name, converter (None: the text as is), is_media, name starts with "_", sub-form
        # children or None)
        top = []
        has_bool = False
        for f in fields:
            if f.kind == LAYOUT:
                continue
            if f.kind == SUBFORM:
                kids = tuple((c.name, _CONVERTERS.get(c.kind), c.kind == MEDIA)
                             for c in f.children if c.has_value)
                has_bool = has_bool or any(c.kind == BOOLEAN for c in f.children if c.has_value)
                top.append((f.name, None, False, f.name.startswith("_"), kids))
                continue
            has_bool = has_bool or f.kind == BOOLEAN
            top.append((f.name, _CONVERTERS.get(f.kind), f.kind == MEDIA, f.name.startswith("_"), None))
        self.top = tuple(top)
        self.has_bool = has_bool
        # the served keys the model reads; every other key goes to ``Submission.extra``
        self.names = frozenset(f.name for f in fields)
        self.row_names = tuple((f.name, frozenset(c.name for c in f.children)) for f in fields if f.kind == SUBFORM)
        self.known_nested = frozenset(("id", "form_id", "fields", *META_KEYS))
        self.known_flat = frozenset(("_id", "_form_id", *_FLAT_META_KEYS,
                                     *(n for n in self.names if not n.startswith("_"))))
        self.bools: tuple[Any, Any] = (None, None)  # (form options, checkbox_texts) of the last form parsed


_PLANS: dict[int, _ParsePlan] = {}


def _parse_plan(fields: tuple[FieldDef, ...]) -> _ParsePlan:
    plan = _PLANS.get(id(fields))
    if plan is None or plan.fields is not fields:
        plan = _ParsePlan(fields)
        if len(_PLANS) >= 256:
            _PLANS.clear()
        _PLANS[id(fields)] = plan
    return plan


_STR_OR_NONE = frozenset((str, type(None)))


def _text_of(cell: Any) -> str | None:
    if isinstance(cell, dict):
        v = cell.get("value")
        return None if isinstance(v, (list, dict)) else _s(v)
    if isinstance(cell, (list, dict)):
        return None
    return _s(cell)


# --------------------------------------------------------------------------------------------
# Submissions
# --------------------------------------------------------------------------------------------


def _is_flat(payload: dict) -> bool:
    return "fields" not in payload and ("_id" in payload or "id" not in payload)


def submission_id(payload: Any) -> str | None:
    """The id of a served submission (either shape), without parsing the rest."""
    if not isinstance(payload, dict):
        return None
    return _s(payload.get("_id") if _is_flat(payload) else payload.get("id"))


def _parse_fields(plan: _ParsePlan, cells: dict, flat: bool, bools: Any, form_id: str, sid: str
                  ) -> tuple[dict[str, Value], dict[str, str | None], dict[str, list[SubformRow]], list[MediaRef]]:
    """The field loop of ``parse_submission``: typed values, texts, sub-form rows and media references
    (not yet made unique)."""
    values: dict[str, Value] = {}
    text: dict[str, str | None] = {}
    subforms: dict[str, list[SubformRow]] = {}
    media: list[MediaRef] = []
    cget = cells.get
    for name, conv, is_media, underscored, kids in plan.top:
        cell = None if (flat and underscored) else cget(name)
        if kids is not None:
            rows = []
            try:
                raw_rows = _subform_rows(cell)
            except BadAnswerError as e:
                raise BadAnswerError(e.message, context=f"form {form_id} submission {sid} field {name}") from None
            for i, raw_row in enumerate(raw_rows):
                if not isinstance(raw_row, dict):
                    raise BadAnswerError(f"sub-form row {i} is not an object",
                                         context=f"form {form_id} submission {sid} field {name}")
                rv: dict[str, Value] = {}
                rt: dict[str, str | None] = {}
                rget = raw_row.get
                for cname, cconv, c_media in kids:
                    c = rget(cname)
                    if isinstance(c, dict):
                        v = c.get("value")
                        t = v if type(v) is str else (
                            (None if cconv else _json_text(v)) if isinstance(v, (list, dict)) else _s(v))
                    else:
                        t = c if type(c) is str else (
                            _json_text(c) if cconv is None and isinstance(c, list) else _text_of(c))
                        c = None
                    rt[cname] = t
                    val = rv[cname] = t if cconv is None else cconv(t, c, bools)
                    if c_media and val:
                        media.extend([MediaRef(form_id, sid, cname, n, name, i) for n in val])
                rows.append(SubformRow(i, rv, rt))
            subforms[name] = rows
            continue
        if isinstance(cell, dict):
            v = cell.get("value")
            t = v if type(v) is str else (
                (None if conv else _json_text(v)) if isinstance(v, (list, dict)) else _s(v))
        else:
            t = cell if type(cell) is str else (
                _json_text(cell) if conv is None and isinstance(cell, list) else _text_of(cell))
            cell = None
        text[name] = t
        val = values[name] = t if conv is None else conv(t, cell, bools)
        if is_media and val:
            if len(val) == 1:
                media.append(MediaRef(form_id, sid, name, val[0]))
            else:
                media.extend([MediaRef(form_id, sid, name, n) for n in val])
    return values, text, subforms, media


def checkbox_texts(form: Form, plan: _ParsePlan | None = None) -> tuple[str | None, str | None] | None:
    """What the converters of ``form``'s checkboxes read as true and false (None: no checkbox)."""
    plan = plan or _parse_plan(form.fields)
    if not plan.has_bool:
        return None
    options = form.options
    seen, texts = plan.bools
    if seen is options:  # the same form's options as for the previous submission
        return texts
    texts = _s(options.get("checkbox_output_true_value")), _s(options.get("checkbox_output_false_value"))
    plan.bools = (options, texts)
    return texts


def parse_submission(form: Form, payload: dict) -> Submission:
    """Parse one submission, nested (``GET /data/{d}``) or flat (``_``-prefixed) shape."""
    if not isinstance(payload, dict):
        raise BadAnswerError(f"submission is a {type(payload).__name__}, expected an object",
                             context=f"form {form.id}")
    flat = _is_flat(payload)
    if flat:
        sid = _s(payload.get("_id"))
        cells = payload
    else:
        sid = _s(payload.get("id"))
        cells = payload.get("fields")
        cells = {} if cells is None else cells
        if not isinstance(cells, dict):
            raise BadAnswerError("submission 'fields' is not an object", context=f"form {form.id}")
    if not sid:
        raise BadAnswerError("submission without an id", context=f"form {form.id}")
    raw_meta = list(map(payload.get, _FLAT_META_KEYS if flat else META_KEYS))
    if _STR_OR_NONE.issuperset(map(type, raw_meta)):  # the usual case: nothing to normalise
        meta = dict(zip(META_KEYS, raw_meta, strict=True))
    else:
        meta = dict(zip(META_KEYS, map(_s, raw_meta), strict=True))
    plan = _parse_plan(form.fields)
    bools = checkbox_texts(form, plan)
    form_id = form.id
    values, text, subforms, media = _parse_fields(plan, cells, flat, bools, form_id, sid)
    return Submission(form_id=form_id, id=sid, meta=meta, values=values, text=text,
                      subforms=subforms, media=_unique_media(media), raw=payload,
                      extra=_submission_extra(plan, payload, cells, flat))


def _submission_extra(plan: _ParsePlan, payload: dict, cells: dict, flat: bool) -> dict:
    """Every served key of a submission the model does not read, named as in the nested shape
    (so both shapes give the same): metadata keys as served, values of fields the definition
    does not know under ``"fields"`` (the value only, as the flat shape serves it), and the keys
    of sub-form rows their sub-form does not know under ``"subforms"`` (sub-form -> row index ->
    key -> value)."""
    # set differences, then only the few unknown keys visited, in sorted order (deterministic)
    if flat:
        rest = sorted(payload.keys() - plan.known_flat)
        extra = {k[1:]: payload[k] for k in rest if k[:1] == "_"}
        unknown = {k: payload[k] for k in rest if k[:1] != "_"} if len(extra) < len(rest) else {}
    else:
        extra = {k: payload[k] for k in sorted(payload.keys() - plan.known_nested)}
        unknown = {}
        for k in sorted(cells.keys() - plan.names):
            cell = cells[k]
            unknown[k] = cell.get("value") if isinstance(cell, dict) and "value" in cell else cell
    if unknown:
        extra["fields"] = unknown
    rows_extra = {}
    for name, known_cols in plan.row_names:
        if flat and name.startswith("_"):
            continue
        cell = cells.get(name)
        rows = cell.get("value") if isinstance(cell, dict) else cell
        if not isinstance(rows, list):
            continue
        got = {}
        for i, row in enumerate(rows):
            if isinstance(row, dict) and not known_cols.issuperset(row):
                got[str(i)] = {k: (c.get("value") if isinstance(c, dict) and "value" in c else c)
                               for k, c in row.items() if k not in known_cols}
        if got:
            rows_extra[name] = got
    if rows_extra:
        extra["subforms"] = rows_extra
    return extra


def _unique_media(media: list[MediaRef]) -> tuple[MediaRef, ...]:
    """Media references in order, each (field, row, name) once."""
    if len(media) < 2:
        return tuple(media)
    seen, uniq = set(), []
    for m in media:
        key = (m.subform, m.row, m.field, m.name)
        if key not in seen:
            seen.add(key)
            uniq.append(m)
    return tuple(uniq)


def flatten_submission(payload: dict) -> dict:
    """Nested record -> flat ``_``-prefixed record (what ``data/advanced`` and ``data/unread``
    serve). Sub-form values stay row lists (``format=basic``)."""
    out: dict[str, Any] = {}
    for k, v in payload.items():
        if k == "fields":
            continue
        out["_" + k] = v
    for name, cell in (payload.get("fields") or {}).items():
        v = cell.get("value") if isinstance(cell, dict) else cell
        if isinstance(v, list):
            out[name] = [
                {ck: (cv.get("value") if isinstance(cv, dict) else cv) for ck, cv in row.items()}
                if isinstance(row, dict) else row
                for row in v
            ]
        else:
            out[name] = v
    return out


# --------------------------------------------------------------------------------------------
# Users, groups, lists
# --------------------------------------------------------------------------------------------


def parse_user(p: dict) -> User:
    if not isinstance(p, dict) or p.get("id") in (None, ""):
        raise BadAnswerError("user without an id")
    return User(
        id=_s(p["id"]), login=_s(p.get("login")) or "", first_name=_s(p.get("first_name")) or "",
        last_name=_s(p.get("last_name")) or "", email=_s(p.get("email")) or "",
        phone=_s(p.get("phone")) or "", admin=str(p.get("admin")).lower() in ("1", "true"),
        main_group_id=_s(p.get("main_group_id")) or None, create_time=_s(p.get("create_time")),
        raw=p, extra={k: v for k, v in p.items() if k not in USER_KEYS},
    )


def _ids(v: Any) -> tuple[str, ...]:
    if not v:
        return ()
    out = []
    for x in v:
        if isinstance(x, dict):
            x = x.get("id")
        if x not in (None, ""):
            out.append(str(x))
    return tuple(out)


def parse_group(p: dict) -> Group:
    if not isinstance(p, dict) or p.get("id") in (None, ""):
        raise BadAnswerError("group without an id")
    parent = _s(p.get("parent_group_id") or p.get("parent_id"))
    return Group(
        id=_s(p["id"]), name=_s(p.get("name")) or "", parent_id=parent if parent not in ("", "0") else None,
        users=_ids(p.get("users")), leaders=_ids(p.get("leaders")), children=_ids(p.get("children")),
        raw=p, extra={k: v for k, v in p.items() if k not in GROUP_KEYS},
    )


def parse_list(p: dict) -> ExternalList:
    if not isinstance(p, dict) or p.get("id") in (None, ""):
        raise BadAnswerError("external list without an id")
    items = p.get("items") or []
    if not isinstance(items, list):
        raise BadAnswerError("external list items are not a list", context=f"list {p.get('id')}")
    return ExternalList(
        id=_s(p["id"]), name=_s(p.get("name")) or "", class_=_s(p.get("class")),
        update_time=_s(p.get("update_time")), items=tuple(map(_item_line, items)), raw=p,
        extra={k: v for k, v in p.items() if k not in LIST_KEYS},
    )


def _item_line(item: Any) -> str:
    """An external-list item's line: the text as served; an item served as an object or a list
    (not a v3 shape, but a later API's) is kept whole as its JSON text, like any structured value
    the model does not know."""
    if isinstance(item, (list, dict)):
        return _json_text(item) or ""
    return _s(item) or ""


def unwrap(payload: Any, *keys: str, context: str) -> Any:
    """Take ``payload[key]`` for the first key present, looking under ``data`` too (the API
    wraps answers inconsistently). Raise a BadAnswerError naming the context otherwise."""
    if not isinstance(payload, dict):
        raise BadAnswerError(f"expected a JSON object, got {type(payload).__name__}", context=context)
    if payload.get("status") == "error":
        raise BadAnswerError(str(payload.get("message") or "the service reported an error"), context=context)
    for scope in (payload, payload.get("data") if isinstance(payload.get("data"), dict) else None):
        if scope is None:
            continue
        for k in keys:
            if k in scope:
                return scope[k]
    raise BadAnswerError(f"answer has none of {', '.join(keys)}", context=context)


def iter_ids(rows: Iterable[Any]) -> Iterable[str]:
    for r in rows:
        if isinstance(r, dict):
            v = r.get("id", r.get("_id"))
        else:
            v = r
        if v not in (None, ""):
            yield str(v)
