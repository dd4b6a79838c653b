"""The canonical model: typed records that every sink consumes.

A source yields, in this order: ``Account`` (once), ``User``\\ s, ``Group``\\ s, ``ExternalList``\\ s,
then for each form its ``Form`` record followed by its ``Submission``\\ s, each submission followed by
the ``Media`` records it references and its vendor ``Document``\\ s (when asked for; a form's layout
pictures follow the first submission a run reads of it), and finally a ``Checkpoint`` for the form
(its incremental cursor). A sink may rely on a form's ``Form`` record arriving before any of its submissions.

Natural keys come from the service: form id, submission id, (sub-form field, row index), media name.
The original service payload is kept in ``raw`` on every record, and the original text of every
typed value in ``Submission.text``, so that nothing typing could lose is lost.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, AbstractSet, Any, BinaryIO, Callable, ClassVar, Iterator, Literal, Self, cast

from .served import ServedPayload

# --------------------------------------------------------------------------------------------
# Field kinds: the service's field type mapped onto the value type we store.
# --------------------------------------------------------------------------------------------

#: canonical value kinds
TEXT, NUMBER, DATE, TIME, DATETIME, BOOLEAN, GEOLOC, MEDIA, CHOICE, SUBFORM, LAYOUT = (
    "text", "number", "date", "time", "datetime", "boolean", "geoloc", "media", "choice",
    "subform", "layout",
)

_KIND_BY_TYPE = {
    "text": TEXT, "textarea": TEXT, "barcode": TEXT, "nfc": TEXT, "email": TEXT, "phone": TEXT,
    "number": NUMBER, "slider": NUMBER, "calcul": NUMBER, "counter": NUMBER,
    "date": DATE, "time": TIME, "datetime": DATETIME, "hour": TIME,
    "checkbox": BOOLEAN,
    "geoloc": GEOLOC,
    "photo": MEDIA, "signature": MEDIA, "audio": MEDIA, "paint": MEDIA, "schema": MEDIA,
    "attached": MEDIA, "file": MEDIA, "video": MEDIA,
    "choice": CHOICE, "list": CHOICE, "select": CHOICE,
    "subform": SUBFORM, "table": SUBFORM,
    "section": LAYOUT, "fixed_text": LAYOUT, "fixed_image": LAYOUT, "fixed_attached": LAYOUT,
    "separator": LAYOUT, "tab": LAYOUT,
}


#: every service field type the model knows (any other is typed as text)
FIELD_TYPES = tuple(_KIND_BY_TYPE)


def kind_of(field_type: str | None) -> str:
    """Canonical kind of a service field type; unknown types are kept as text (nothing lost)."""
    return _KIND_BY_TYPE.get((field_type or "").lower(), TEXT)


@dataclass(frozen=True)
class GeoPoint:
    latitude: float
    longitude: float

    def __str__(self) -> str:
        return f"{self.latitude},{self.longitude}"


#: a typed value: what ``Submission.values`` holds
Value = None | str | Decimal | dt.date | dt.time | dt.datetime | bool | GeoPoint | tuple


def media_names(value: Value) -> tuple[str, ...]:
    """The media names a media field's value holds (its converter gives a tuple; None: none)."""
    return value if isinstance(value, tuple) else ()


@dataclass(frozen=True)
class FieldDef:
    """One field of a form definition, in definition order."""

    name: str
    type: str
    kind: str
    caption: str = ""
    subtype: str | None = None
    required: bool = False
    list_id: str | None = None
    children: tuple[FieldDef, ...] = ()  # sub-form fields (kind == SUBFORM)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def has_value(self) -> bool:
        return self.kind not in (LAYOUT, SUBFORM)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class Account:
    """Where the data comes from; first record of every stream."""

    source: str  # base URL or archive path, secrets masked
    timezone: str | None = None  # IANA name when configured; served times have no offset
    exported_at: str | None = None  # ISO time the source snapshot was taken (archive) or now
    raw: dict = field(default_factory=dict, repr=False)
    #: every form id the service lists, when the whole account is read (no ``--form``): a form a
    #: destination holds that is not among them is gone from the service (marked, never emptied)
    form_ids: tuple[str, ...] | None = None

    kind: ClassVar[Literal["account"]] = "account"


