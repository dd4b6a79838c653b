"""Vendor documents, opt-in: what the service makes of a submission, and a form's layout pictures.

``--vendor-pdf``
    each submission's standard PDF: ``GET /forms/{f}/data/{d}/pdf``.
``--vendor-exports``
    each submission through every custom Word/Excel export of its form: ``GET /forms/{f}/exports``
    once per form (templates marked ``deleted`` are left out), then
    ``GET /forms/{f}/data/{d}/exports/{exportId}`` (the template's own format).
layout pictures (always)
    each ``fixed_image`` field of a form: ``GET /forms/{f}/data/{d}/form_pictures/{name}``, asked
    through the first submission a run reads of the form (the route wants one), ``name`` being the
    field's name (the route's documentation does not say what it is: [guess]); once per form per
    run, stored with the form, not with the submission.

The routes are the ones the vendor's own clients call (its n8n node, its Activepieces piece). The
file name comes from ``Content-Disposition`` (``client.attachment_filename``, RFC 5987
``filename*`` first); without one a name is made from the submission or export id. Bytes are
spooled like media (``Blob.spooled``: to disk past 1 MiB), so a big document never sits in memory,
and a form's documents are never held together: each follows its submission down the pipeline.

Incremental runs: in ``cursor`` mode a submission's documents are asked for only when it changed
after the form's stored cursor (a submission read again only because of ``--overlap`` keeps the
documents the run that first read it stored); ``unread`` mode serves only new or changed
submissions; a full run asks for every submission's.

A document the service cannot produce (404 or 501, a failure of its own such as a 500, or no answer
in time after the retries: 504 or the read timeout) is a warning naming it, not a failed run.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from exporter.errors import NotFoundError
from exporter.model import EXPORT, FORM_PICTURE, PDF, Document, DocumentRef, Form, Submission
from exporter.retry import retry_call

from .client import KizeoClient
from .http_errors import AnswerTimeout, ServerFailure, StreamInterrupted

log = logging.getLogger("exporter.kizeo")

#: an extension for a name made up when the service sends none (a fixed map: reproducible names)
_EXTENSIONS = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
               "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
               "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
               "application/msword": ".doc", "application/vnd.ms-excel": ".xls"}


@dataclass(frozen=True)
class FormDocuments:
    """What to ask for the submissions of one form in this run."""

    form_id: str
    pdf: bool
    exports: tuple[tuple[str, str], ...]  # (export id, template name) of every live custom export
    pictures: tuple[str, ...]  # names of the form's fixed_image fields
    newer_than: str | None = None  # cursor mode: only submissions changed after this time

    def wants(self, sub: Submission) -> bool:
        """Whether ``sub``'s documents are asked for (see the module docstring)."""
        if not (self.pdf or self.exports):
            return False
        if self.newer_than is None:
            return True
        changed = sub.update_time
        return not changed or changed > self.newer_than


class VendorDocuments:
    """Downloads the vendor documents of a ``WebSource``'s submissions (see the module docstring)."""

    def __init__(self, client: KizeoClient, *, pdf: bool = False, exports: bool = False):
        self.client = client
        self.pdf = pdf
        self.exports = exports

    def plan(self, form: Form, newer_than: str | None = None) -> FormDocuments:
        """The documents of ``form``'s submissions: reads its export templates (``--vendor-exports``;
        a service without the route answers 404/501: a warning, no exports)."""
        exports: list[tuple[str, str]] = []
        if self.exports:
            try:
                templates = self.client.exports(form.id)
            except NotFoundError as e:
                log.warning("form %s: the service lists no custom exports (%s); none is stored", form.id, e.message)
                templates = []
            seen = set()
            for t in templates:
                eid = t.get("id")
                if eid in (None, "") or t.get("deleted") in (True, 1, "1", "true") or str(eid) in seen:
                    continue
                seen.add(str(eid))
                exports.append((str(eid), str(t.get("name") or "")))
        pictures = tuple(f.name for f in _all_fields(form) if f.type.lower() == "fixed_image")
        return FormDocuments(form.id, self.pdf, tuple(exports), pictures, newer_than)

    def of_submission(self, plan: FormDocuments, sub: Submission) -> Iterator[Document]:
        """``sub``'s standard PDF and custom exports, those the service could produce."""
        if not plan.wants(sub):
            return
        fid, sid = plan.form_id, sub.id
        if plan.pdf:
            doc = self._fetch(DocumentRef(fid, sid, PDF), self.client.pdf_path(fid, sid), sid,
                              f"the standard PDF of submission {sid}")
            if doc is not None:
                yield doc
        for eid, name in plan.exports:
            doc = self._fetch(DocumentRef(fid, sid, EXPORT, eid), self.client.export_path(fid, sid, eid),
                              f"{name or 'export'} {sid}".strip(), f"custom export {eid} of submission {sid}")
            if doc is not None:
                yield doc

    def form_pictures(self, plan: FormDocuments, through: str) -> Iterator[Document]:
        """The form's layout pictures, asked through its submission ``through``."""
        fid = plan.form_id
        for name in plan.pictures:
            doc = self._fetch(DocumentRef(fid, None, FORM_PICTURE, name),
                              self.client.form_picture_path(fid, through, name), name,
                              f"the layout picture of field {name!r}")
            if doc is not None:
                yield doc

    def _fetch(self, ref: DocumentRef, path: str, stem: str, what: str) -> Document | None:
        """One document; ``stem`` (plus an extension from its content type) names it when the
        service gives no name."""
        client = self.client

        def attempt() -> Document:
            d = client.download(path)
            name = d.filename or stem + _EXTENSIONS.get(d.content_type, "")
            return Document.spooled(ref, d.content_type, d.chunks, name=name)

        try:
            # opening is retried inside the client; here only a download cut mid-stream restarts
            return retry_call(attempt, attempts=client.attempts, base_delay=client.backoff,
                              max_delay=client.max_backoff, sleep=client.sleep,
                              is_retryable=lambda e: isinstance(e, StreamInterrupted), describe=f"GET {path}")
        except (NotFoundError, AnswerTimeout, ServerFailure) as e:
            log.warning("form %s: the service could not produce %s (%s); skipped", ref.form_id, what, e)
            return None


def _all_fields(form: Form):
    for f in form.fields:
        yield f
        yield from f.children
