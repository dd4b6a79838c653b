"""Turn service payloads (either record shape) into canonical records.

Shared by the web-service source and the archive source, so an archive replays exactly as the
service would have been read. Every function here is pure: dict in, record out. How one value is
typed is ``exporter.values``; what parsing a form's submissions needs, worked out once per form
definition, is ``exporter.parse_plan``.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import BadAnswerError
from .model import (
    GROUP_KEYS,
    LIST_KEYS,
    META_KEYS,
    SUBFORM,
    USER_KEYS,
    ExternalList,
    FieldDef,
    Form,
    Group,
    MediaRef,
    SubformRow,
    Submission,
    User,
    Value,
    kind_of,
)
from .parse_plan import FLAT_META_KEYS, ParsePlan, checkbox_texts, parse_plan
from .values import as_text

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
        ftype = as_text(spec.get("type")) or "text"
        kind = kind_of(ftype)
        children: tuple[FieldDef, ...] = ()
        if kind == SUBFORM:
            children = _field_defs(spec.get("fields") or spec.get("subfields") or spec.get("children"),
                                   f"{context} sub-form {name}")
        out.append(FieldDef(
            name=str(name), type=ftype, kind=kind, caption=as_text(spec.get("caption")) or "",
            subtype=as_text(spec.get("subtype")), required=bool(spec.get("required")),
            list_id=as_text(spec.get("list_id")) or None, children=children, raw=spec,
        ))
    return tuple(out)


def parse_form(payload: dict) -> Form:
    """``payload`` is the ``form`` object of ``GET /forms/{id}``."""
    if not isinstance(payload, dict) or "id" not in payload:
        raise BadAnswerError("form definition without an id")
    fid = as_text(payload["id"])
    if not fid:  # "id": null or ""
        raise BadAnswerError("form definition without an id")
    options = payload.get("options")
    return Form(
        id=fid, name=as_text(payload.get("name")) or fid,
        fields=_field_defs(payload.get("fields"), f"form {fid}"),
        class_=as_text(payload.get("class")), update_time=as_text(payload.get("update_time")),
        options=options if isinstance(options, dict) else {},
        raw=payload,
    )


# --------------------------------------------------------------------------------------------
# Served cells
# --------------------------------------------------------------------------------------------


def _subform_rows(cell: Any) -> list:
    if isinstance(cell, dict) and "value" in cell:
        cell = cell["value"]
    if cell in (None, ""):
        return []
    if isinstance(cell, list):
        return cell
    raise BadAnswerError(f"sub-form value is a {type(cell).__name__}, expected a list of rows")


def _json_text(v: list | dict) -> str | None:
    """The text of a structured value served where the model expects a text (a field of a type
    it does not know): compact JSON, keys sorted, so it is kept as served."""
    return json.dumps(v, ensure_ascii=False, sort_keys=True, separators=(",", ":")) if v else None


_STR_OR_NONE = frozenset((str, type(None)))


def _text_of(cell: Any) -> str | None:
    if isinstance(cell, dict):
        v = cell.get("value")
        return None if isinstance(v, (list, dict)) else as_text(v)
    if isinstance(cell, (list, dict)):
        return None
    return as_text(cell)


# --------------------------------------------------------------------------------------------
# Submissions
# --------------------------------------------------------------------------------------------


def _is_flat(payload: dict) -> bool:
    return "fields" not in payload and ("_id" in payload or "id" not in payload)


def submission_id(payload: Any) -> str | None:
    """The id of a served submission (either shape), without parsing the rest."""
    if not isinstance(payload, dict):
        return None
    return as_text(payload.get("_id") if _is_flat(payload) else payload.get("id"))


def _parse_fields(plan: ParsePlan, cells: dict, flat: bool, bools: Any, form_id: str, sid: str
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
                            (None if cconv else _json_text(v)) if isinstance(v, (list, dict)) else as_text(v))
                    else:
                        t = c if type(c) is str else (
                            _json_text(c) if cconv is None and isinstance(c, list) else _text_of(c))
                        c = None
                    rt[cname] = t
                    val = rv[cname] = t if cconv is None else cconv(t, c, bools)
                    if c_media and isinstance(val, tuple) and val:  # the media converter gives a tuple
                        media.extend([MediaRef(form_id, sid, cname, n, name, i) for n in val])
                rows.append(SubformRow(i, rv, rt))
            subforms[name] = rows
            continue
        if isinstance(cell, dict):
            v = cell.get("value")
            t = v if type(v) is str else (
                (None if conv else _json_text(v)) if isinstance(v, (list, dict)) else as_text(v))
        else:
            t = cell if type(cell) is str else (
                _json_text(cell) if conv is None and isinstance(cell, list) else _text_of(cell))
            cell = None
        text[name] = t
        val = values[name] = t if conv is None else conv(t, cell, bools)
        if is_media and isinstance(val, tuple) and val:  # the media converter gives a tuple
            if len(val) == 1:
                media.append(MediaRef(form_id, sid, name, val[0]))
            else:
                media.extend([MediaRef(form_id, sid, name, n) for n in val])
    return values, text, subforms, media


def parse_submission(form: Form, payload: dict, served: bytes | None = None) -> Submission:
    """Parse one submission, nested (``GET /data/{d}``) or flat (``_``-prefixed) shape. ``served``:
    the JSON document ``payload`` was decoded from, kept as ``raw`` instead of the payload
    (decoded again only if read: see ``model.Submission``)."""
    if not isinstance(payload, dict):
        raise BadAnswerError(f"submission is a {type(payload).__name__}, expected an object",
                             context=f"form {form.id}")
    flat = _is_flat(payload)
    if flat:
        sid = as_text(payload.get("_id"))
        cells = payload
    else:
        sid = as_text(payload.get("id"))
        fields = payload.get("fields")
        cells = {} if fields is None else fields
        if not isinstance(cells, dict):
            raise BadAnswerError("submission 'fields' is not an object", context=f"form {form.id}")
    if not sid:
        raise BadAnswerError("submission without an id", context=f"form {form.id}")
    raw_meta = list(map(payload.get, FLAT_META_KEYS if flat else META_KEYS))
    if _STR_OR_NONE.issuperset(map(type, raw_meta)):  # the usual case: nothing to normalise
        meta = dict(zip(META_KEYS, raw_meta, strict=True))
    else:
        meta = dict(zip(META_KEYS, map(as_text, raw_meta), strict=True))
    plan = parse_plan(form.fields)
    bools = checkbox_texts(form, plan)
    form_id = form.id
    values, text, subforms, media = _parse_fields(plan, cells, flat, bools, form_id, sid)
    return Submission(form_id=form_id, id=sid, meta=meta, values=values, text=text,
                      subforms=subforms, media=_unique_media(media), raw=payload if served is None else served,
                      extra=_submission_extra(plan, payload, cells, flat))


def _submission_extra(plan: ParsePlan, payload: dict, cells: dict, flat: bool) -> dict:
    """Every served key of a submission the model does not read, named as in the nested shape
    (so both shapes give the same): metadata keys as served, values of fields the definition
    does not know under ``"fields"`` (the value only, as the flat shape serves it), and the keys
    of sub-form rows their sub-form does not know under ``"subforms"`` (sub-form -> row index ->
    key -> value)."""
    # the usual case, every key known, is told by membership tests alone (no set is made); else
    # set differences, then only the few unknown keys visited, in sorted order (deterministic)
    if flat:
        rest = [] if plan.known_flat.issuperset(payload) else sorted(payload.keys() - plan.known_flat)
        extra = {k[1:]: payload[k] for k in rest if k[:1] == "_"}
        unknown = {k: payload[k] for k in rest if k[:1] != "_"} if len(extra) < len(rest) else {}
    else:
        known = plan.known_nested
        extra = {} if known.issuperset(payload) else {k: payload[k] for k in sorted(payload.keys() - known)}
        unknown = {}
        if not plan.names.issuperset(cells):
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
    uid = as_text(p.get("id")) if isinstance(p, dict) else None
    if not uid:
        raise BadAnswerError("user without an id")
    return User(
        id=uid, login=as_text(p.get("login")) or "", first_name=as_text(p.get("first_name")) or "",
        last_name=as_text(p.get("last_name")) or "", email=as_text(p.get("email")) or "",
        phone=as_text(p.get("phone")) or "", admin=str(p.get("admin")).lower() in ("1", "true"),
        main_group_id=as_text(p.get("main_group_id")) or None, create_time=as_text(p.get("create_time")),
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
    gid = as_text(p.get("id")) if isinstance(p, dict) else None
    if not gid:
        raise BadAnswerError("group without an id")
    parent = as_text(p.get("parent_group_id") or p.get("parent_id"))
    return Group(
        id=gid, name=as_text(p.get("name")) or "", parent_id=parent if parent not in ("", "0") else None,
        users=_ids(p.get("users")), leaders=_ids(p.get("leaders")), children=_ids(p.get("children")),
        raw=p, extra={k: v for k, v in p.items() if k not in GROUP_KEYS},
    )


def parse_list(p: dict) -> ExternalList:
    lid = as_text(p.get("id")) if isinstance(p, dict) else None
    if not lid:
        raise BadAnswerError("external list without an id")
    items = p.get("items") or []
    if not isinstance(items, list):
        raise BadAnswerError("external list items are not a list", context=f"list {p.get('id')}")
    return ExternalList(
        id=lid, name=as_text(p.get("name")) or "", class_=as_text(p.get("class")),
        update_time=as_text(p.get("update_time")), items=tuple(map(_item_line, items)), raw=p,
        extra={k: v for k, v in p.items() if k not in LIST_KEYS},
    )


def _item_line(item: Any) -> str:
    """An external-list item's line: the text as served; an item served as an object or a list
    (not a v3 shape, but a later API's) is kept whole as its JSON text, like any structured value
    the model does not know."""
    if isinstance(item, (list, dict)):
        return _json_text(item) or ""
    return as_text(item) or ""
