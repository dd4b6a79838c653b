"""The report model shared by the DOCX and PDF writers: what a report of one submission says.

A *report* is what a person reads about one submission: a title (form name and record number),
a metadata table, then every field of the form in definition order with its caption, sub-forms as
tables (one column per child field, headed by the child captions), photos and signatures embedded,
and other media (audio, attachments) listed by name with their path relative to the report.

``build_report`` turns (Form, Submission, prepared media) into a :class:`SubmissionReport` made of
plain blocks (strings and file paths only), so both renderers draw exactly the same content and a
report can be pickled to a spool file (the single-PDF mode lays a whole form out twice). How the
blocks are laid out is each writer's business (``docx_writer``, ``pdf_layout``); the words come
from ``labels``, the prepared images from ``images``.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from exporter.formats.labels import file_size

from exporter.model import (
    LAYOUT,
    MEDIA,
    META_KEYS,
    SUBFORM,
    Account,
    FieldDef,
    Form,
    GeoPoint,
    MediaRef,
    Submission,
    media_names,
)

#: sub-forms with more value columns than this are laid out one small table per row
WIDE_TABLE_COLUMNS = 6
#: layout field types shown as sub-headings (other layout fields carry no data)
HEADING_TYPES = frozenset({"section", "tab"})

# XML 1.0 (DOCX) and PDF text cannot carry these; they are replaced by U+FFFD so the gap stays visible
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass
class ImageItem:
    """An image embedded in the report: a prepared JPEG/PNG on disk and its pixel size."""

    caption: str
    name: str
    path: str
    width_px: int
    height_px: int
    relpath: str | None = None


@dataclass
class FileItem:
    """A media listed by name: not an image, an image that cannot be embedded, or not exported."""

    caption: str
    name: str
    relpath: str | None  # relative to the report file; None when the media was not exported
    content_type: str = ""
    size: int | None = None  # bytes
    problem: str = ""  # why an image is listed instead of shown; "not exported"

    def details(self, labels: dict[str, str]) -> str:
        """What the report prints after the name: `` — <relpath> (<type>, <size>, <problem>)``."""
        out = f" — {self.relpath}" if self.relpath else ""
        notes = [n for n in (self.content_type, file_size(self.size, labels), self.problem) if n]
        return out + (f" ({', '.join(notes)})" if notes else "")


MediaItem = ImageItem | FileItem


@dataclass
class FieldBlock:
    caption: str
    value: str


@dataclass
class HeadingBlock:
    caption: str


@dataclass
class MediaBlock:
    caption: str
    value: str  # the media names as served
    items: list[MediaItem]


@dataclass
class TableBlock:
    caption: str
    headers: list[str]
    rows: list[list[str]]
    items: list[MediaItem] = field(default_factory=list)  # media of the rows, captioned "Row n · ..."


Block = FieldBlock | HeadingBlock | MediaBlock | TableBlock


@dataclass
class SubmissionReport:
    form_id: str
    form_name: str
    submission_id: str
    title: str
    subtitle: str
    toc_text: str
    meta: list[tuple[str, str]]
    blocks: list[Block]
    update_time: str | None = None  # the submission's, as served: dates the report file

    def images(self) -> list[ImageItem]:
        out: list[ImageItem] = []
        for b in self.blocks:
            if isinstance(b, (MediaBlock, TableBlock)):
                out.extend(i for i in b.items if isinstance(i, ImageItem))
        return out


def clean_text(text: Any) -> str:
    """Text a document can hold: str, with characters XML 1.0 forbids replaced by U+FFFD."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    return _INVALID_XML.sub("\ufffd", s)


def caption_of(f: FieldDef) -> str:
    return clean_text(f.caption.strip() or f.name)


def format_value(fdef: FieldDef, value: Any, text: str | None, labels: dict[str, str]) -> str:
    """A typed value as a person reads it; the served text when the value did not type."""
    if value is None:
        return clean_text(text)
    if isinstance(value, bool):
        return labels["yes"] if value else labels["no"]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M" + (":%S" if value.second else ""))
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.strftime("%H:%M" + (":%S" if value.second else ""))
    if isinstance(value, GeoPoint):
        return f"{value.latitude!r}, {value.longitude!r}"
    if isinstance(value, tuple):  # media names
        return clean_text(", ".join(str(v) for v in value))
    return clean_text(value)


