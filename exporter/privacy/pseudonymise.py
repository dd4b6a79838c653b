"""The pseudonymisation stage: one step between the source and every destination.

``Pseudonymiser.apply(batch)`` returns the batch as the destinations see it. Each record is
rebuilt from its served payload, changed by the rules of ``--pseudonymise`` (``spec``), with the
same parsers the sources use (``exporter.records``): typed values, served texts, the keys kept in
``extra``, media references and the payload itself (``raw``, which the archive and the users
files keep) all agree, whatever the payload's shape (nested or flat). So:

* a form's definition loses its dropped fields, and a field given ``hmac`` that held no text
  (a number, a date, a geolocation...) becomes a text field (its values are digests);
* a submission's values are changed (sub-form rows too); values that are empty stay empty; a
  value ``round`` cannot read is emptied (it could not be rounded, so it is not shown);
* the ``Media`` of a dropped field (or of a dropped sub-form) are left out of the batch, and so
  are the documents the service made of submissions (``--vendor-pdf``, ``--vendor-exports``: they
  show the data as served, which nothing here can change; a form's layout pictures stay);
* a user's personal columns, and their copies in the metadata of the submissions (see
  ``exporter.privacy.personal``), are given a digest (``hmac``) or emptied (``drop``).

``hmac`` is HMAC-SHA256 of the value's text with the key, in lower-case hex: the same value and
key give the same digest in every field, every run and every destination (joins still work), and
another key gives others. Nothing here depends on time or order: the same data and key give the
same bytes.

The pipeline gives a destination that keeps what the source served (``Capabilities.as_served``:
the account archive) the original batch, unless ``spec.archive`` (``--pseudonymise-archive``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

from exporter.errors import ConfigError
from exporter.model import (
    CHOICE,
    DATETIME,
    GEOLOC,
    SUBFORM,
    TEXT,
    USER_KEYS,
    Form,
    GeoPoint,
    MediaRef,
    Record,
    Submission,
    User,
)
from exporter.records import parse_form, parse_submission, parse_user
from exporter.values import typed_value

from . import personal
from .spec import PseudonymiseSpec, Rule, check_form, check_forms

log = logging.getLogger("exporter.privacy")

_DROP = object()  # a cell left out of the payload
#: the keys of a nested cell kept when its value is changed (others, such as a list value's
#: ``path`` of labels, could tell the original)
_CELL_KEYS = ("type", "subtype", "hidden")


class _FormRules:
    """How one form's fields change: a ``(FieldDef, Rule)`` per changed field, top-level fields
    by name, sub-form fields as ``sub-form/field``; the changed definition."""

    def __init__(self, spec: PseudonymiseSpec, form: Form):
        self.changes = check_form(spec, form)
        self.spec = spec
        self.form = form if not self.changes else parse_form(_edit_definition(form.raw, self.changes))

    def top(self, name: str) -> tuple[Any, Rule] | None:
        return self.changes.get(name) or _by_name(self.spec, name)

    def child(self, sub: str, name: str) -> tuple[Any, Rule] | None:
        return self.changes.get(f"{sub}/{name}") or _by_name(self.spec, name)


def _by_name(spec: PseudonymiseSpec, name: str) -> tuple[None, Rule] | None:
    """A served key the definition does not list (kept in ``extra``), named by a field rule."""
    rule = spec.field_rule(name)
    return (None, rule) if rule is not None else None


def _retyped(fdef: Any, rule: Rule) -> bool:
    """hmac turns a field that held no text into a text field."""
    return rule.method.name == "hmac" and fdef is not None and fdef.kind not in (TEXT, CHOICE)


def _edit_definition(raw: dict, changes: dict[str, tuple[Any, Rule]]) -> dict:
    """A form payload without its dropped fields, with hmac'd non-text fields typed ``text``."""
    out = dict(raw)
    out["fields"] = _edit_fields(raw.get("fields"), changes, "")
    return out


def _edit_fields(fields: Any, changes: dict, prefix: str) -> Any:
    if isinstance(fields, dict):
        items, as_list = list(fields.items()), False
    elif isinstance(fields, list):
        items, as_list = [(f.get("name") or f.get("id"), f) for f in fields if isinstance(f, dict)], True
    else:
        return fields
    kept = []
    for name, spec in items:
        change = changes.get(f"{prefix}{name}")
        if change is not None and change[1].method.name == "drop":
            continue
        if isinstance(spec, dict):
            spec = dict(spec)
            if change is not None and _retyped(*change):
                spec["type"] = "text"
            for key in ("fields", "subfields", "children"):
                if not prefix and isinstance(spec.get(key), (dict, list)):
                    spec[key] = _edit_fields(spec[key], changes, f"{name}/")
        kept.append((name, spec))
    return [spec for _, spec in kept] if as_list else dict(kept)


