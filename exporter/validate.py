"""A run's destinations and formats, checked before anything is created.

Every option a destination reads is declared with it, every format option with its format (see
``exporter.options`` and ``exporter.registry``); ``plan_destinations`` reads those declarations,
so a misspelt key, an option no destination of the run reads, a bad value or a format with nowhere
to go is one usage error naming the valid choices, not a setting silently ignored, and each
destination gets its options typed, defaults filled in.

Options may also ride in a destination URL's query (``file:///out?csv_bom=true``): exporter keys
are taken out of the URL here (``split_url_options``); a SQL URL keeps the others for its driver
(``?driver=...``). A secret never goes in a URL.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .errors import ConfigError
from .options import nearest, parse, refuse_plain_secret
from .registry import (
    FORMATS,
    FORMATS_KEY,
    SINKS,
    Destination,
    destination_options,
    entry_for,
    format_options,
    own_formats,
)
from .secrets import mask

#: options the command line sets with switches of their own: messages name the switch
LABELS = {"media_in_db": "--media-in-db", "password_env": "--to-password-env", "password_file": "--to-password-file"}


def all_option_keys() -> set[str]:
    """Every option key a destination or a format declares."""
    keys = {o.name for e in SINKS.all().values() for o in e.options}
    return keys | {o.name for o in format_options()} | {FORMATS_KEY}


def accepted_keys(entry: Destination, formats: Iterable[str]) -> set[str]:
    """The option keys a destination reads in a run writing ``formats``."""
    return {o.name for o in destination_options(entry, formats)}


def _format_of(key: str) -> list[str]:
    return [f.key for f in FORMATS.all().values() if key in f.option_names()]


def check_formats(formats: Sequence[str], entries: Sequence[Destination], given: bool) -> None:
    """``--format``: at least one known format, and (when given) a destination that writes files."""
    if not given and not any(e.formats for e in entries):
        return  # the default formats, and no destination writes them: no writer to import (a database's run)
    from exporter.formats.base import get_writer_class, known_formats

    if not formats:
        raise ConfigError(f"--format is empty: choose one or more of {', '.join(known_formats())}")
    for f in formats:
        get_writer_class(f)
    if given and entries and not any(e.formats for e in entries):
        takers = ", ".join(e.key for e in SINKS.all().values() if e.formats)
        raise ConfigError(f"--format {','.join(formats)}: no destination of this run writes files "
                          f"({', '.join(e.key for e in entries)}); formats go to {takers}")


def check_options(options: Mapping[str, object], entries: Sequence[Destination], formats: Sequence[str],
                  *, label: Mapping[str, str] | None = None, where: str = "") -> None:
    """Every key of ``options`` must be read by at least one of ``entries`` (the destinations it
    applies to) in a run writing ``formats``. ``label`` names how a key was given (``--media-in-db``)."""
    label = LABELS if label is None else label
    accepted: set[str] = set()
    for e in entries:
        accepted |= accepted_keys(e, formats)
    dests = ", ".join(e.key for e in entries)
    for key in options:
        shown = label.get(key, f"option {key}")
        if key in accepted:
            continue
        refuse_plain_secret(key, where)
        known = all_option_keys()
        if key not in known:
            raise ConfigError(f"unknown {shown}{where}{nearest(key, known)}; "
                              f"valid for {dests}: {', '.join(sorted(accepted)) or '(none)'}")
        fmts = _format_of(key)
        if fmts and any(e.formats for e in entries):
            raise ConfigError(f"{shown}{where} is for the {' and '.join(fmts)} format, which is not written "
                              f"(formats {','.join(formats)}: --format, or -o formats= after its --to)")
        users = ", ".join(e.key for e in SINKS.all().values()
                          if key in e.option_names() or ((fmts or key == FORMATS_KEY) and e.formats))
        raise ConfigError(f"{shown}{where} is not read by {dests}; it is for {users}")


def split_url_options(url: str) -> tuple[str, dict]:
    """``(url without exporter options, options as text)``: the query parameters of a destination
    URL that are exporter option keys. Any other parameter stays in a SQL URL (for its driver) and
    is an error elsewhere. A secret as a query parameter is refused."""
    if "://" not in url or "?" not in url:
        return url, {}
    entry = entry_for(url)
    base, _, query = url.partition("?")
    query, mark, fragment = query.partition("#")
    known = all_option_keys()
    options: dict = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        refuse_plain_secret(key, " in a destination URL")
        if key in known:
            options[key] = value
        elif entry.url_query:
            rest.append((key, value))
        else:
            mine = accepted_keys(entry, FORMATS.keys())
            raise ConfigError(f"unknown option {key} in the {entry.key} URL{nearest(key, known)}; "
                              f"valid: {', '.join(sorted(mine)) or '(none)'}")
    # the URL rebuilt as written (urlunsplit would drop the // of a scheme it does not know: dropbox:///x)
    return base + (f"?{urlencode(rest)}" if rest else "") + mark + fragment, options


def _identity(url: str) -> str:
    """What makes two destinations the same: a local folder's absolute path, else the URL."""
    if "://" not in url or url.startswith("file://"):
        from exporter.connectors.files import path_of

        return "file://" + os.path.abspath(os.path.expanduser(path_of(url)))
    return url.rstrip("/")


def plan_destinations(destinations: Sequence[tuple[str, Mapping[str, Any]]], options: Mapping[str, Any],
                      formats: Sequence[str], *, formats_given: bool = True,
                      label: Mapping[str, str] | None = None) -> list[tuple[str, dict]]:
    """``[(URL, its typed options)]`` for ``destinations`` (``(URL, its own options)``) in a run
    writing ``formats``, with ``options`` for every destination that reads them. Checked here,
    before anything is created: URL query options, the same destination twice, every key read
    by its destination (a key of ``options``: by at least one), the formats, every value."""
    if FORMATS_KEY in options:
        raise ConfigError("option formats is a destination's own: give -o formats=... after its --to (--format sets "
                          "the formats of every destination)")
    planned: list[tuple[str, dict[str, Any], Destination, tuple[str, ...]]] = []
    seen: dict[str, str] = {}
    for url, given in destinations:
        url, own = split_url_options(url)
        own.update(given)
        entry = entry_for(url)
        check_options({k: v for k, v in own.items() if k == "formats"}, [entry], formats, label=label,
                      where=f" for {mask(url)}")
        mine = tuple(own_formats(entry, own, formats) or formats)
        check_options(own, [entry], mine, label=label, where=f" for {mask(url)}")
        same = seen.setdefault(_identity(url), url)
        if same is not url:
            raise ConfigError(f"the same destination is given twice ({mask(same)} and {mask(url)}): "
                              "two writers would fight over it")
        planned.append((url, own, entry, mine))
    entries = [e for _u, _o, e, _f in planned]
    check_formats(formats, entries, formats_given)
    written = tuple(dict.fromkeys([f for *_x, mine in planned for f in mine] or formats))
    check_options(options, entries, written, label=label)
    out = []
    for url, own, entry, mine in planned:
        declared = destination_options(entry, mine)
        names = {o.name for o in declared}
        given = {**{k: v for k, v in options.items() if k in names}, **own}
        out.append((url, parse(declared, given, owner=f"{mask(url)}")))
    return out
