"""The account archive's layout: file names, paths and format version.

Layout (``format_version`` 2), the same inside a zip::

    manifest.json                      written last: format, version, account, exported_at,
                                       counts per entity (forms, submissions, media, users, groups,
                                       lists, documents, deleted), {path: {sha256, size}} of every file
    users.jsonl                        one user per line, as served by GET /users
    groups.jsonl                       one group per line, as served by GET /groups
    lists.jsonl                        one external list per line, with its raw item lines
    forms.jsonl                        one form summary per line (id, name, class, update_time)
    forms/<id>/form.json               the form definition, as served by GET /forms/{id}
    forms/<id>/submissions.jsonl       one submission per line, as served (nested or flat shape)
    forms/<id>/media.jsonl             one media per line: submission_id, field, subform, row, name,
                                       path, content_type, size, sha256
    forms/<id>/media/<sub id>/<name>   the media bytes (names made safe; original name in media.jsonl)
    forms/<id>/documents.jsonl         one vendor document per line: submission_id (null for a layout
                                       picture), kind (pdf, export, form_picture), key (the export id,
                                       the picture's field), name (as served), path, content_type,
                                       size, sha256; in the order the service was read
    forms/<id>/documents/<sub id>/pdf/<name>            a submission's standard PDF
    forms/<id>/documents/<sub id>/export-<id>/<name>    a submission through a custom export
    forms/<id>/form_pictures/<field>/<name>             a layout picture (fixed_image field)
    forms/<id>/deleted.jsonl           {"submission_id"} per submission the export saw deleted (listed,
                                       then gone when asked for); only when there is one

Version 2 added the documents and ``deleted.jsonl`` (and their counts); a version 1 archive has
none of them and reads as an archive without any.
JSON is UTF-8, written with the service's key order, so archive -> source -> archive reproduces
every file byte for byte and the manifest hashes match.
"""
from __future__ import annotations

import json
from typing import Any

from exporter.model import FORM_PICTURE, PDF, DocumentRef
from exporter.naming import safe_filename

FORMAT = "exporter-account-archive"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"


def dumps(obj: Any) -> str:
    """One JSON value as the archive writes it: UTF-8 text, compact, keys in the service's order."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def entry_line(rel: str, entry: dict) -> str:
    """One ``"path": {sha256, size}`` line of the manifest's file list."""
    return f"{json.dumps(rel, ensure_ascii=False)}: {json.dumps(entry, separators=(', ', ': '))}"


def form_dir(form_id: str) -> str:
    return "forms/" + safe_filename(str(form_id))


def media_path(form_id: str, submission_id: str, name: str) -> str:
    return f"{form_dir(form_id)}/media/{safe_filename(str(submission_id))}/{safe_filename(name)}"


def document_path(ref: DocumentRef, name: str) -> str:
    """Where a vendor document goes (see the layout above); every part made safe."""
    if ref.doc_kind == FORM_PICTURE:
        return f"{form_dir(ref.form_id)}/form_pictures/{safe_filename(ref.key)}/{safe_filename(name)}"
    kind = "pdf" if ref.doc_kind == PDF else safe_filename(f"{ref.doc_kind}-{ref.key}")
    return f"{form_dir(ref.form_id)}/documents/{safe_filename(str(ref.submission_id))}/{kind}/{safe_filename(name)}"