@dataclass
class User:
    id: str
    login: str = ""
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""
    admin: bool = False
    main_group_id: str | None = None
    create_time: str | None = None
    raw: dict = field(default_factory=dict, repr=False)
    #: every served key the fields above do not read, unchanged (see ``extra_json``)
    extra: dict = field(default_factory=dict, repr=False)

    kind: ClassVar[Literal["user"]] = "user"


@dataclass
class Group:
    id: str
    name: str
    parent_id: str | None = None
    users: tuple[str, ...] = ()
    leaders: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    raw: dict = field(default_factory=dict, repr=False)
    #: every served key the fields above do not read, unchanged (see ``extra_json``)
    extra: dict = field(default_factory=dict, repr=False)

    kind: ClassVar[Literal["group"]] = "group"


@dataclass(frozen=True)
class ListColumn:
    label: str
    code: str | None


@dataclass(frozen=True)
class ListItem:
    """One external-list line: hierarchy ``levels`` (split on ``\\``), each a tuple of columns
    (split on ``|``), each column ``label:code``. ``line`` keeps the raw text."""

    index: int
    line: str
    levels: tuple[tuple[ListColumn, ...], ...]


def parse_list_item(line: str, index: int = 0) -> ListItem:
    levels = []
    for level in line.split("\\"):
        cols = []
        for col in level.split("|"):
            label, sep, code = col.partition(":")
            cols.append(ListColumn(label, code if sep else None))
        levels.append(tuple(cols))
    return ListItem(index=index, line=line, levels=tuple(levels))


@dataclass
class ExternalList:
    id: str
    name: str
    class_: str | None = None
    update_time: str | None = None
    items: tuple[str, ...] = ()  # raw lines exactly as served (an item served as an object: its JSON text)
    raw: dict = field(default_factory=dict, repr=False)
    #: every served key the fields above do not read (``LIST_KEYS``), unchanged (see ``extra_json``)
    extra: dict = field(default_factory=dict, repr=False)

    kind: ClassVar[Literal["list"]] = "list"

    def parsed_items(self) -> Iterator[ListItem]:
        for i, line in enumerate(self.items):
            yield parse_list_item(line, i)


@dataclass
class Form:
    id: str
    name: str
    fields: tuple[FieldDef, ...]
    class_: str | None = None
    update_time: str | None = None
    options: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    kind: ClassVar[Literal["form"]] = "form"

    def value_fields(self) -> list[FieldDef]:
        """Top-level fields that hold a value (no layout, no sub-form)."""
        return [f for f in self.fields if f.has_value]

    def subforms(self) -> list[FieldDef]:
        return [f for f in self.fields if f.kind == SUBFORM]

    def field(self, name: str) -> FieldDef | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True)
class MediaRef:
    """Where a media name is used: natural key (form, submission, name)."""

    form_id: str
    submission_id: str
    field: str
    name: str
    subform: str | None = None  # sub-form field name when the media sits in a sub-form row
    row: int | None = None  # row index in that sub-form


#: metadata keys of a submission, in the order sinks should present them
META_KEYS = (
    "record_number", "user_id", "create_time", "update_time", "answer_time", "update_answer_time",
    "start_time", "end_time", "update_user_id", "direction", "recipient_id", "form_unique_id",
    "origin_answer", "user_name", "first_name", "last_name", "login", "email", "phone",
    "update_user_name", "recipient_name", "history",
)


#: served user keys the ``User`` fields read
USER_KEYS = ("id", "login", "first_name", "last_name", "email", "phone", "admin", "main_group_id",
             "create_time")
#: served group keys the ``Group`` fields read
GROUP_KEYS = ("id", "name", "parent_group_id", "parent_id", "users", "leaders", "children")
#: served external-list keys the ``ExternalList`` fields read
LIST_KEYS = ("id", "name", "class", "update_time", "items")


