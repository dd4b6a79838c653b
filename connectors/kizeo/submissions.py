"""One submission read from the service with the media it references and its vendor documents.

``WebSource`` calls these on its pool's threads: the submission (``GET data/{id}``, or a row a
listing already brought), each media file it references downloaded once and spooled to disk (hashed,
size known; a file used by several fields or rows shares one spool), and the vendor documents it
gets (``documents.py``). A download cut mid-stream starts again (the client retries the opening).
"""
from __future__ import annotations

import logging

from exporter.errors import NotFoundError
from exporter.model import Document, Form, Media, MediaRef, Submission
from exporter.records import parse_submission
from exporter.retry import retry_call

from .client import KizeoClient
from .documents import FormDocuments, VendorDocuments
from .http_errors import StreamInterrupted

log = logging.getLogger("exporter.kizeo")


class SubmissionReader:
    """Submissions with their media and documents, through ``client``."""

    def __init__(self, client: KizeoClient, documents: VendorDocuments):
        self.client = client
        self.documents = documents

    def fetch(self, form: Form, data_id: str, docs: FormDocuments) -> tuple[Submission, list[Media | Document]] | str:
        """A listed submission with its media and documents, or its id when it is gone."""
        try:
            raw = self.client.get_data(form.id, data_id)
        except NotFoundError as e:
            # listed by data/all, gone by the time we ask: deleted during the export
            log.warning("form %s: submission %s disappeared during the export (%s); recorded as deleted",
                        form.id, data_id, e.message)
            return data_id
        return self.with_media(form, raw, docs)

    def with_media(self, form: Form, raw: dict, docs: FormDocuments) -> tuple[Submission, list[Media | Document]]:
        """A submission, the media it references and its vendor documents (downloaded here: on
        the caller's thread)."""
        sub = parse_submission(form, raw)
        medias: list[Media | Document] = []
        downloaded: dict[str, Media | None] = {}
        for ref in sub.media:
            if ref.name not in downloaded:
                downloaded[ref.name] = self.download(ref)
            got = downloaded[ref.name]
            if got is None:
                continue
            if got.ref == ref:
                medias.append(got)
            else:  # the same file used by another field/row: share the spool
                medias.append(Media(ref, got.content_type, got.open, size=got.size, sha256=got.sha256))
        medias.extend(self.documents.of_submission(docs, sub))
        return sub, medias

    def download(self, ref: MediaRef) -> Media | None:
        """A media file spooled to disk, or None (logged) when the service no longer has it."""
        def attempt() -> Media:
            chunks, ctype = self.client.stream_media(ref.form_id, ref.submission_id, ref.name)
            return Media.spooled(ref, ctype, chunks)

        try:
            # opening is retried inside the client; here only a download cut mid-stream restarts
            return retry_call(attempt, attempts=self.client.attempts, base_delay=self.client.backoff,
                              max_delay=self.client.max_backoff, sleep=self.client.sleep,
                              is_retryable=lambda e: isinstance(e, StreamInterrupted),
                              describe=f"media {ref.name!r} of submission {ref.submission_id}")
        except NotFoundError as e:
            log.warning("form %s submission %s: media %r is missing on the service (%s); skipped",
                        ref.form_id, ref.submission_id, ref.name, e.message)
            return None
