"""The Python API: what the command line does, callable from a program (an Airflow or Dagster
task, a notebook, a test) without a subprocess.

    from exporter import export, archive, verify

    summary = export("https://forms.kizeo.com/rest/v3", ["sqlite:///kizeo.db", "./out"],
                     source_options={"token_env": "KIZEO_TOKEN"}, formats=["json", "csv"])
    print(summary.counts["submission"], summary.status)

Sources and destinations are given as on the command line: a URL or path each, with options
(``source_options``; ``options`` for every destination, ``(URL, options)`` for one destination
only, or ``?key=value`` in its URL). Options are checked and typed against what each plugin
declares (``exporter destinations --options``), and a bad one is a ``ConfigError`` raised before
anything is created. Secrets are given by reference only (``password_env``, ``token_file``...).
Errors are the exceptions of ``exporter.errors``; a run that fails has rolled back what it had
not committed, as on the command line.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import registry
from .errors import ConfigError
from .pipeline import Progress, RunSummary
from .validate import plan_destinations

if TYPE_CHECKING:
    from .sources import Source

log = logging.getLogger("exporter")

DEFAULT_FORMATS = ("json", "csv")
#: --incremental -> the run mode
MODES = {"none": "full", "full": "full", "cursor": "cursor", "unread": "unread"}

Destinations = str | Sequence[str | tuple[str, Mapping[str, Any]]]


def export(source: str | os.PathLike, to: Destinations, *, formats: str | Sequence[str] | None = None,
           options: Mapping[str, Any] | None = None, source_options: Mapping[str, Any] | None = None,
           forms: Sequence[str] = (), incremental: str = "none", action: str | None = None, overlap: int | None = None,
           check_deletions: bool = False, deletions: str | None = None, max_deletions: str | None = None,
           batch_size: int | None = None, jobs: int = 1, progress: Progress | None = None,
           pseudonymise: Any = None) -> RunSummary:
    """Export the account at ``source`` (the web service's base URL, or an archive) to every
    destination of ``to`` in one pass; returns the run's summary (counts per record kind and per
    destination, status, seconds).

    ``to``: a destination URL or path, or a list of them, each possibly ``(URL, its own options)``.
    ``formats``: file formats for file and remote destinations (default json, csv). ``options``:
    destination and format options for every destination that reads them. ``source_options``:
    the source's (``token_env``, ``workers``...). ``forms``: only these forms (ids or exact names).
    ``incremental``: none, cursor or unread (with ``action``, the read-marker name); ``overlap``:
    seconds re-read before a stored cursor (cursor only; default 300). ``deletions`` (soft, hard;
    default soft), ``max_deletions`` (N or P%; default 10%) and ``check_deletions``: submissions
    erased on the service; an incremental run looks for them only with ``check_deletions``, so
    ``deletions``/``max_deletions`` without it are refused, as is a setting the run would ignore. ``batch_size``: submissions per
    batch (one transaction each in SQL). ``jobs``: worker processes (destinations taking parallel
    writers only). ``progress``: an object told of each batch (``exporter.progress``).
    ``pseudonymise``: an ``exporter.privacy.spec.PseudonymiseSpec`` (``parse_spec``), the stage
    every destination's records go through (see ``exporter.privacy.pseudonymise``)."""
    from .deletions import parse_policy
    from .pipeline import new_run_id, run
    from .sinks import RunContext

    mode = _mode(incremental)
    dests = _destinations(to)
    if not dests:
        raise ConfigError("no destination: give --to DEST (repeatable) or --to-url-env NAME")
    source, source_options = str(source), dict(source_options or {})
    if mode == "unread" and not action:
        raise ConfigError("--incremental unread needs --action NAME (the read-marker name)")
    if action and mode != "unread":
        raise ConfigError(f"--action {action} is for --incremental unread (this run is --incremental {incremental})")
    if mode != "unread" and "page_size" in source_options:
        raise ConfigError(f"--page-size is for --incremental unread (this run is --incremental {incremental})")
    if check_deletions and mode == "full":
        raise ConfigError("--check-deletions is for --incremental cursor or unread (a full export always "
                          "sees deletions)")
    if overlap is not None and mode != "cursor":
        raise ConfigError(f"--overlap is for --incremental cursor (this run is --incremental {incremental})")
    given = [name for name, value in (("--deletions", deletions), ("--max-deletions", max_deletions)) if value is not None]
    if given and mode != "full" and not check_deletions:
        raise ConfigError(f"{' and '.join(given)} take effect only with --check-deletions in an --incremental "
                          f"{incremental} run (which otherwise does not look for deletions)")
    parse_policy(deletions, max_deletions)  # a bad --max-deletions is refused before anything is created
    fmt = _formats(formats)
    planned = plan_destinations(dests, options or {}, fmt, formats_given=formats is not None)
    if mode == "full":
        _refuse_deltas(planned)
    typed = source_settings(source, source_options)
    sinks = [registry.create_sink(url, opts, fmt) for url, opts in planned]
    run_args = {"mode": mode, "action": action, "overlap_seconds": 300 if overlap is None else overlap,
                "check_deletions": check_deletions,
                "forms": list(_resolve_forms(forms, source, typed))}
    src = _open(source, typed, run_args)
    ctx = RunContext(run_id=new_run_id(), source=src.description, mode=mode, formats=fmt, deletions=deletions or "soft",
                     max_deletions=max_deletions, privacy=pseudonymise)
    if pseudonymise is not None:  # (the privacy stage is imported only by a run that asks for it)
        from .privacy.pseudonymise import check_run

        check_run(pseudonymise, src, sinks)  # before anything is created (closes the source when refused)
    if jobs > 1:
        from .parallel import run_parallel

        level = logging.getLogger().level
        return run_parallel(src, sinks, ctx, jobs=jobs, rebuild=(source, typed, run_args, planned),
                            batch_size=batch_size, progress=progress, log_level=level, debug=level <= logging.DEBUG)
    return run(src, sinks, ctx, batch_size=batch_size, progress=progress)


