"""Options as data: every source, destination, remote and format declares the options it reads
(``Option``: name, type, default, help, secret or not, choices or range), and this module turns
what a user gave (``-o KEY=VALUE``, ``?key=value`` in a URL, a Python mapping) into typed values,
defaults filled in. A bad key or value is a ``ConfigError`` (a usage error, exit 2) naming the
option and what it takes, raised before anything is created.

Secrets are accepted only by reference: a secret option names the environment variable
(``*_env``) or the file (``*_file``) that holds the secret, never the secret itself; ``secret()``
declares that pair, and a key naming a secret itself (``password=...``) is refused. The values
read through them (``read_secret``) are registered with ``exporter.secrets``, so they are masked
in every message and log line.

Parsing is idempotent: a value already typed (``True``, ``8``) is checked and kept, so a writer
or sink built directly from Python and one built from a command line read the same values.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import secrets
from .errors import ConfigError

#: a key naming a secret itself (not the variable or file that holds it)
SECRET_KEY = re.compile(r"(password|passwd|pwd|secret|token|passphrase|apikey|api_key|access_key|access_key_id|"
                        r"account_key|connection_string)$", re.I)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRUE = ("true", "yes", "on", "1", "y")
_FALSE = ("false", "no", "off", "0", "n")


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("true or false")


def parse_size(value: Any) -> int:
    """Bytes as a number, or with a unit: ``8388608``, ``8MiB``, ``320KiB``, ``1G``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower().replace("ib", "").replace("b", "")
    mult = 1
    for suffix, m in (("k", 1024), ("m", 1024 ** 2), ("g", 1024 ** 3)):
        if text.endswith(suffix):
            text, mult = text[:-1], m
            break
    try:
        return int(float(text) * mult)
    except ValueError:
        raise ValueError("a size in bytes (8388608 or 8MiB)") from None


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a whole number")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError("a whole number") from None


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a number")
    try:
        return float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        raise ValueError("a number") from None


def _parse_env(value: Any) -> str:
    text = str(value).strip()
    if not _ENV_NAME.fullmatch(text):
        raise ValueError("the name of an environment variable")
    return text


def _parse_text(value: Any) -> str:
    return str(value)


def _parse_list(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    return tuple(sorted({v.strip().lower() for item in items for v in str(item).split(",") if v.strip()}))


#: type name -> parser (raises ValueError naming what it takes)
PARSERS: dict[str, Callable[[Any], Any]] = {
    "bool": parse_bool, "int": _parse_int, "float": _parse_float, "size": parse_size, "text": _parse_text,
    "path": _parse_text, "env": _parse_env, "list": _parse_list}


@dataclass(frozen=True)
class Option:
    """One option a plugin reads. ``type``: bool, int, float, size (bytes, units allowed), text,
    path, env (an environment variable's name) or list (comma-separated). ``choices``: the values
    a text or list takes, or the words an int takes besides numbers (``auto``). ``min``/``max``:
    the range of an int, float or size. ``secret``: the option names where a secret is read (an
    environment variable or a file), see ``secret()``."""

    name: str
    type: str = "text"
    default: Any = None
    help: str = ""
    secret: bool = False
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.type not in PARSERS:
            raise ValueError(f"option {self.name}: unknown type {self.type!r}")
        if self.secret and not self.name.endswith(("_env", "_file")):
            raise ValueError(f"option {self.name}: a secret option names an env variable or a file (*_env, *_file)")

    def parse(self, value: Any) -> Any:
        """``value`` (text as typed by a user, or a Python value) as this option's type; None is
        the default."""
        if value is None:
            return self.default
        if self.type == "int" and isinstance(value, str) and value.strip().lower() in self.choices:
            return value.strip().lower()
        try:
            typed = PARSERS[self.type](value)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"option {self.name}: expected {e or self.type}, got {_shown(value)}") from None
        if self.choices and self.type in ("text", "list"):
            items = typed if self.type == "list" else (typed,)
            fold = {c.lower(): c for c in self.choices}
            bad = [i for i in items if str(i).lower() not in fold]
            if bad:
                wanted = _one_of(self.choices) if self.type == "text" else "some of " + ",".join(self.choices)
                raise ConfigError(f"option {self.name}: expected {wanted}, got {_shown(value)}")
            if self.type == "text":
                typed = fold[typed.lower()]
        if self.min is not None and typed < self.min or self.max is not None and typed > self.max:
            raise ConfigError(f"option {self.name}: expected {self.describe_range()}, got {_shown(value)}")
        return typed

    def describe_range(self) -> str:
        lo = None if self.min is None else _number(self.min, self.type)
        hi = None if self.max is None else _number(self.max, self.type)
        if lo is not None and hi is not None:
            return f"{lo} <= {self.name} <= {hi}"
        return f"{self.name} >= {lo}" if lo is not None else f"{self.name} <= {hi}"

    def describe_type(self) -> str:
        """The type as the documentation shows it: ``int >= 0``, ``text: , or ;``, ``int 1..32 or auto``."""
        text = self.type
        if self.min is not None and self.max is not None:
            text += f" {_number(self.min, self.type)}..{_number(self.max, self.type)}"
        elif self.min is not None:
            text += f" >= {_number(self.min, self.type)}"
        elif self.max is not None:
            text += f" <= {_number(self.max, self.type)}"
        if self.choices:
            text += {"int": f" or {_one_of(self.choices)}", "list": f" of {', '.join(self.choices)}"}.get(
                self.type, f": {_one_of(self.choices)}")
        return text

    def describe_default(self) -> str:
        if self.default is None or self.default == () or self.default == "":
            return ""
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return _number(self.default, self.type) if self.type == "size" else str(self.default)


