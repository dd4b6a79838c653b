"""Which settings belong to which destination: ``--to-password-env``, ``--to-password-file`` and
``-o`` given after a ``--to`` (or ``--to-url-env``) are that destination's own; given before any,
they are every destination's. Click groups each option's values and loses their order, so the
command line's own arguments are read here, in order (``scan``), then each destination's URL,
query options and settings are checked against what the destinations and formats declare
(``plan``), before anything is created."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import ConfigError
from .secrets import mask
from .validate import check_formats, check_options, option_value, split_url_options

#: options that belong to the destination given just before them
SCOPED = {"--to-password-env": "password_env", "--to-password-file": "password_file", "--option": "-o", "-o": "-o"}
DESTINATION = ("--to", "--to-url-env")
#: how the options set by their own switches are named in messages
LABELS = {"media_in_db": "--media-in-db", "password_env": "--to-password-env", "password_file": "--to-password-file"}


def parse_items(raw: Sequence[str]) -> dict:
    """``KEY=VALUE`` items as options (values as ``option_value`` reads them)."""
    out: dict = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        out[key.strip()] = option_value(value)
    return out


def scan(args: Sequence[str], takes_value: Mapping[str, bool]) -> tuple[dict, list[tuple[str, str, dict]]]:
    """(settings before any destination, [(option, value, settings)] per --to / --to-url-env in
    command-line order). ``takes_value``: each option name of the command -> whether it takes a
    value (so a value is never read as an option). Settings: ``{"password_env", "password_file",
    "-o": [...]}``."""
    head: dict = {}
    dests: list[tuple[str, str, dict]] = []
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if tok == "--":
            break
        if tok.startswith("--"):
            name, eq, value = tok.partition("=")
            if not takes_value.get(name):
                continue
            if not eq:
                if i >= len(args):
                    break
                value, i = args[i], i + 1
        elif tok.startswith("-") and len(tok) > 1:
            # short switches may be grouped (-qo KEY=VALUE): the first that takes a value takes
            # the rest of the token, or the next argument
            j = next((j for j in range(1, len(tok)) if takes_value.get("-" + tok[j])), None)
            if j is None:
                continue
            name, value = "-" + tok[j], tok[j + 1:]
            if not value:
                if i >= len(args):
                    break
                value, i = args[i], i + 1
        else:
            continue
        if name in DESTINATION:
            dests.append((name, value, {}))
        elif name in SCOPED:
            scope = dests[-1][2] if dests else head
            key = SCOPED[name]
            if key == "-o":
                scope.setdefault("-o", []).append(value)
            elif key in scope:
                where = f"--to {mask(dests[-1][1])}" if dests else "every destination"
                raise ConfigError(f"{name} given twice for {where}")
            else:
                scope[key] = value
    return head, dests


def _identity(url: str) -> str:
    """What makes two destinations the same: a local folder's absolute path, else the URL."""
    import os

    if "://" not in url or url.startswith("file://"):
        from exporter.connectors.files import path_of

        return "file://" + os.path.abspath(os.path.expanduser(path_of(url)))
    return url.rstrip("/")


def settings_options(settings: Mapping) -> dict:
    options = parse_items(settings.get("-o", ()))
    for key in ("password_env", "password_file"):
        if settings.get(key):
            options[key] = settings[key]
    return options


def plan(args: Sequence[str], takes_value: Mapping[str, bool], destinations: Sequence[str], formats: tuple[str, ...],
         formats_given: bool, media_in_db: bool) -> tuple[dict, list[tuple[str, dict]]]:
    """(options for every destination, [(URL, its own options)] in command-line order).
    ``destinations``: the --to values as click read them (a cross-check of the scan)."""
    from .registry import entry_for

    head, dests = scan(args, takes_value)
    if [v for n, v, _ in dests if n == "--to"] != list(destinations):
        raise ConfigError("could not tell which --to each --to-password-env/-o follows; "
                          "write them as --to URL --to-password-env NAME -o KEY=VALUE")
    options = settings_options(head)
    if media_in_db:
        options["media_in_db"] = True
    planned, entries = [], []
    seen: dict[str, str] = {}
    for name, value, settings in dests:
        if name == "--to":
            url = value
        else:
            from .secrets import read_secret

            url = read_secret(env=value, what="destination URL")
        url, own = split_url_options(url)
        own.update(settings_options(settings))
        entry = entry_for(url)
        check_options(own, [entry], formats, label=LABELS, where=f" for {mask(url)}")
        same = seen.setdefault(_identity(url), url)
        if same is not url:
            raise ConfigError(f"the same destination is given twice ({mask(same)} and {mask(url)}): "
                              "two writers would fight over it")
        planned.append((url, own))
        entries.append(entry)
    check_formats(formats, entries, formats_given)
    check_options(options, entries, formats, label=LABELS)
    from exporter.formats.base import check_format_options

    for (_url, own), entry in zip(planned, entries, strict=True):
        if entry.formats:
            check_format_options(formats, {**options, **own})
    return options, planned
