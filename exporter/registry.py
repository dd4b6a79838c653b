"""The one registry of plugins: sources, destinations (sinks), remotes and formats.

Each kind is an entry point group: ``exporter.sources``, ``exporter.sinks``, ``exporter.remotes``,
``exporter.formats``. The built-ins are declared in this project's pyproject.toml exactly as a
third-party package declares its own; an entry point names a declaration (``Source``,
``Destination``, ``Remote``, ``Format``): its key, description, URL form and schemes, the options
it reads (``exporter.options.Option``), the pip extra bringing its driver, and ``target``, the
``module:attr`` of the factory (or writer class), imported only when it is used. Declarations
live in small modules that import no driver (``connectors/catalog.py``, ``connectors/sql/catalog.py``,
``connectors/remote/catalog.py``, ``formats/catalog.py``), so listing them stays cheap, and the
groups are read on first use, not when ``exporter`` is imported.

The key is the URL scheme (``postgres`` answers ``postgresql+psycopg://``); a plain path is the
destination or source that declares ``paths``. A factory receives typed options:
``factory(url, options)`` for sinks and remotes, ``factory(url, forms=..., mode=..., action=...,
overlap_seconds=..., check_deletions=..., **options)`` for sources, ``Writer(out, options)`` for
formats. Composing them into a run is the job of ``exporter.api`` (and of the CLI over it).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from . import options as opts
from .errors import ConfigError
from .options import Option

if TYPE_CHECKING:  # the protocols a factory's product follows (their names are the declarations' here)
    from exporter.connectors.remote.base import Remote as RemoteStorage

    from .sinks import Sink
    from .sources import Source as RecordSource

log = logging.getLogger("exporter.registry")


@dataclass(frozen=True)
class Plugin:
    """What every kind of plugin declares."""

    key: str
    target: str  # "package.module:attr", imported on use
    description: str
    options: tuple[Option, ...] = ()
    url_form: str = ""
    schemes: tuple[str, ...] = ()  # URL schemes (before any "+driver") it answers, besides its key
    extra: str | None = None  # pip extra that brings its driver
    modules: tuple[str, ...] = ()  # optional modules it always needs (an SQL driver is read from the URL)
    order: int = 1000  # place in listings (then by key): the built-ins number theirs, plugins follow

    kind = "plugin"

    def load(self) -> Any:
        """The factory (or writer class), imported now; a missing driver is one ConfigError."""
        module, _, attr = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as e:
            if e.name and e.name.split(".")[0] in DRIVER_EXTRAS:
                raise missing_driver(self.key, e.name, self.extra) from None
            hint = f" (pip install 'exporter[{self.extra}]')" if self.extra else ""
            raise ConfigError(f"{self.kind} '{self.key}' needs a package that is not installed: {e.name}{hint}") from None

    def check_modules(self) -> None:
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                raise missing_driver(self.key, module, self.extra)

    def option_names(self) -> set[str]:
        return {o.name for o in self.options}

    def parse_options(self, given: Mapping[str, Any], *, strict: bool = True) -> dict:
        return opts.parse(self.options, given, owner=f"the {self.key} {self.kind}", strict=strict)

    def answers(self, scheme: str) -> bool:
        return scheme == self.key or scheme in self.schemes


@dataclass(frozen=True)
class Destination(Plugin):
    """A sink: ``factory(url, options) -> Sink``."""

    formats: bool = False  # writes the file formats (--format) and reads their options
    url_query: bool = False  # other query parameters of its URL are its driver's (SQLAlchemy URLs)
    paths: bool = False  # a plain path (no scheme) is this destination

    kind = "destination"


@dataclass(frozen=True)
class Remote(Plugin):
    """A remote storage: ``factory(url, options) -> Remote`` (``connectors.remote.base``)."""

    paths: bool = False  # a plain path (no scheme) is this remote (a local folder)

    kind = "remote"


@dataclass(frozen=True)
class Format(Plugin):
    """A file format: ``target`` is its writer class, ``Writer(out, options)``."""

    kind = "format"


@dataclass(frozen=True)
class Source(Plugin):
    """A source of records: ``factory(url, forms=, mode=, action=, overlap_seconds=,
    check_deletions=, **options)``."""

    paths: bool = False  # a plain path (folder or file) is this source

    kind = "source"


P = TypeVar("P", bound=Plugin)

#: every installed distribution's entry points, read once for all four groups (each reading walks
#: every distribution's metadata on sys.path); ``refresh`` forgets them
_ALL_POINTS: metadata.SelectableGroups | metadata.EntryPoints | None = None


def _group_points(group: str) -> metadata.EntryPoints:
    """The entry points of ``group``, in the order ``metadata.entry_points(group=...)`` gives them."""
    global _ALL_POINTS
    if _ALL_POINTS is None:
        _ALL_POINTS = metadata.entry_points()
    return _ALL_POINTS.select(group=group)


class Registry(Generic[P]):
    """The plugins of one entry point group, read on first use. A declaration is loaded (its
    module imported) when asked for by key, or when all are listed."""

    def __init__(self, kind: type[P], group: str):
        self.kind, self.group = kind, group
        self._points: dict[str, metadata.EntryPoint] | None = None
        self._loaded: dict[str, P] = {}

    def refresh(self) -> None:
        """Read the entry points again (a plugin installed while this process runs, tests)."""
        global _ALL_POINTS
        self._points, self._loaded, _ALL_POINTS = None, {}, None

    def keys(self) -> list[str]:
        """Every registered key (no declaration is loaded), by name."""
        return sorted(self._entry_points())

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        if self._points is None:
            self._points = {}
            for ep in _group_points(self.group):
                self._points.setdefault(ep.name, ep)  # the first of two of the same name wins
        return self._points

    def get(self, key: str) -> P:
        if key not in self._loaded:
            ep = self._entry_points().get(key)
            if ep is None:
                raise ConfigError(f"unknown {self.kind.kind} '{key}' (known: {', '.join(self.keys())})")
            self._loaded[key] = self._load(ep)
        return self._loaded[key]

    def find(self, key: str) -> P | None:
        return self.get(key) if key in self._entry_points() else None

    def all(self) -> dict[str, P]:
        """Every declaration, in listing order (``order``, then key); one that fails to load is
        left out (logged)."""
        out = []
        for key in self.keys():
            try:
                out.append(self.get(key))
            except ConfigError as e:
                log.warning("%s plugin %s left out: %s", self.kind.kind, key, e)
        return {p.key: p for p in sorted(out, key=lambda p: (p.order, p.key))}

    def ordered_keys(self) -> list[str]:
        return list(self.all())

    def for_url(self, url: str) -> P | None:
        """The plugin answering ``url``: by its scheme, or for a plain path the one declaring ``paths``."""
        scheme = scheme_of(str(url))
        if scheme is None:
            return next((p for p in self.all().values() if getattr(p, "paths", False)), None)
        return self.for_scheme(scheme)

    def known(self) -> str:
        """The URL schemes answered, for messages."""
        return ", ".join(s + "://" for s in sorted({s for p in self.all().values() for s in (p.schemes or (p.key,))}))

    def for_scheme(self, scheme: str) -> P | None:
        named = self.find(scheme)
        if named is not None and named.answers(scheme):
            return named
        return next((p for p in self.all().values() if p.answers(scheme)), None)

    def _load(self, ep: metadata.EntryPoint) -> P:
        try:
            obj = ep.load()
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"{self.kind.kind} plugin {ep.name} ({ep.value}) cannot be imported: {e}") from None
        if isinstance(obj, self.kind):
            if obj.key != ep.name:
                raise ConfigError(f"{self.kind.kind} plugin {ep.name} ({ep.value}) declares the key {obj.key!r}")
            return obj
        if self.kind is Destination and callable(obj):
            # an entry point naming a bare factory (the form before declarations): no options
            return self.kind(ep.name, ep.value, f"plugin {ep.value}", url_form=f"{ep.name}://...")  # type: ignore[return-value]
        raise ConfigError(f"{self.kind.kind} plugin {ep.name} ({ep.value}) is not an exporter.registry.{self.kind.__name__}")


SOURCES: Registry[Source] = Registry(Source, "exporter.sources")
SINKS: Registry[Destination] = Registry(Destination, "exporter.sinks")
REMOTES: Registry[Remote] = Registry(Remote, "exporter.remotes")
FORMATS: Registry[Format] = Registry(Format, "exporter.formats")


def refresh() -> None:
    """Read every group's entry points again."""
    for r in (SOURCES, SINKS, REMOTES, FORMATS):
        r.refresh()


