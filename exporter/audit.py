"""Audit logs: append-only JSON lines, hash-chained, so an edited or removed line is seen.

Each line is one JSON object ending with ``"prev"``: the SHA-256 (hex) of the line before it (of
its bytes, without the newline; 64 zeros for the first). A sidecar ``<log>.head`` holds the count
and the hash of the last line, so a removed or edited *last* line is seen too. Appending takes an
exclusive ``flock`` on the log, so several processes (accounts running side by side, two ``jobs
run``) append whole lines in turn; each line is written with one ``write`` and fsynced.

A writer killed between its line and the head leaves one whole line more than the head counts,
chained to the head's hash: that is read as an append cut short, not as an edit (``verify``
accepts it, the next ``append`` counts it).

``verify`` re-reads a log and returns its problems (an empty list: intact). Nothing secret is
ever written here: callers pass masked values, and every text is masked again on its way in.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
from pathlib import Path

from .fsutil import atomic_write
from .secrets import mask

GENESIS = "0" * 64
#: how far before a record ``append(once=True)`` looks for it
LOOK_BACK = dt.timedelta(days=1)


def masked(value):
    """``value`` with every secret text in it masked (``exporter.secrets``)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v) for v in value]
    return value


def _blocks_from_end(fh):
    """The complete lines of an open log (without their newline) in blocks of about 64 KiB, read
    from the end: the last block first, the lines of each in their order."""
    pos = fh.seek(0, os.SEEK_END)
    rest = b""
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        fh.seek(pos)
        lines = (fh.read(step) + rest).split(b"\n")
        rest = lines.pop(0)  # maybe the tail of a line that starts in the block before
        block = [line for line in lines if line]
        if block:
            yield block
    if rest:
        yield [rest]


def _lines_from_end(fh):
    """The complete lines of an open log (without their newline), last first."""
    for block in _blocks_from_end(fh):
        yield from reversed(block)


def _last_line(fh) -> bytes | None:
    """The last complete line of an open log (without its newline), read from the end."""
    return next(_lines_from_end(fh), None)


def _holds(fh, record: dict) -> bool:
    """Whether the log holds the line of ``record`` (same ``id``), looking back from its end to
    the lines a day older than the record (lines come in the order they were written). A block of
    lines is searched for the id's bytes (a line is read only when they are in it), and only its
    first line is read for its time: a log a day long costs a scan, not a JSON read per line."""
    ident, when = record.get("id"), _time(record.get("time"))
    needle = json.dumps(ident, ensure_ascii=False).encode("utf-8")  # the id's value, as a line holds it
    for block in _blocks_from_end(fh):
        for line in block:
            if needle in line:
                with contextlib.suppress(ValueError, AttributeError):
                    if json.loads(line).get("id") == ident:
                        return True
        with contextlib.suppress(ValueError, AttributeError):
            t = _time(json.loads(block[0]).get("time"))
            if when is not None and t is not None and t < when - LOOK_BACK:
                return False
    return False


def _time(value) -> dt.datetime | None:
    with contextlib.suppress(TypeError, ValueError):
        return dt.datetime.fromisoformat(value)
    return None


def append(path: str | os.PathLike, record: dict, *, once: bool = False) -> str | None:
    """Append ``record`` (masked) to the log at ``path``, chained to its last line; returns the
    new line's SHA-256. ``once``: unless the log holds it already (a record with the same ``id``,
    appended by a writer killed before its other logs): then nothing is written, None."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "r+b", buffering=0) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if once and _holds(fh, record):
                return None
            last = _last_line(fh)
            prev = hashlib.sha256(last).hexdigest() if last is not None else GENESIS
            head = _head(path) if last is not None else {"lines": 0}
            if last is not None and _interrupted(head, last, prev):  # the line is whole: count it
                head = {"lines": head["lines"] + 1}
            line = json.dumps({**masked(record), "prev": prev}, ensure_ascii=False, separators=(",", ":"),
                              default=str).encode("utf-8")
            fh.write(line + b"\n")
            os.fsync(fh.fileno())
            digest = hashlib.sha256(line).hexdigest()
            with atomic_write(_head_path(path), "w", encoding="utf-8") as h:
                lines = head["lines"] + 1 if isinstance(head.get("lines"), int) else _count(path)
                json.dump({"lines": lines, "sha256": digest}, h)
            return digest
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _interrupted(head: dict, last: bytes, last_hash: str) -> bool:
    """Whether the log's last line was appended by a writer killed before it wrote the head (the
    head names the line before it, which the last line chains to): a whole line, not an edit."""
    if head.get("sha256") in (None, last_hash) or not isinstance(head.get("lines"), int):
        return False
    try:
        return json.loads(last).get("prev") == head["sha256"]
    except (ValueError, AttributeError):
        return False


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _head(path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(_head_path(path).read_text("utf-8"))
    return {}


def _count(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def verify(path: str | os.PathLike) -> list[str]:
    """The problems of the log at ``path``: a line that is not JSON, a broken chain (a line edited,
    removed or inserted before it), or a last line that differs from the recorded head."""
    path = Path(path)
    problems: list[str] = []
    prev, n, digest = GENESIS, 0, GENESIS
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            line = raw.rstrip(b"\n")
            try:
                record = json.loads(line)
            except ValueError:
                problems.append(f"{path}:{n}: not a JSON line")
                record = {}
            if record.get("prev") != prev:
                problems.append(f"{path}:{n}: chain broken: this line does not follow line {n - 1} as written "
                                f"(a line was edited, removed or inserted)")
            prev = digest = hashlib.sha256(line).hexdigest()
    head = _head(path)
    if n and _interrupted(head, line, digest) and n == head["lines"] + 1:
        head = {}  # the last append was cut short after its line: that line is whole and chained
    if head and (head.get("lines") != n or head.get("sha256") != digest):
        problems.append(f"{path}: the log ends at line {n} but {head.get('lines')} line(s) were written "
                        "(the last lines were edited or removed)" if head.get("lines") != n else
                        f"{path}:{n}: the last line was edited (its hash differs from the recorded head)")
    return problems
