"""JSON: JSON Lines per form, a pretty JSON file per submission, form definitions, users, groups,
external lists.

Files (relative to the output directory)::

    forms/<id>-<name>/form.json                      the form definition as served
    forms/<id>-<name>/submissions/<id>.json          one pretty document per submission
    <aggregate dir>/submissions.jsonl                one object per submission, stream order
    users.json, groups.json                          arrays, streamed
    lists/<id>-<name>.json                           one document per external list

Values are typed: dates/times ISO 8601, numbers as strings (every digit kept), booleans, geoloc as
``{"lat", "lon"}``, media as ``[{"name", "path"}]`` with ``path`` relative to the JSON file;
``text`` keeps the original served text of every value, so nothing typing could lose is lost.
"""
from __future__ import annotations

import json
import re
from typing import IO, Any

from exporter.formats.base import FormatLimits, FormStreamWriter, OutputDir, submission_form
from exporter.formats.catalog import JSON
from exporter.formats.tabular import USER_FIELDS, json_value, media_links, relative

from exporter.model import MEDIA, Form, Submission

#: lone surrogates cannot be UTF-8; U+0085, U+2028, U+2029 are line breaks to many line readers
_ESCAPE = re.compile("[\ud800-\udfff\x85\u2028\u2029]")


def dumps(data: Any, indent: int | None = None) -> str:
    """JSON text that is always valid UTF-8 and one line unless indented: lone surrogates
    (possible in service strings) and the Unicode line separators are written as ``\\uXXXX``
    escapes, which ``json.loads`` reads back to the same string."""
    text = json.dumps(data, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":"),
                      default=str)
    return _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class _JsonArray:
    """A JSON array written one element at a time to a pending file."""

    def __init__(self, out: OutputDir, relpath: str):
        self.out, self.relpath = out, relpath
        self.fh: IO = out.pending(relpath, "w", encoding="utf-8", newline="\n")
        self.fh.write("[")
        self.n = 0

    def add(self, data: Any) -> None:
        self.fh.write(("," if self.n else "") + "\n" + dumps(data))
        self.n += 1

    def finish(self) -> None:
        self.fh.write("\n]\n" if self.n else "]\n")
        self.out.finish(self.relpath)


class JsonWriter(FormStreamWriter):
    key = JSON.key
    description = JSON.description
    limits = FormatLimits(per_submission_files=True)

    def __init__(self, out: OutputDir, options: dict):
        self.out = out
        self.options = options
        self.per_submission = JSON.parse_options(options, strict=False)["json_per_submission"]
        self._form: Form | None = None
        self._jsonl: IO | None = None
        self._jsonl_rel = ""
        self._users: _JsonArray | None = None
        self._groups: _JsonArray | None = None
        self._account_seen = False

    # ---- records (dispatched by FormStreamWriter.write) --------------------------------
    def _on_account(self, account) -> None:
        self._account_seen = True
        if not self.records:
            return
        # where the data came from and the account's time zone (served times have no offset);
        # nothing run-specific, so an unchanged account gives an unchanged file
        with self.out.atomic("account.json", "w", encoding="utf-8") as fh:
            json.dump({"source": account.source, "timezone": account.timezone}, fh, ensure_ascii=False, indent=2)
            fh.write("\n")

    def _on_user(self, user) -> None:
        if self._users is None:
            self._users = _JsonArray(self.out, "users.json")
        self._users.add({**{k: getattr(user, k) for k in USER_FIELDS}, "extra": user.extra, "raw": user.raw})

    def _on_group(self, group) -> None:
        if self._groups is None:
            self._groups = _JsonArray(self.out, "groups.json")
        self._groups.add({"id": group.id, "name": group.name, "parent_id": group.parent_id,
                          "users": list(group.users), "leaders": list(group.leaders),
                          "children": list(group.children), "extra": group.extra, "raw": group.raw})

    def _on_list(self, lst) -> None:
        doc = {
            "id": lst.id, "name": lst.name, "class": lst.class_, "update_time": lst.update_time,
            "extra": lst.extra,
            "items": [
                {"index": it.index, "line": it.line,
                 "levels": [[{"label": c.label, "code": c.code} for c in level] for level in it.levels]}
                for it in lst.parsed_items()
            ],
        }
        rel = "lists/" + self.out.safe(f"{lst.id}-{lst.name}") + ".json"
        with self.out.atomic(rel, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(dumps(doc, indent=2) + "\n")

    def _start_form(self, form: Form) -> None:
        self._form = form
        if self.records:
            raw = form.raw or {
                "id": form.id, "name": form.name, "class": form.class_, "update_time": form.update_time,
                "options": form.options, "fields": {f.name: f.raw for f in form.fields},
            }
            with self.out.atomic(f"{self.out.form_dir(form)}/form.json", "w", encoding="utf-8", newline="\n") as fh:
                fh.write(dumps(raw, indent=2) + "\n")
        if not self.aggregates:
            return
        self._jsonl_rel = f"{self.out.aggregate_dir(form)}/submissions.jsonl"
        self._jsonl = self.out.pending(self._jsonl_rel, "w", encoding="utf-8", newline="\n")

    def _finish_form(self) -> None:
        if self._jsonl is not None:
            self.out.finish(self._jsonl_rel)
        self._jsonl = None
        self._form = None

    def document(self, form: Form, sub: Submission, base_dir: str) -> dict:
        """The JSON object of one submission, media paths relative to ``base_dir``."""
        values = {}
        for f in form.value_fields():
            v = sub.values.get(f.name)
            links = media_links(self.out, form, sub, f.name, v, base_dir) if f.kind == MEDIA else None
            values[f.name] = json_value(v, sub.text.get(f.name), links)
        subforms = {}
        for sf in form.subforms():
            rows = []
            for row in sub.subforms.get(sf.name, []):
                rv = {}
                for c in sf.children:
                    if not c.has_value:
                        continue
                    v = row.values.get(c.name)
                    links = (media_links(self.out, form, sub, c.name, v, base_dir, sf.name, row.index)
                             if c.kind == MEDIA else None)
                    rv[c.name] = json_value(v, row.text.get(c.name), links)
                rows.append({"index": row.index, "values": rv, "text": row.text})
            subforms[sf.name] = rows
        return {
            "id": sub.id, "form_id": sub.form_id, "meta": sub.meta, "extra": sub.extra, "values": values,
            "text": sub.text,
            "subforms": subforms,
            "media": [{"field": m.field, "subform": m.subform, "row": m.row, "name": m.name,
                       "path": relative(self.out.media_relpath(m, form.name), base_dir)} for m in sub.media],
        }

    def _write_submission(self, sub: Submission) -> None:
        form = submission_form(self._form, sub)
        if self._jsonl is not None:
            self._jsonl.write(dumps(self.document(form, sub, self.out.aggregate_dir(form))) + "\n")
        if self.records and self.per_submission:
            sub_dir = f"{self.out.form_dir(form)}/submissions"
            rel = f"{sub_dir}/{self.out.safe(sub.id)}.json"
            with self.out.atomic(rel, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(dumps(self.document(form, sub, sub_dir), indent=2) + "\n")

    # ---- end (FormStreamWriter.close) ---------------------------------------------------
    def _finish_account(self) -> None:
        if self._users is None and self._account_seen:
            self._users = _JsonArray(self.out, "users.json")
        if self._groups is None and self._account_seen:
            self._groups = _JsonArray(self.out, "groups.json")
        for arr in (self._users, self._groups):
            if arr is not None:
                arr.finish()