# ---- drivers -----------------------------------------------------------------------------------

#: top-level module of every optional driver or SDK -> the pip extras that bring it (pyproject.toml)
DRIVER_EXTRAS: dict[str, tuple[str, ...]] = {
    "psycopg": ("postgres",),
    "pymysql": ("mysql",),
    "pyodbc": ("odbc", "mssql", "access"),
    "sqlalchemy_access": ("access",),
    "paramiko": ("sftp",),
    "dropbox": ("dropbox",),
    "office365": ("sharepoint",),
    "boto3": ("s3",),
    "botocore": ("s3",),
    "azure": ("azure",),
}


def missing_driver(key: str, module: str, extra: str | None = None) -> ConfigError:
    """The one message for a driver or SDK that is not installed: which destination needs which
    module, and the pip extra that brings it (the destination's own extra when it brings it)."""
    top = module.split(".")[0]
    extras = DRIVER_EXTRAS.get(top, ())
    pick = extra if extra in extras else (extras[0] if extras else None)
    hint = f": pip install 'exporter[{pick}]'" if pick else " (not installed)"
    return ConfigError(f"the {key} destination needs {top}{hint}")


# ---- URLs --------------------------------------------------------------------------------------

def scheme_of(url: str) -> str | None:
    head, sep, _ = url.partition("://")
    if not sep or "/" in head or "\\" in head or len(head) < 2:
        return None  # a plain path (C:\\ is a path, not a scheme)
    return head.split("+", 1)[0].lower()


