"""Settings checked before anything is created: destination options, formats and URLs.

Every option key a destination reads is declared with its registry entry
(``exporter.registry.SinkEntry.options``), every format option with its format
(``formats.base.FORMAT_OPTIONS``); these checks read those declarations, so a misspelt key, an
option no destination of the run reads, or a format with nowhere to go is one usage error naming
the valid choices, not a setting silently ignored.

Sink options may also ride in a destination URL's query (``file:///out?csv_bom=true``): exporter
keys are taken out of the URL here (``split_url_options``); a SQL URL keeps the others for its
driver (``?driver=...``). A secret never goes in a URL.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigError
from .registry import SINKS, SinkEntry, entry_for

#: a key naming a secret itself (not the variable or file that holds it)
_SECRET_KEY = re.compile(r"(password|passwd|pwd|secret|token|passphrase|apikey|api_key)$", re.I)


def names_a_secret(key: str) -> bool:
    """Whether a setting named ``key`` would hold a secret itself (``password``, ``token``,
    ``client_secret``...) rather than the variable or file that holds it (``*_env``, ``*_file``)."""
    return bool(_SECRET_KEY.search(key))


def option_value(value: str) -> object:
    """An option's text as the sinks read it: true/yes/on, false/no/off, a whole number, else text."""
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if value.isdigit():
        return int(value)
    return value


def format_options() -> dict[str, tuple[str, ...]]:
    from exporter.formats.base import FORMAT_OPTIONS

    return FORMAT_OPTIONS


def all_option_keys() -> set[str]:
    keys = {k for e in SINKS.values() for k in (e.options or ())}
    return keys | {k for opts in format_options().values() for k in opts}


def accepted_keys(entry: SinkEntry, formats: Iterable[str]) -> set[str] | None:
    """The option keys a destination reads in a run writing ``formats``; None when it does not
    declare them (a plugin), so anything goes."""
    if entry.options is None:
        return None
    keys = set(entry.options)
    if entry.formats:
        fo = format_options()
        for f in formats:
            keys.update(fo.get(f, ()))
    return keys


def _nearest(key: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _format_of(key: str) -> list[str]:
    return [f for f, opts in format_options().items() if key in opts]


def check_formats(formats: tuple[str, ...], entries: list[SinkEntry], given: bool) -> None:
    """``--format``: at least one known format, and (when given) a destination that writes files."""
    from exporter.formats.base import get_writer_class, known_formats

    if not formats:
        raise ConfigError(f"--format is empty: choose one or more of {', '.join(known_formats())}")
    for f in formats:
        get_writer_class(f)
    if given and entries and not any(e.formats for e in entries):
        takers = ", ".join(e.key for e in SINKS.values() if e.formats)
        raise ConfigError(f"--format {','.join(formats)}: no destination of this run writes files "
                          f"({', '.join(e.key for e in entries)}); formats go to {takers}")


def check_options(options: Mapping[str, object], entries: list[SinkEntry], formats: tuple[str, ...],
                  *, label: Mapping[str, str] | None = None, where: str = "") -> None:
    """Every key of ``options`` must be read by at least one of ``entries`` (the destinations it
    applies to) in a run writing ``formats``. ``label`` names how a key was given (``--media-in-db``)."""
    label = label or {}
    accepted: set[str] = set()
    for e in entries:
        keys = accepted_keys(e, formats)
        if keys is None:
            return  # a plugin destination declares nothing: it may read anything
        accepted |= keys
    dests = ", ".join(e.key for e in entries)
    for key in options:
        shown = label.get(key, f"option {key}")
        if key in accepted:
            continue
        if key not in all_option_keys():
            raise ConfigError(f"unknown {shown}{where}{_nearest(key, all_option_keys())}; "
                              f"valid for {dests}: {', '.join(sorted(accepted)) or '(none)'}")
        fmts = _format_of(key)
        if fmts and any(e.formats for e in entries):
            raise ConfigError(f"{shown}{where} is for the {' and '.join(fmts)} format, which this run does not "
                              f"write (--format {','.join(formats)})")
        users = ", ".join(e.key for e in SINKS.values() if key in (e.options or ()) or (fmts and e.formats))
        raise ConfigError(f"{shown}{where} is not read by {dests}; it is for {users}")


def split_url_options(url: str) -> tuple[str, dict]:
    """``(url without exporter options, options)``: the query parameters of a destination URL that
    are exporter option keys. Any other parameter stays in a SQL URL (for its driver) and is an
    error elsewhere. A secret as a query parameter is refused."""
    if "://" not in url or "?" not in url:
        return url, {}
    entry = entry_for(url)
    parts = urlsplit(url)
    known = all_option_keys()
    options: dict = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_KEY.search(key):
            raise ConfigError(f"do not put a secret in a destination URL ({key}=...): use --to-password-env NAME, "
                              "--to-password-file PATH or the *_env / *_file options")
        if key in known:
            options[key] = option_value(value)
        elif entry.url_query:
            rest.append((key, value))
        else:
            mine = accepted_keys(entry, format_options())
            if mine is None:
                rest.append((key, value))
                continue
            raise ConfigError(f"unknown option {key} in the {entry.key} URL{_nearest(key, known)}; "
                              f"valid: {', '.join(sorted(mine)) or '(none)'}")
    return urlunsplit(parts._replace(query=urlencode(rest))), options


def with_url_options(url: str, options: Mapping[str, object]) -> str:
    """``url`` with ``options`` added to its query (how a destination's own options reach the
    worker processes of a parallel export, which rebuild each sink from its URL)."""
    if not options:
        return url
    if "://" not in url:  # a plain path (the files sink reads file:// paths as they are written)
        import os

        url = "file://" + os.path.abspath(url)
    parts = urlsplit(url)
    text = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in options.items()}
    query = parse_qsl(parts.query, keep_blank_values=True) + list(text.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
