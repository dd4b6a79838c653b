"""``exporter forget``: erase a person, or a list of submissions, from every destination.

A **request** (``Request``) names a user (their user row, group memberships, and the submissions
they made or were the recipient of; in the submissions they only edited, the metadata naming them
is emptied), or, with ``only_personal``, only that user's personal columns wherever they appear
(see ``exporter.privacy.personal``), or a list of submission ids (in every form).

Each destination that can erase offers an **eraser** (its sink's optional ``eraser()``; the
``Eraser`` protocol below): ``plan(request)`` counts what would go, per kind, changing nothing;
``erase(request, audit_line)`` does it, transactionally for that destination, records the audit
line in the destination's own state (SQL: table ``erasures``, in the same transaction; files:
``.exporter/erasures.jsonl``), and can be run again after being stopped at any point (a second run
finishes the first). A new kind of destination (a backup set, say) takes part by giving its sink
an ``eraser()`` method: nothing here names a destination.

``forget`` plans every destination first (a destination that cannot erase, or any error, stops
it before anything changes), then, with ``apply``, erases them one after another. An **audit
line** says when, where, what kind of request and how much of each kind was erased: never an id,
a name or a value (``audit_line``); ``--audit FILE`` gets a copy of each.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from exporter import __version__
from exporter.errors import ConfigError, SinkError, os_error_text

log = logging.getLogger("exporter.forget")

#: what an eraser counts, in the order a summary names them: key -> (one, several)
KINDS: dict[str, tuple[str, str]] = {
    "users": ("user", "users"),
    "user_personal_values": ("personal value of the user", "personal values of the user"),
    "group_memberships": ("group membership", "group memberships"),
    "submissions": ("submission", "submissions"),
    "subform_rows": ("sub-form row", "sub-form rows"),
    "media": ("media", "media"),
    "media_files": ("media file", "media files"),
    "documents": ("document made by the service", "documents made by the service"),
    "submission_personal_values": ("value naming the user in a kept submission",
                                   "values naming the user in kept submissions"),
    "files": ("file", "files"),
    "derived_files": ("derived file (single-document report, delta)", "derived files (single-document reports, "
                                                                      "deltas)"),
}


@dataclass(frozen=True)
class Request:
    """What to erase (see the module docstring). ``reference`` is the operator's own reference
    for the audit (a ticket number), never the person."""

    user_id: str | None = None
    submission_ids: tuple[str, ...] = ()
    only_personal: bool = False
    reference: str | None = None

    def __post_init__(self) -> None:
        if (self.user_id is None) == (not self.submission_ids):
            raise ConfigError("forget needs either --user ID or --submission ID (and not both)")
        if self.only_personal and self.user_id is None:
            raise ConfigError("--only-personal is for --user ID (a user's personal columns)")
        if self.user_id is not None and not self.user_id.strip():
            raise ConfigError("--user: empty user id")

    def as_doc(self) -> dict:
        """The request as an eraser's journal keeps it (a re-run of the same request is recognised)."""
        return {"user_id": self.user_id, "submission_ids": list(self.submission_ids), "only_personal": self.only_personal}

    def subject(self) -> dict:
        """What kind of request this is, for the audit (no id)."""
        out: dict = {"subject": "user" if self.user_id is not None else "submissions"}
        if self.user_id is not None:
            out["only_personal"] = self.only_personal
        else:
            out["requested"] = len(set(self.submission_ids))
        if self.reference:
            out["reference"] = self.reference
        return out


@runtime_checkable
class Eraser(Protocol):
    name: str  # the destination, secrets masked

    def plan(self, request: Request) -> dict[str, int]: ...

    def erase(self, request: Request, audit_line: Callable[[dict[str, int]], str]) -> list[str]: ...


def journaled(name: str, request: Request, audit_line: Callable[[dict[str, int]], str], pending: dict | None,
              job_of: Callable[[Request], dict], save: Callable[[dict], None], run: Callable[[dict], str]) -> list[str]:
    """An eraser's ``erase`` over its journal: the erasure a stopped run left (``pending``) is
    finished first (and is all there is to do when it was this same request); then this request's
    job (``job_of``) gets its audit line, is saved (``save``) and run (``run``: its audit line)."""
    lines = []
    if pending is not None:
        log.warning("%s: finishing an erasure that was stopped before its end", name)
        lines.append(run(pending))
        if pending["request"] == request.as_doc():
            return lines
    job = job_of(request)
    job["line"] = audit_line(job["counts"])
    save(job)
    lines.append(run(job))
    return lines