_SCHEME_LIKE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


def entry_for(url: str) -> Destination:
    """The destination declaration answering ``url``."""
    m = _SCHEME_LIKE.match(url)
    if scheme_of(url) is None and m and not os.path.lexists(url):
        # "sqlite:/tmp/x.db" is a typo for a URL, not a folder to create named "sqlite:"
        near = SINKS.for_scheme(m.group(1).split("+", 1)[0].lower())
        hint = f"did you mean {near.url_form}? " if near else ""
        raise ConfigError(f"{url!r} is not a destination URL (a URL needs '://') nor an existing path: {hint}"
                          f"known schemes: {SINKS.known()}" + ("" if "/" in url else f"; a new folder with a colon in "
                                                                                     f"its name: ./{url}"))
    entry = SINKS.for_url(url)
    if entry is None:
        raise ConfigError(f"unknown destination scheme '{scheme_of(url)}://' (known: {SINKS.known()}, or a directory "
                          "path)")
    return entry


def source_for(url: str) -> Source:
    """The source declaration answering ``url``."""
    entry = SOURCES.for_url(url)
    if entry is None:
        raise ConfigError(f"no source reads {url!r} (known: {SOURCES.known()}, or an archive's path)")
    return entry


def remote_for(url: str) -> Remote:
    """The remote declaration answering ``url`` (a plain path: a local folder)."""
    scheme_like = scheme_of(url) is None and ":" in url.partition("/")[0]  # "sftp:host/x" is no folder
    entry = None if scheme_like or not url else REMOTES.for_url(url)
    if entry is None:
        raise ConfigError(f"not a remote URL: {url!r} (known: {REMOTES.known()})")
    return entry