def _number(n: float, type_: str) -> str:
    if type_ == "size" and n >= 1024 and n % 1024 == 0:
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if n % size == 0:
                return f"{int(n // size)} {unit}"
    return f"{n:g}"


def secret(base: str, what: str, *, default_env: str | None = None) -> tuple[Option, Option]:
    """The pair of options through which the secret ``base`` is given: ``<base>_env`` (the name
    of an environment variable holding it) and ``<base>_file`` (a file holding it). With neither,
    the code reading it may look at ``default_env`` (``read_secret``)."""
    default = f" (default: ${default_env} when set)" if default_env else ""
    return (Option(f"{base}_env", "env", None, f"environment variable holding the {what}{default}", secret=True),
            Option(f"{base}_file", "path", None, f"file holding the {what}", secret=True))


def _one_of(choices: tuple[str, ...]) -> str:
    quoted = [repr(c) if not c.isalnum() else c for c in choices]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _shown(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else repr(value.strip())


def nearest(key: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for a misspelt key, or nothing."""
    close = difflib.get_close_matches(key, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def names_a_secret(key: str) -> bool:
    """Whether a key names a secret itself (``password``, ``token``, ``client_secret``...) rather
    than the variable or file holding it (``*_env``, ``*_file``)."""
    return bool(SECRET_KEY.search(key)) and not key.endswith(("_env", "_file"))


def refuse_plain_secret(key: str, where: str = "") -> None:
    """A key naming a secret itself is refused: secrets are given by reference only."""
    if names_a_secret(key):
        cli = " (on the command line: --to-password-env NAME, --to-password-file PATH)" if "pass" in key else ""
        raise ConfigError(f"{key}=...{where}: a secret is given by reference, never as a value; secrets come from "
                          f"an environment variable or a file: {key}_env=NAME or {key}_file=PATH{cli}")


def parse(declared: Iterable[Option], given: Mapping[str, Any], *, owner: str = "", strict: bool = True) -> dict:
    """Every declared option as a typed value (its default when not given). ``strict``: a key
    not declared is a usage error naming the nearest and the valid ones; otherwise it is left
    out (a writer given the whole option set of its destination picks its own). A key naming a
    secret itself is refused either way."""
    options = {o.name: o for o in declared}
    out = {name: o.default for name, o in options.items()}
    for key, value in given.items():
        o = options.get(key)
        if o is None:
            refuse_plain_secret(key)
            if strict:
                raise ConfigError(f"unknown option {key}{' for ' + owner if owner else ''}{nearest(key, options)}; "
                                  f"valid: {', '.join(sorted(options)) or '(none)'}")
            continue
        out[key] = o.parse(value)
    return out


def read_secret(options: Mapping[str, Any], base: str, what: str, *, default_env: str | None = None) -> str | None:
    """The secret given by ``<base>_file`` (a path) or else ``<base>_env`` (a variable name, which
    must then be set), registered for masking. With neither: the variable ``default_env`` when it
    is set, else None."""
    path, env = options.get(f"{base}_file"), options.get(f"{base}_env")
    if path:
        return secrets.read_secret(file=path, what=what)
    if env:
        return secrets.read_secret(env=env, what=what)
    if default_env:
        return secrets.read_secret(env=default_env, what=what, required=False) or None
    return None


def table_rows(declared: Iterable[Option]) -> list[tuple[str, str, str, str, str]]:
    """(name, type, default, secret, help) of each option, as ``exporter destinations --options``
    and the README show them."""
    return [(o.name, o.describe_type(), o.describe_default(), "secret" if o.secret else "", o.help) for o in declared]