def extra_json(extra: dict) -> str | None:
    """The one text every destination writes for a record's ``extra`` keys: compact JSON, keys
    sorted, non-ASCII kept; None when there is none."""
    if not extra:
        return None
    return json.dumps(extra, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass
class SubformRow:
    index: int
    values: dict[str, Value]
    text: dict[str, str | None]  # original text of every value


@dataclass
class Submission:
    form_id: str
    id: str
    meta: dict[str, str | None]  # META_KEYS (strings exactly as served, times without offset)
    values: dict[str, Value]  # top-level typed values, keyed by field name
    text: dict[str, str | None]  # original served text for every top-level value
    subforms: dict[str, list[SubformRow]] = field(default_factory=dict)
    media: tuple[MediaRef, ...] = ()
    #: the record as served (either shape); given as the JSON document's bytes, decoded when read
    raw: ServedPayload = field(default=ServedPayload(), repr=False)
    #: every served key the model does not read (metadata beyond ``META_KEYS``, named as in the
    #: nested shape; values of fields the definition does not know under ``"fields"``, keys of
    #: sub-form rows under ``"subforms"``: see ``records.parse_submission``), unchanged
    extra: dict = field(default_factory=dict, repr=False)

    kind: ClassVar[Literal["submission"]] = "submission"

    @property
    def update_time(self) -> str | None:
        return self.meta.get("update_time") or self.meta.get("create_time")


def counted_bytes(size: Any) -> int:
    """What a media size counts for in a run's byte totals: an integer as is, anything else an
    archive may hold there (a text, a fraction, null) nothing."""
    return size if type(size) is int else 0


class Blob:
    """Bytes that travel with the records (a media file, a vendor document): metadata plus a
    stream, never all held in memory.

    ``open()`` returns a new binary reader each time it is called, so several sinks can read the
    same bytes one after another. ``size`` and ``sha256`` are known once the bytes are spooled.
    """

    kind: ClassVar[str] = ""  # each kind of blob says its own
    #: the spool a ``spooled`` blob reads from, kept alive with the record
    _spool: IO[bytes] | None = None

    def __init__(
        self,
        ref: Any,
        content_type: str,
        opener: Callable[[], IO[bytes]],
        size: int | None = None,
        sha256: str | None = None,
    ):
        self.ref = ref
        self.content_type = content_type
        self._opener = opener
        self.size = size
        self.sha256 = sha256

    def open(self) -> IO[bytes]:
        return self._opener()

    def iter_bytes(self, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        with self.open() as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ref!r}, {self.content_type!r}, size={self.size}, sha256={self.sha256})"

    @classmethod
    def spooled(cls, ref: Any, content_type: str, chunks: Iterator[bytes],
                max_memory: int = 1 << 20, **kw: Any) -> Self:
        """Spool a byte stream to a temporary file (in memory up to ``max_memory``), hashing it."""
        spool = tempfile.SpooledTemporaryFile(max_size=max_memory)
        h = hashlib.sha256()
        size = 0
        try:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                spool.write(chunk)
            spool.flush()
        except BaseException:
            spool.close()
            raise

        def opener() -> IO[bytes]:
            spool.seek(0)
            # a raw reader has every method an IO[bytes] caller uses, without being one nominally
            return cast(IO[bytes], _NoClose(spool))

        blob = cls(ref, content_type, opener, size=size, sha256=h.hexdigest(), **kw)
        blob._spool = spool  # keep alive with the record; freed with it
        return blob

    @classmethod
    def from_path(cls, ref: Any, content_type: str, path: str,
                  size: int | None = None, sha256: str | None = None, **kw: Any) -> Self:
        return cls(ref, content_type, lambda: open(path, "rb"), size=size, sha256=sha256, **kw)


class Media(Blob):
    """A media file of a submission (photo, signature, attachment...): ``ref`` is its ``MediaRef``."""

    kind: ClassVar[Literal["media"]] = "media"
    ref: MediaRef