# ---- factories ---------------------------------------------------------------------------------

def format_options(formats: Iterable[str] | None = None) -> tuple[Option, ...]:
    """The options of ``formats`` (every format's when None), each once."""
    keys = FORMATS.ordered_keys() if formats is None else [f for f in formats if f in FORMATS.keys()]
    seen: dict[str, Option] = {}
    for key in keys:
        for o in FORMATS.get(key).options:
            seen.setdefault(o.name, o)
    return tuple(seen.values())


#: the key of ``formats_option`` (its choices are every format's: listing them loads each declaration)
FORMATS_KEY = "formats"


def formats_option() -> Option:
    """``formats``, read by every destination that writes files: its own formats instead of the
    run's ``--format`` (a jobs file's destination ``formats``; ``-o formats=csv,xlsx`` after its --to)."""
    return Option(FORMATS_KEY, "list", help="the file formats this destination writes, instead of the run's --format",
                  choices=tuple(FORMATS.ordered_keys()))


def own_formats(entry: Destination, given: Mapping[str, Any], formats: Iterable[str] | None) -> Iterable[str] | None:
    """The formats a destination given ``given`` options writes: its ``formats`` option, else ``formats``."""
    if entry.formats and given.get("formats") not in (None, "", ()):
        return formats_option().parse(given["formats"])
    return formats


def own_options(entry: Destination) -> tuple[Option, ...]:
    """The options a destination declares, with ``formats`` when it writes files."""
    return entry.options + ((formats_option(),) if entry.formats else ())


def destination_options(entry: Destination, formats: Iterable[str] | None = None) -> tuple[Option, ...]:
    """What a destination reads in a run writing ``formats``: its own options (``own_options``)
    and, when it writes files, those formats' options (every format's when not known)."""
    return own_options(entry) + (format_options(formats) if entry.formats else ())


def create_sink(url: str, options: Mapping[str, Any] | None = None, formats: Iterable[str] | None = None) -> Sink:
    """The sink for ``url``, its options (``options`` and its URL's query options) checked and
    typed against what it declares and, when it writes files, what ``formats`` declare (every
    format's when not known). A driver or SDK that is not installed is one ConfigError naming the
    pip extra, raised here, before anything is created (SQL factories load their URL's driver)."""
    from .validate import split_url_options

    url, url_options = split_url_options(url)
    entry = entry_for(url)
    given = {**(options or {}), **url_options}
    typed = opts.parse(destination_options(entry, own_formats(entry, given, formats)), given,
                       owner=f"the {entry.key} destination")
    entry.check_modules()
    try:
        return entry.load()(url, typed)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in DRIVER_EXTRAS:
            raise missing_driver(entry.key, e.name, entry.extra) from None
        raise


def create_remote(url: str, options: Mapping[str, Any] | None = None, *, strict: bool = True) -> RemoteStorage:
    """The remote storage at ``url``, its options typed. ``strict=False``: options the remote does
    not declare are left out (the remote sink passes its whole option set)."""
    entry = remote_for(url)
    typed = entry.parse_options(options or {}, strict=strict)
    entry.check_modules()
    return entry.load()(url, typed)


def open_source(url: str, options: Mapping[str, Any] | None = None, **run: Any) -> RecordSource:
    """The source reading ``url``, its options typed; ``run``: forms, mode, action,
    overlap_seconds, check_deletions."""
    entry = source_for(url)
    typed = entry.parse_options(options or {})
    factory: Callable[..., Any] = entry.load()
    return factory(url, **run, **{k: v for k, v in typed.items() if v is not None})


def writer_class(key: str) -> type:
    """The writer class of format ``key``."""
    entry = FORMATS.find(key.lower().strip())
    if entry is None:
        raise ConfigError(f"unknown format '{key}' (known: {', '.join(FORMATS.ordered_keys())})")
    return entry.load()
