"""Which command-line settings belong to which destination: ``--to-password-env``,
``--to-password-file`` and ``-o`` given after a ``--to`` (or ``--to-url-env``) are that
destination's own; given before any, they are every destination's. Click groups each option's
values and loses their order, so the command line's own arguments are read here, in order
(``scan``). ``from_command_line`` gives what ``exporter.api.export`` takes: the options for every
destination and ``(URL, its own options)`` per destination, as text; the API checks and types
them (``exporter.validate.plan_destinations``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import ConfigError
from .secrets import mask

#: options that belong to the destination given just before them
SCOPED = {"--to-password-env": "password_env", "--to-password-file": "password_file", "--option": "-o", "-o": "-o"}
DESTINATION = ("--to", "--to-url-env")


def parse_items(raw: Sequence[str]) -> dict:
    """``KEY=VALUE`` items as options (values as text: each option's declaration types them)."""
    out: dict = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
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


def settings_options(settings: Mapping) -> dict:
    options = parse_items(settings.get("-o", ()))
    for key in ("password_env", "password_file"):
        if settings.get(key):
            options[key] = settings[key]
    return options


def from_command_line(args: Sequence[str], takes_value: Mapping[str, bool],
                      destinations: Sequence[str]) -> tuple[dict, list[tuple[str, dict]]]:
    """(options for every destination, [(URL, its own options)] in command-line order).
    ``destinations``: the --to values as click read them (a cross-check of the scan). A
    ``--to-url-env`` destination's URL is read from its variable (a secret: masked from then on)."""
    head, dests = scan(args, takes_value)
    if [v for n, v, _ in dests if n == "--to"] != list(destinations):
        raise ConfigError("could not tell which --to each --to-password-env/-o follows; "
                          "write them as --to URL --to-password-env NAME -o KEY=VALUE")
    planned = []
    for name, value, settings in dests:
        if name == "--to":
            refuse_password_in_url(value)
            url = value
        else:
            from .secrets import read_secret

            url = read_secret(env=value, what="destination URL")
        planned.append((url, settings_options(settings)))
    return settings_options(head), planned


def refuse_password_in_url(url: str) -> None:
    """A password typed in a --to URL ends up in shell history and `ps`: refuse it."""
    from urllib.parse import urlsplit

    if "://" not in url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        raise ConfigError(f"do not put a password in --to ({mask(url)}): use --to-password-env NAME, "
                          "--to-password-file PATH or --to-url-env NAME")