#: kinds of vendor document (``DocumentRef.doc_kind``)
PDF, EXPORT, FORM_PICTURE = "pdf", "export", "form_picture"
DOCUMENT_KINDS = (PDF, EXPORT, FORM_PICTURE)


@dataclass(frozen=True)
class DocumentRef:
    """What a vendor document is, its natural key: a submission's standard PDF (``pdf``), one of
    its custom Word/Excel exports (``export``, ``key`` = the export id), or a form's layout
    picture (``form_picture``, ``key`` = the ``fixed_image`` field's name; no submission: it
    belongs to the form)."""

    form_id: str
    submission_id: str | None
    doc_kind: str
    key: str = ""


class Document(Blob):
    """A document the service makes (``DocumentRef``): its bytes, streamed like a media's, and
    ``name``, the file name as the service gave it (``Content-Disposition``), unchanged: sinks
    make it safe where it becomes a path, hostile names are normal input."""

    kind: ClassVar[Literal["document"]] = "document"
    ref: DocumentRef

    def __init__(self, ref: DocumentRef, content_type: str, opener: Callable[[], IO[bytes]],
                 size: int | None = None, sha256: str | None = None, *, name: str):
        super().__init__(ref, content_type, opener, size=size, sha256=sha256)
        self.name = name

    def __repr__(self) -> str:
        return f"Document({self.ref!r}, {self.name!r}, {self.content_type!r}, size={self.size})"


def blob_bytes(record: Any) -> int:
    """What a record weighs in bytes it carries (media, documents), for batch and read-ahead limits
    and byte totals; anything else nothing."""
    return counted_bytes(record.size) if isinstance(record, Blob) else 0


class _NoClose(io.RawIOBase):
    """A reader over a shared spool that does not close it."""

    def __init__(self, fh):
        self._fh = fh

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._fh.read(len(b))
        b[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        return self._fh.read(n)


def copy_media(media: Media, dest: BinaryIO) -> None:
    with media.open() as src:
        shutil.copyfileobj(src, dest, 1 << 16)


@dataclass
class Checkpoint:
    """The incremental cursor of one form, emitted once everything before it has been yielded.

    A sink stores it with the data it has committed (same transaction where it can), so its state
    never runs ahead of its data.
    """

    form_id: str
    cursor: str | None  # greatest ``update_time`` seen ("YYYY-MM-DD HH:MM:SS"), None if no data
    mode: str = "full"
    #: False at a page boundary within the form (unread mode): more of the form follows, so a
    #: writer keeps the form open; True at the form's end
    final: bool = True
    #: every id the form has on the service, when the source read its complete listing this run
    #: (``exporter.deletions``); None: unknown, so nothing may be taken as deleted
    listing: AbstractSet[str] | None = None
    #: ids the source saw deleted during this run: listed, then gone when it asked for them (they
    #: are not in ``listing``); an archive keeps them (``deleted.jsonl``) and replays them
    gone: frozenset[str] = frozenset()

    kind: ClassVar[Literal["checkpoint"]] = "checkpoint"


Record = Account | User | Group | ExternalList | Form | Submission | Media | Document | Checkpoint
#: what ``Record.kind`` can be: testing ``r.kind == "media"`` narrows ``r`` to ``Media`` for the type checker
RecordKind = Literal["account", "user", "group", "list", "form", "submission", "media", "document", "checkpoint"]

#: submissions per slice when a form is shared among parallel workers (see ``FormPart``)
PART_ROWS = 1000


@dataclass(frozen=True)
class FormPart:
    """A share of one form's submissions, for parallel workers (``export --jobs``): the
    submissions at positions p of the source's listing with ``(p // rows) % count == index``.
    The parts of a form together hold each submission exactly once."""

    form_id: str
    index: int = 0
    count: int = 1
    rows: int = PART_ROWS

    def takes(self, position: int) -> bool:
        return self.count <= 1 or (position // self.rows) % self.count == self.index