def media_key(ref: MediaRef) -> tuple:
    return (ref.subform, ref.row, ref.field, ref.name)


def _meta_rows(form: Form, sub: Submission, labels: dict[str, str]) -> list[tuple[str, str]]:
    rows = [(labels["form"], clean_text(f"{form.name} ({form.id})")), (labels["id"], clean_text(sub.id))]
    for k in META_KEYS:
        v = sub.meta.get(k)
        if v not in (None, ""):
            rows.append((labels.get(k, k), clean_text(v)))
    return rows


def build_report(form: Form, sub: Submission, media: dict[tuple, MediaItem], labels: dict[str, str],
                 account: Account | None = None) -> SubmissionReport:
    """The report of one submission. ``media`` maps a media key to its prepared item (only the
    media that arrived); every other media the submission names is listed as not exported."""
    rn = sub.meta.get("record_number")
    title = clean_text(f"{form.name} — #{rn}" if rn else f"{form.name} — {sub.id}")
    when = sub.meta.get("answer_time") or sub.meta.get("create_time") or ""
    who = sub.meta.get("user_name") or ""
    sub_t = f"{labels['submission']} {sub.id}"
    if account is not None and account.timezone:
        sub_t += f" · {labels['timezone']} {account.timezone}"
    toc = " · ".join(p for p in (f"#{rn}" if rn else "", f"{labels['id']} {sub.id}", when, who) if p)
    blocks: list[Block] = []

    def item_for(ref: MediaRef, caption: str) -> MediaItem:
        got = media.get(media_key(ref))
        if got is None:
            return FileItem(caption, clean_text(ref.name), None, problem=labels["missing"])
        if isinstance(got, ImageItem):
            return ImageItem(caption, got.name, got.path, got.width_px, got.height_px, got.relpath)
        return FileItem(caption, got.name, got.relpath, got.content_type, got.size, got.problem)

    for f in form.fields:
        if f.kind == LAYOUT:
            if f.type.lower() in HEADING_TYPES and (f.caption or "").strip():
                blocks.append(HeadingBlock(caption_of(f)))
            continue
        if f.kind == SUBFORM:
            children = [c for c in f.children if c.has_value]
            rows, items = [], []
            for row in sub.subforms.get(f.name, []):
                rows.append([format_value(c, row.values.get(c.name), row.text.get(c.name), labels)
                             for c in children])
                for c in children:
                    if c.kind == MEDIA:
                        for name in media_names(row.values.get(c.name)):
                            ref = MediaRef(form.id, sub.id, c.name, name, f.name, row.index)
                            items.append(item_for(ref, f"{labels['row']} {row.index + 1} · {caption_of(c)}"))
            blocks.append(TableBlock(caption_of(f), [caption_of(c) for c in children], rows, items))
            continue
        value = format_value(f, sub.values.get(f.name), sub.text.get(f.name), labels)
        names = media_names(sub.values.get(f.name)) if f.kind == MEDIA else ()
        if names:
            items = [item_for(MediaRef(form.id, sub.id, f.name, n), caption_of(f)) for n in names]
            blocks.append(MediaBlock(caption_of(f), value, items))
        else:
            blocks.append(FieldBlock(caption_of(f), value))
    return SubmissionReport(form.id, clean_text(form.name), clean_text(sub.id), title, clean_text(sub_t),
                            clean_text(toc), _meta_rows(form, sub, labels), blocks, sub.update_time)


def group_blocks(blocks: list[Block]) -> list[list[FieldBlock] | Block]:
    """Consecutive plain fields grouped (each group renders as one caption/value table)."""
    out: list[Any] = []
    for b in blocks:
        if isinstance(b, FieldBlock):
            if out and isinstance(out[-1], list):
                out[-1].append(b)
            else:
                out.append([b])
        else:
            out.append(b)
    return out
