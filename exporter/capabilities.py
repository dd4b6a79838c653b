"""What a destination can and cannot do, declared as data.

Planning (identifier names, column splits, file names, batch sizes) reads these values; nothing in
the core looks at a destination's name to decide what to do.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Capabilities:
    #: longest table/column identifier (SQL) or None when unlimited
    max_identifier_length: int | None = None
    #: most columns in one table (Access: 255); wider forms are split into continuation tables
    max_columns: int | None = None
    #: largest value one cell can hold, in characters (XLSX: 32767) or None
    max_cell_chars: int | None = None
    #: longest path the destination accepts (Windows/SharePoint: 400), None when unlimited
    max_path_length: int | None = None
    #: longest single path component
    max_name_length: int | None = 255
    #: characters a file/identifier name may not contain (replaced by the planner)
    forbidden_chars: str = ""
    #: names compared without case (SQL Server, MySQL on Windows, Access, SharePoint, Dropbox)
    case_insensitive: bool = False
    #: words that must be quoted or avoided
    reserved_words: frozenset[str] = field(default_factory=frozenset)
    #: a failed batch leaves nothing behind
    transactions: bool = False
    #: DDL (CREATE/ALTER) is rolled back with the transaction
    transactional_ddl: bool = False
    #: the destination can rename (atomic publish of a temporary name)
    rename: bool = True
    #: values are written as they come, without holding a whole document
    streaming: bool = True
    #: kind of content checksum the destination exposes ("sha256", "dropbox", "md5", "quickxor"...)
    checksum: str | None = None
    #: largest single upload before chunked sessions are needed
    max_simple_upload: int | None = None
    #: rows per INSERT statement / per load batch
    rows_per_batch: int = 1000
    #: what it can store
    stores_media: bool = True
    #: several processes may write different forms at once (``export --jobs N``): each in its own
    #: transactions, none of them touching another form's rows
    parallel_writers: bool = False
    #: keeps every record as the source served it (its payload): an account archive, which
    #: ``--pseudonymise`` leaves as served unless ``--pseudonymise-archive`` is given
    as_served: bool = False
    #: how it is tested (for the README's sink table)
    tested: str = ""