def archive(source: str | os.PathLike, out: str | os.PathLike, *, source_options: Mapping[str, Any] | None = None,
            forms: Sequence[str] = (), zip: bool | None = None, overwrite: bool = False,
            progress: Progress | None = None) -> RunSummary:
    """Write a complete account archive of ``source`` at ``out`` (a folder, or one zip file with
    ``zip=True`` or a ``.zip`` name): manifest, JSON, media; ``verify`` checks it and ``export``
    replays it. An existing archive at ``out`` is refused unless ``overwrite``."""
    from .pipeline import new_run_id, run
    from .sinks import RunContext

    source, out = str(source), str(out)
    _refuse_existing(out, overwrite)
    typed = source_settings(source, dict(source_options or {}))
    sink = registry.create_sink(f"archive://{out}", {} if zip is None else {"zip": zip})
    src = _open(source, typed, {"forms": list(_resolve_forms(forms, source, typed))})
    return run(src, [sink], RunContext(run_id=new_run_id(), source=src.description), progress=progress)


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: every difference (none when the archive is intact), how many files
    were checked and the counts the manifest gives."""

    path: str
    problems: list[str] = field(default_factory=list)
    files: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: str | os.PathLike) -> Verification:
    """Re-hash every file of the account archive at ``path`` and check the counts."""
    from exporter.connectors.archive.reader import ArchiveReader
    from exporter.connectors.archive.verify import verify as verify_archive

    problems = verify_archive(path)
    reader = ArchiveReader(path)
    try:
        files = sum(1 for _ in reader.iter_files())
        counts = dict(reader.manifest.get("counts") or {})
    finally:
        reader.close()
    return Verification(str(path), problems, files, counts)


def list_forms(source: str | os.PathLike, *, source_options: Mapping[str, Any] | None = None) -> list[dict]:
    """The forms of ``source``: id, name, class, submissions (None when the source cannot tell
    it cheaply), update_time."""
    from . import forms as formsel

    source = str(source)
    src = _open(source, source_settings(source, dict(source_options or {})), {})
    try:
        return formsel.list_forms(src)
    finally:
        src.close()


# ---- helpers -------------------------------------------------------------------------------------

def _refuse_deltas(planned: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """``deltas=true`` in a full run: the run would ignore it (it writes no ``runs/``), so it is
    refused before anything is created, as every setting a run would ignore."""
    from .secrets import mask

    for url, opts in planned:
        if opts.get("deltas"):
            raise ConfigError(f"option deltas for {mask(url)} is for incremental runs (--incremental cursor or "
                              "unread): a full export writes no runs/ deltas")


def source_settings(source: str, given: Mapping[str, Any]) -> dict:
    """The source's options typed. One it does not read is refused, naming the source that does,
    except credentials (a token for the web service given with an archive): ignored, logged."""
    entry = registry.source_for(source)
    own = {}
    for key, value in given.items():
        if key in entry.option_names():
            own[key] = value
            continue
        other = next((s for s in registry.SOURCES.all().values() if key in s.option_names()), None)
        if other is not None and next(o for o in other.options if o.name == key).secret:
            log.info("%s needs no %s; ignoring it", entry.description, key)
            continue
        if other is not None:
            shown = ",".join(value) if isinstance(value, (list, tuple, set, frozenset)) else value
            raise ConfigError(f"--{key.replace('_', '-')} {shown} is for {other.description}, not {entry.description}")
        own[key] = value  # unknown everywhere: refused by the parse, naming the nearest
    return entry.parse_options(own)


def open_source(source: str | os.PathLike, source_options: Mapping[str, Any] | None = None, **run: Any) -> Source:
    """The source reading ``source``, its options checked and typed (``source_settings``); ``run``:
    forms, mode, action, overlap_seconds, check_deletions. For a caller that runs it itself (the
    backups); close it when done."""
    return _open(str(source), source_settings(str(source), dict(source_options or {})), run)


def _open(source: str, typed: Mapping[str, Any], run_args: Mapping[str, Any]) -> Source:
    try:
        return registry.open_source(source, typed, **run_args)
    except OSError as e:  # an archive that cannot be read (permissions, a vanished disk)
        from .errors import SourceError, os_error_text

        raise SourceError(os_error_text(e, f"read the source {source}")) from None


def _resolve_forms(requested: Sequence[str], source: str, typed: Mapping[str, Any]) -> tuple[str, ...]:
    """Form ids or exact names as ids, checked against the source's forms before anything is
    created; nothing to ask when none is requested."""
    if not requested:
        return ()
    from . import forms as formsel

    lister = _open(source, typed, {})
    try:
        return tuple(formsel.resolve(requested, formsel.list_forms(lister), lister.description))
    finally:
        lister.close()


def _mode(incremental: str) -> str:
    mode = MODES.get(incremental)
    if mode is None:
        raise ConfigError(f"--incremental {incremental}: use none, cursor or unread")
    return mode


def _formats(formats: str | Sequence[str] | None) -> tuple[str, ...]:
    if formats is None:
        return DEFAULT_FORMATS
    items = formats.split(",") if isinstance(formats, str) else formats
    return tuple(f.strip().lower() for f in items if f.strip())


def _destinations(to: Destinations) -> list[tuple[str, dict]]:
    items = [to] if isinstance(to, (str, os.PathLike)) else list(to)
    out = []
    for item in items:
        if isinstance(item, tuple):
            url, opts = item
            out.append((str(url), dict(opts or {})))
        else:
            out.append((str(item), {}))
    return out


def _refuse_existing(out: str, overwrite: bool) -> None:
    p = Path(out)
    if overwrite or not p.exists() or (p.is_dir() and not any(p.iterdir())):
        return
    raise ConfigError(f"{out} already exists: add --overwrite to replace it, or choose another --out")