class Pseudonymiser:
    """See the module docstring. ``key`` is the HMAC key (None when no rule uses hmac)."""

    def __init__(self, spec: PseudonymiseSpec, key: bytes | None):
        self.spec = spec
        self._key = key
        self._forms: dict[str, _FormRules] = {}
        self._hmac_groups = spec.user_groups("hmac")
        self._drop_groups = spec.user_groups("drop")
        self._users = bool(self._hmac_groups or self._drop_groups)
        #: (form id, submission id) of the submission last changed, and its media references
        self._refs: tuple[tuple[str, str], frozenset[MediaRef]] | None = None
        self._documents_said = False

    def __repr__(self) -> str:  # the key never shows
        return f"Pseudonymiser({', '.join(r.text for r in self.spec.rules)})"

    def keeps_original(self, sink: Any) -> bool:
        """Whether ``sink`` is given the records as served (an archive, unless --pseudonymise-archive)."""
        return bool(getattr(sink.capabilities, "as_served", False)) and not self.spec.archive

    # ---- the stage -------------------------------------------------------------------------
    def apply(self, batch: Sequence[Record]) -> list[Record]:
        out: list[Record] = []
        for r in batch:  # (``r.kind`` tested each time: each test narrows ``r``)
            if r.kind == "form":
                rules = self._forms[r.id] = _FormRules(self.spec, r)
                out.append(rules.form)
            elif r.kind == "submission":
                out.append(self._submission(r))
            elif r.kind == "media":
                ref = r.ref
                if self._refs is None or (ref.form_id, ref.submission_id) != self._refs[0] or ref in self._refs[1]:
                    out.append(r)
            elif r.kind == "user" and self._users:
                out.append(self._user(r))
            elif r.kind == "document" and r.ref.submission_id is not None:
                if not self._documents_said:  # made by the service from the data as served
                    log.warning("the documents the service made of submissions (--vendor-pdf, --vendor-exports) "
                                "show the data as served: they are left out of pseudonymised destinations")
                    self._documents_said = True
            else:
                out.append(r)
        return out

    def digest(self, text: str) -> str:
        if self._key is None:
            raise ConfigError("hmac needs a key")
        return hmac.new(self._key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def _text(self, v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    # ---- users -----------------------------------------------------------------------------
    def _user(self, user: User) -> User:
        raw = dict(user.raw) if user.raw else {**{k: getattr(user, k) for k in USER_KEYS}, **user.extra}
        for groups, method in ((self._hmac_groups, "hmac"), (self._drop_groups, "drop")):
            keys = set(personal.user_keys(groups))
            refs = "refs" in groups
            for k in list(raw):
                if k in keys or (refs and personal.is_user_ref(k)):
                    raw[k] = self._person_value(raw[k], method)
        return parse_user(raw)

    def _person_value(self, v: Any, method: str) -> Any:
        if v in (None, ""):
            return v
        return "" if method == "drop" else self.digest(self._text(v))

    def _meta(self, payload: dict, flat: bool) -> None:
        for groups, method in ((self._hmac_groups, "hmac"), (self._drop_groups, "drop")):
            if not groups:
                continue
            for k in personal.meta_keys(groups):
                sk = personal.served_key(k, flat)
                if sk in payload:
                    payload[sk] = self._person_value(payload[sk], method)
            if "refs" in groups:
                for sk in list(payload):
                    bare = sk[1:] if flat and sk.startswith("_") else None if flat else sk
                    if bare is not None and personal.is_submission_ref(bare):
                        payload[sk] = self._person_value(payload[sk], method)

    # ---- submissions -----------------------------------------------------------------------
    def _submission(self, sub: Submission) -> Submission:
        rules = self._forms.get(sub.form_id)
        if rules is None:
            raise ConfigError("a submission arrived before its form definition", context=f"form {sub.form_id}")
        if not rules.changes and not self._users and not self._names_unknown(sub):
            self._refs = None
            return sub
        payload = dict(sub.raw)
        flat = "fields" not in payload and ("_id" in payload or "id" not in payload)
        if self._users:
            self._meta(payload, flat)
        if flat:
            self._cells(payload, rules, skip_meta=True)
        elif isinstance(payload.get("fields"), dict):
            payload["fields"] = self._cells(dict(payload["fields"]), rules)
        new = parse_submission(rules.form, payload)
        self._refs = ((new.form_id, new.id), frozenset(new.media))
        return new

    def _names_unknown(self, sub: Submission) -> bool:
        """Served keys outside the definition (kept in ``extra``) that a field rule names."""
        fields = sub.extra.get("fields") or {}
        rows = sub.extra.get("subforms") or {}
        return any(self.spec.field_rule(n) for n in fields) or any(
            self.spec.field_rule(k) for by_row in rows.values() for row in by_row.values() for k in row)

    def _cells(self, cells: dict, rules: _FormRules, skip_meta: bool = False) -> dict:
        for name in list(cells):
            if skip_meta and name.startswith("_"):
                continue
            change = rules.top(name)
            fdef = change[0] if change else rules.form.field(name)
            if change is None and fdef is not None and fdef.kind == SUBFORM:
                cells[name] = self._rows(cells[name], name, rules)
                continue
            if change is None:
                continue
            value = self._apply(cells[name], *change)
            if value is _DROP:
                del cells[name]
            else:
                cells[name] = value
        return cells

    def _rows(self, cell: Any, sub: str, rules: _FormRules) -> Any:
        nested = isinstance(cell, dict) and "value" in cell
        rows = cell.get("value") if nested else cell
        if not isinstance(rows, list):
            return cell
        new_rows = []
        for row in rows:
            if not isinstance(row, dict):
                new_rows.append(row)
                continue
            row = dict(row)
            for k in list(row):
                change = rules.child(sub, k)
                if change is None:
                    continue
                value = self._apply(row[k], *change)
                if value is _DROP:
                    del row[k]
                else:
                    row[k] = value
            new_rows.append(row)
        return {**cell, "value": new_rows} if nested else new_rows

    def _apply(self, cell: Any, fdef: Any, rule: Rule) -> Any:
        method = rule.method
        if method.name == "drop":
            return _DROP
        nested = isinstance(cell, dict)
        value = cell.get("value") if nested else cell
        if value in (None, "", [], {}):
            return cell
        if method.name == "hmac":
            new: Any = self.digest(self._text(value))
        elif method.month:
            new = _month(fdef, value)
        else:
            new = _round_geoloc(fdef, value, method.digits or 0)
        if not nested:
            return new
        out = {k: cell[k] for k in _CELL_KEYS if k in cell}
        if _retyped(fdef, rule) and "type" in out:
            out["type"] = "text"
        out["value"] = new
        return out


def _month(fdef: Any, value: Any) -> str:
    """A date or date-time moved to the first day of its month, in ISO form ("" if unreadable)."""
    text = value if isinstance(value, str) else str(value)
    typed = typed_value(fdef, text, {}) if fdef is not None else None
    if not isinstance(typed, dt.date):  # (a date-time is a date)
        return ""
    head = f"{typed.year:04d}-{typed.month:02d}-01"
    if fdef.kind != DATETIME:
        return head
    seconds = text.strip().count(":") >= 2
    return head + (" 00:00:00" if seconds else " 00:00")


def _round_geoloc(fdef: Any, value: Any, digits: int) -> str:
    """``lat,lon`` rounded to ``digits`` decimals ("" if unreadable)."""
    text = value if isinstance(value, str) else str(value)
    point = typed_value(fdef, text, {}) if fdef is not None and fdef.kind == GEOLOC else None
    if not isinstance(point, GeoPoint):
        return ""
    return f"{point.latitude:.{digits}f},{point.longitude:.{digits}f}"


def check_run(spec: PseudonymiseSpec | None, source: Any, sinks: Sequence) -> None:
    """Before anything is created: the key is read, ``field:`` rules are checked against the
    definitions of the forms the run exports (``spec.check_forms``), ``--pseudonymise-archive``
    against the destinations. The source is closed when the run is refused."""
    if spec is None:
        return
    archives = [s for s in sinks if getattr(s.capabilities, "as_served", False)]
    try:
        spec.key()
        if spec.archive and not archives:
            raise ConfigError("--pseudonymise-archive: this run has no archive destination (archive:///path)")
        if any(r.selector == "field" for r in spec.rules):
            check_forms(spec, _definitions(source))
    except BaseException:
        source.close()
        raise
    for s in archives if not spec.archive else ():
        log.warning("%s keeps the data as served, not pseudonymised (add --pseudonymise-archive to "
                    "pseudonymise it too)", s.name)


def _definitions(source: Any):
    """The definitions of the forms a source exports (an archive's files, or the web service's
    ``GET /forms/{id}``), for the checks made before the run."""
    reader = getattr(source, "reader", None)
    for fid in source.form_ids():
        yield parse_form(reader.form_raw(fid) if reader is not None else source.client.get_form(fid))


def stage_for(ctx: Any) -> Pseudonymiser | None:
    """The stage a run's context asks for (``RunContext.privacy``), or None. Reads the key."""
    spec = getattr(ctx, "privacy", None)
    if spec is None:
        return None
    return Pseudonymiser(spec, spec.key())
