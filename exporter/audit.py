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

An account's line goes to two logs, ``<state_dir>/<account>/audit.jsonl`` and
``<state_dir>/audit.jsonl`` (every account kept there): ``write`` stages it in the account's
``audit-pending/`` first, so a process killed between the two appends loses no line (``flush``,
at the account's next line, puts it in the log that missed it, once). ``exporter jobs run`` and
``exporter backups`` write their lines this way (``operation``: one line for one operation,
whatever its outcome).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError, LockedError, one_line, run_status
from .fsutil import atomic_write
from .locks import account_dir
from .secrets import mask

log = logging.getLogger("exporter.audit")

GENESIS = "0" * 64


def masked(value):
    """``value`` with every secret text in it masked (``exporter.secrets``)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v) for v in value]
    return value


def _lines_from_end(fh):
    """The complete lines of an open log (without their newline), last first, read in blocks."""
    pos = fh.seek(0, os.SEEK_END)
    rest = b""
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        fh.seek(pos)
        lines = (fh.read(step) + rest).split(b"\n")
        rest = lines.pop(0)  # maybe the tail of a line that starts in the block before
        for line in reversed(lines):
            if line:
                yield line
    if rest:
        yield rest


def _last_line(fh) -> bytes | None:
    """The last complete line of an open log (without its newline), read from the end."""
    return next(_lines_from_end(fh), None)


def _holds(fh, record: dict, since: dt.datetime) -> bool:
    """Whether the log holds the line of ``record`` (same ``id``), looking back from its end over
    the lines appended since ``since`` (less ``CLOCK_SKEW``: the log may be shared by hosts): lines
    come in the order they were appended, each with its append time (``logged``). Only a line that
    names the id is decoded."""
    ident = record.get("id")
    needle = json.dumps({"id": ident}, separators=(",", ":"))[1:-1].encode()
    stop = since - CLOCK_SKEW
    for line in _lines_from_end(fh):
        if needle in line:
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(line).get("id") == ident:
                    return True
        m = _LOGGED.search(line)
        logged = _time(m.group(1).decode()) if m else None
        if logged is not None and logged < stop:
            return False
    return False


#: a line's append time, read without decoding the line
_LOGGED = re.compile(rb'"logged":"([^"]+)"')
#: how far the clocks of hosts appending to one log may differ
CLOCK_SKEW = dt.timedelta(hours=1)


def _time(value) -> dt.datetime | None:
    with contextlib.suppress(TypeError, ValueError):
        return dt.datetime.fromisoformat(value)
    return None


def append(path: str | os.PathLike, record: dict, *, once: dt.datetime | None = None) -> str | None:
    """Append ``record`` (masked) to the log at ``path``, chained to its last line, with its
    append time (``logged``); returns the new line's SHA-256. ``once`` (when the record was staged):
    unless the log holds it already (a record with the same ``id``, appended since then by a writer
    killed before its other logs): then nothing is written, None."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "r+b", buffering=0) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if once is not None and _holds(fh, record, once):
                return None
            last = _last_line(fh)
            prev = hashlib.sha256(last).hexdigest() if last is not None else GENESIS
            head = _head(path) if last is not None else {"lines": 0}
            if last is not None and _interrupted(head, last, prev):  # the line is whole: count it
                head = {"lines": head["lines"] + 1}
            logged = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            line = json.dumps({**masked(record), "logged": logged, "prev": prev}, ensure_ascii=False,
                              separators=(",", ":"),
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


def write(state_dir: str | os.PathLike, account: str, record: dict) -> None:
    """Append ``record`` (it has an ``id`` and a ``time``) to the account's log and to its
    state_dir's, staged first (``stage``, ``flush``)."""
    stage(state_dir, account, record)
    flush(state_dir, account)


def stage(state_dir: str | os.PathLike, account: str, record: dict) -> None:
    """Keep ``record`` in the account's folder until ``flush`` has put it in both logs: a process
    killed between the two appends leaves it there, for the account's next audit line."""
    with atomic_write(account_dir(state_dir, account) / "audit-pending" / f"{record['id']}.json", "w",
                      encoding="utf-8") as fh:
        json.dump(masked(record), fh, default=str)


def flush(state_dir: str | os.PathLike, account: str) -> None:
    """Append every staged record of the account to both logs (once: a log that holds it already,
    from a writer killed half-way, is left as it is), oldest first, then drop it."""
    folder = account_dir(state_dir, account)
    staged = []
    for path in (folder / "audit-pending").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            at = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)  # when it was staged
            staged.append((at, json.loads(path.read_text("utf-8")), path))
    for at, record, path in sorted(staged, key=lambda x: x[0]):
        append(folder / "audit.jsonl", record, once=at)
        append(folder.parent / "audit.jsonl", record, once=at)
        path.unlink(missing_ok=True)


class Line(dict):
    """The record of an operation's audit line (``operation``), which its block completes; the
    block calls ``begin()`` when its work starts (something may be created or changed): from then
    on a ``ConfigError`` is a failure, recorded like any other, no longer a refusal."""

    began = False

    def begin(self) -> None:
        self.began = True


@contextlib.contextmanager
def operation(state_dir: str | os.PathLike, account: str, action: str, **fields) -> Iterator[Line]:
    """Write one line for the operation run in the ``with`` block (``exporter backups create``...):
    the record it yields (a ``Line``), which the block completes (counts, bytes, hashes), with its
    start, end, duration, host and result: ``ok``; ``failed``, ``locked`` or ``interrupted`` with
    the error (one line) when the block raises; or the ``result`` and ``error`` the block set
    itself. A refusal (a ``ConfigError`` raised before the block called ``begin()``: bad input,
    nothing done) writes no line. A line that cannot be written is logged; it never changes the
    operation's outcome."""
    from .jobstate import now

    start = now()
    record = Line(fields)
    try:
        yield record
    except BaseException as e:
        if isinstance(e, ConfigError) and not record.began:
            raise
        record.update(result="locked" if isinstance(e, LockedError) else run_status(e), error=one_line(e))
        _finish(state_dir, account, action, start, record)
        raise
    _finish(state_dir, account, action, start, record)


def _finish(state_dir: str | os.PathLike, account: str, action: str, start: dt.datetime, fields: dict) -> None:
    from .jobstate import iso, now

    end = now()
    record = {"id": uuid.uuid4().hex, "time": iso(end), "account": account, "action": action, "start": iso(start),
              "end": iso(end), "seconds": round((end - start).total_seconds(), 3), "result": "ok", "error": "",
              **fields, "host": socket.gethostname()}
    record["error"] = mask(record["error"])[:500]
    try:
        write(state_dir, account, record)
    except Exception as e:  # noqa: BLE001 - bookkeeping never hides the operation's own outcome
        log.error("account %s: could not write its audit line: %s", account, mask(one_line(e)))
