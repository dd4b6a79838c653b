"""Turn service payloads (either record shape) into canonical records.

Shared by the web-service source and the archive source, so an archive replays exactly as the
service would have been read. Every function here is pure: dict in, record out.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from .errors import BadAnswerError
from .model import (
    BOOLEAN,
    DATE,
    DATETIME,
    GEOLOC,
    LAYOUT,
    MEDIA,
    META_KEYS,
    NUMBER,
    SUBFORM,
    TIME,
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


def _parse_boolean(text: str, options: dict) -> bool | None:
    t = text.strip()
    true_v = _s(options.get("checkbox_output_true_value"))
    false_v = _s(options.get("checkbox_output_false_value"))
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


def typed_value(fdef: FieldDef, text: str | None, options: dict, cell: dict | None = None) -> Value:
    """Type one served value from its field definition. Returns None where the text does not
    parse; the caller keeps the text, so nothing is lost."""
    if fdef.kind == BOOLEAN and cell and isinstance(cell.get("boolean"), bool):
        return cell["boolean"]
    if text is None:
        return None
    t = text.strip()
    try:
        if fdef.kind == NUMBER:
            if not t:
                return None
            return Decimal(t.replace(",", ".").replace(" ", ""))
        if fdef.kind == DATE:
            for rx, make in _DATE_RES:
                m = rx.match(t)
                if m:
                    return make(m)
            return None
        if fdef.kind == TIME:
            m = _TIME_RE.match(t)
            return dt.time(int(m[1]), int(m[2]), int(m[3] or 0)) if m else None
        if fdef.kind == DATETIME:
            m = _DATETIME_RE.match(t)
            if not m:
                return None
            return dt.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
        if fdef.kind == BOOLEAN:
            return _parse_boolean(t, options)
        if fdef.kind == GEOLOC:
            parts = [p.strip() for p in t.replace(";", ",").split(",")]
            if len(parts) < 2 or not parts[0]:
                return None
            lat, lon = float(parts[0]), float(parts[1])
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                return None
            return GeoPoint(lat, lon)
        if fdef.kind == MEDIA:
            return tuple(n for n in (p.strip() for p in t.split(",")) if n)
    except (InvalidOperation, ValueError, OverflowError):
        return None
    return text


def _cell_text(cell: Any) -> tuple[str | None, dict | None]:
    """A served cell is ``{"value": ...}`` (nested shape) or a bare value (flat shape)."""
    if isinstance(cell, dict):
        v = cell.get("value")
        return (_s(v) if not isinstance(v, (list, dict)) else None), cell
    if isinstance(cell, (list, dict)):
        return None, None
    return _s(cell), None


def _subform_rows(cell: Any) -> list:
    if isinstance(cell, dict) and "value" in cell:
        cell = cell["value"]
    if cell in (None, ""):
        return []
    if isinstance(cell, list):
        return cell
    raise BadAnswerError(f"sub-form value is a {type(cell).__name__}, expected a list of rows")


# --------------------------------------------------------------------------------------------
# Submissions
# --------------------------------------------------------------------------------------------


def parse_submission(form: Form, payload: dict) -> Submission:
    """Parse one submission, nested (``GET /data/{d}``) or flat (``_``-prefixed) shape."""
    if not isinstance(payload, dict):
        raise BadAnswerError(f"submission is a {type(payload).__name__}, expected an object",
                             context=f"form {form.id}")
    flat = "fields" not in payload and ("_id" in payload or "id" not in payload)
    if flat:
        meta_src = {k[1:]: v for k, v in payload.items() if k.startswith("_")}
        cells = {k: v for k, v in payload.items() if not k.startswith("_")}
    else:
        meta_src = {k: v for k, v in payload.items() if k != "fields"}
        cells = payload.get("fields")
        cells = {} if cells is None else cells
        if not isinstance(cells, dict):
            raise BadAnswerError("submission 'fields' is not an object", context=f"form {form.id}")
    sid = _s(meta_src.get("id"))
    if not sid:
        raise BadAnswerError("submission without an id", context=f"form {form.id}")
    ctx = f"form {form.id} submission {sid}"
    meta = {k: _s(meta_src.get(k)) for k in META_KEYS}
    values: dict[str, Value] = {}
    text: dict[str, str | None] = {}
    subforms: dict[str, list[SubformRow]] = {}
    media: list[MediaRef] = []
    for fdef in form.fields:
        if fdef.kind == LAYOUT:
            continue
        cell = cells.get(fdef.name)
        if fdef.kind == SUBFORM:
            rows = []
            try:
                raw_rows = _subform_rows(cell)
            except BadAnswerError as e:
                raise BadAnswerError(e.message, context=f"{ctx} field {fdef.name}") from None
            for i, raw_row in enumerate(raw_rows):
                if not isinstance(raw_row, dict):
                    raise BadAnswerError(f"sub-form row {i} is not an object", context=f"{ctx} field {fdef.name}")
                rv: dict[str, Value] = {}
                rt: dict[str, str | None] = {}
                for child in fdef.children:
                    if not child.has_value:
                        continue
                    t, c = _cell_text(raw_row.get(child.name))
                    rt[child.name] = t
                    rv[child.name] = typed_value(child, t, form.options, c)
                    if child.kind == MEDIA and rv[child.name]:
                        media.extend(MediaRef(form.id, sid, child.name, n, fdef.name, i) for n in rv[child.name])
                rows.append(SubformRow(i, rv, rt))
            subforms[fdef.name] = rows
            continue
        t, c = _cell_text(cell)
        text[fdef.name] = t
        values[fdef.name] = typed_value(fdef, t, form.options, c)
        if fdef.kind == MEDIA and values[fdef.name]:
            media.extend(MediaRef(form.id, sid, fdef.name, n) for n in values[fdef.name])
    # keep media order stable and unique per (field, row, name)
    seen, uniq = set(), []
    for m in media:
        key = (m.subform, m.row, m.field, m.name)
        if key not in seen:
            seen.add(key)
            uniq.append(m)
    return Submission(form_id=form.id, id=sid, meta=meta, values=values, text=text,
                      subforms=subforms, media=tuple(uniq), raw=payload)


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
        raw=p,
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
        raw=p,
    )


def parse_list(p: dict) -> ExternalList:
    if not isinstance(p, dict) or p.get("id") in (None, ""):
        raise BadAnswerError("external list without an id")
    items = p.get("items") or []
    if not isinstance(items, list):
        raise BadAnswerError("external list items are not a list", context=f"list {p.get('id')}")
    return ExternalList(
        id=_s(p["id"]), name=_s(p.get("name")) or "", class_=_s(p.get("class")),
        update_time=_s(p.get("update_time")), items=tuple(_s(i) or "" for i in items), raw=p,
    )


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