def add(counts: dict[str, int], kind: str, n: int) -> None:
    if n:
        counts[kind] = counts.get(kind, 0) + n


def describe(counts: dict[str, int]) -> str:
    """``1 user, 2 group memberships, 9 submissions`` (``nothing`` when all are zero)."""
    parts = [f"{n} {KINDS[k][0] if n == 1 else KINDS[k][1]}" for k in KINDS if (n := counts.get(k, 0))]
    parts += [f"{n} {k}" for k, n in sorted(counts.items()) if k not in KINDS and n]
    return ", ".join(parts) or "nothing"


def new_erasure_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(4)


def audit_line(erasure_id: str, destination: str, request: Request, counts: dict[str, int]) -> str:
    """One JSON line: when, where, what kind of request, and how much of each kind was erased."""
    return json.dumps({"erasure_id": erasure_id, "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "destination": destination, "request": request.subject(),
                       "erased": {k: counts[k] for k in sorted(counts) if counts[k]},
                       "tool": f"exporter {__version__}"}, ensure_ascii=False, sort_keys=True)


def append_lines(path: str | os.PathLike, lines: Sequence[str]) -> None:
    """Append audit lines to a JSON-lines file, durably."""
    if not lines:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise SinkError(os_error_text(e, f"write the audit file {path}")) from None


def eraser_of(sink) -> Eraser:
    """The sink's eraser, or a ConfigError naming the destination."""
    make = getattr(sink, "eraser", None)
    if make is None:
        raise ConfigError(f"{sink.name}: this kind of destination cannot erase data (yet): forget works on SQL "
                          "databases, files folders, account archives (archive://), remotes (SFTP, FTP, S3, Azure, "
                          "Dropbox, SharePoint) and an account's backups (--account)")
    return make()


@dataclass
class Outcome:
    name: str
    counts: dict[str, int]
    lines: list[str]


def forget_destinations(to: Sequence[tuple[str, Mapping[str, Any]]], request: Request, *,
                        options: Mapping[str, Any] | None = None, apply: bool = False,
                        audit_file: str | None = None, erasers: Sequence[Eraser] = (),
                        on_planned: Callable[[Outcome], None] | None = None,
                        on_stage: Callable[[str], None] | None = None) -> list[Outcome]:
    """``forget`` on destinations given as for an export: ``[(URL, its own options)]`` and
    ``options`` for every destination that reads them (checked and typed before anything), and on
    ``erasers`` of other kinds (an account's backups: ``exporter.backup_forget``)."""
    from exporter import registry
    from exporter.validate import plan_destinations

    formats = ("json",)  # (none is written: the files a folder holds are made again as they were made)
    planned = plan_destinations(to, options or {}, formats, formats_given=False)
    sinks = [registry.create_sink(url, opts, formats) for url, opts in planned]
    return forget(sinks, request, apply=apply, audit_file=audit_file, erasers=erasers, on_planned=on_planned,
                  on_stage=on_stage)


def forget(sinks: Sequence, request: Request, *, apply: bool = False, audit_file: str | None = None,
           erasers: Sequence[Eraser] = (), on_planned: Callable[[Outcome], None] | None = None,
           on_stage: Callable[[str], None] | None = None) -> list[Outcome]:
    """Plan every destination (``sinks``' erasers, then ``erasers``), then (``apply``) erase them
    in turn; see the module docstring. ``on_planned`` is told each plan as soon as it is known;
    ``on_stage`` each step as it starts (``counting NAME``, ``erasing NAME``: each can be long)."""
    stage = on_stage or (lambda text: None)
    erasers = [*(eraser_of(s) for s in sinks), *erasers]
    plans = []
    for e in erasers:
        stage(f"counting {e.name}")
        plans.append(Outcome(e.name, e.plan(request), []))
        if on_planned is not None:
            on_planned(plans[-1])
    if not apply:
        return plans
    erasure_id = new_erasure_id()
    done = []
    for e, planned in zip(erasers, plans, strict=True):
        seen: dict[str, int] = {}

        def line(counts: dict[str, int], e=e, seen=seen) -> str:
            seen.clear()
            seen.update(counts)
            return audit_line(erasure_id, e.name, request, counts)

        stage(f"erasing {e.name}")
        lines = e.erase(request, line)
        if audit_file:
            append_lines(audit_file, lines)
        done.append(Outcome(planned.name, dict(seen), lines))
    return done
