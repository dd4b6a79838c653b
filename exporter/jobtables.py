"""The tables of a jobs file's account, checked: its destinations, its backup and its export
settings (its alerts: ``exporter.jobalerts``; ``exporter.jobsfile`` reads the file and its accounts).

The rules are the ones the command line applies, read from the same place: a key naming a secret
itself is refused by ``exporter.options.names_a_secret``; a destination's and a format's options
are checked and typed against their declarations by ``exporter.validate`` (as ``exporter export``
checks them); a backup destination's by ``exporter.backups.store_options`` (as ``exporter backups
create`` does). Each problem is recorded against the key it is about (``Checker``), so that every
problem of the file is reported at once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import schedule, tomlpos
from .errors import ConfigError
from .options import names_a_secret, nearest

DEFAULT_FORMATS = ("json", "csv")

#: export settings an account may carry: key -> (the `exporter export` option, kind)
SETTINGS: dict[str, tuple[str, str]] = {
    "forms": ("--form", "list"), "skip": ("--skip", "skip"), "timezone": ("--timezone", "str"),
    "ca_bundle": ("--ca-bundle", "str"), "timeout": ("--timeout", "number"), "workers": ("--workers", "workers"),
    "jobs": ("--jobs", "int"), "batch_size": ("--batch-size", "int"), "deletions": ("--deletions", "deletions"),
    "max_deletions": ("--max-deletions", "max_deletions"), "check_deletions": ("--check-deletions", "flag"),
    "overlap": ("--overlap", "int0"), "page_size": ("--page-size", "int"), "action": ("--action", "str"),
    # pseudonymisation (``exporter.privacy``): the export only, never a backup (kept as served)
    "pseudonymise": ("--pseudonymise", "specs"), "pseudonymise_key_env": ("--pseudonymise-key-env", "str"),
    "pseudonymise_key_file": ("--pseudonymise-key-file", "str"), "pseudonymise_archive": ("--pseudonymise-archive",
                                                                                         "flag"),
}
#: the command line's names of the pseudonymisation settings, as the jobs file spells them
_PSEUDO_WORDS = {"--pseudonymise-key-env": "pseudonymise_key_env", "--pseudonymise-key-file": "pseudonymise_key_file",
                 "--pseudonymise-archive": "pseudonymise_archive", "--pseudonymise SPEC": "pseudonymise",
                 "--pseudonymise": "pseudonymise", "this run does not give": "this account does not give"}
KEEP = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
BACKUP_KEYS = {"to", "encrypt_to", "schedule", *KEEP}


@dataclass(frozen=True)
class Destination:
    to: str
    key: tuple  # where it is written: ("accounts", "acme", "destinations", 0)
    password_env: str | None = None
    password_file: str | None = None
    formats: tuple[str, ...] | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Backup:
    to: str
    encrypt_to: tuple[str, ...]
    key: tuple
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    schedule: str | None = None
    options: dict = field(default_factory=dict)  # the backup destination's own (password_env, ...)


def is_reference(key: str) -> bool:
    return key.endswith(("_env", "_file"))


def inline_secret(key: str, declared=()) -> bool:
    """Whether ``key`` would hold a secret itself: its name says so (``names_a_secret``), it is
    the alert webhook, or its destination reads it by reference (``key_env``/``key_file`` among
    ``declared``)."""
    if is_reference(key):
        return False
    return names_a_secret(key) or key in ("webhook", "webhook_url") or f"{key}_env" in declared \
        or f"{key}_file" in declared


class Checker(tomlpos.Problems):
    """The jobs file's own checks: schedules, URLs, secrets by reference only."""

    def __init__(self, path, doc: dict, lines: dict):
        super().__init__(path, lines)
        self.doc = doc

    def cron(self, key: tuple, value: Any) -> str | None:
        text = self.text(key, value)
        if text is None:
            return None
        try:
            schedule.check(text)
        except ConfigError as e:
            self.bad(key, str(e))
            return None
        return text

    def url(self, key: tuple, value: Any) -> str | None:
        """A source or destination: no password inside it."""
        text = self.text(key, value)
        if text and "://" in text:
            try:
                has_password = urlsplit(text).password is not None
            except ValueError as e:
                self.bad(key, f"not a valid URL ({e})")
                return None
            if has_password:
                self.bad(key, "a password inside a URL is an inline secret: remove it and give password_env "
                              "(an environment variable) or password_file")
                return None
        return text

    def secret(self, key: tuple) -> None:
        self.bad(key, f"inline secret: write {key[-1]}_env (an environment variable) or {key[-1]}_file "
                      "(a file) instead")

    def unknown(self, table: dict, key: tuple, known: set[str], extra: str = "") -> None:
        for k in table:
            if k not in known and inline_secret(k, known):
                self.secret(key + (k,))
        super().unknown({k: v for k, v in table.items() if not inline_secret(k)}, key, known, extra)

    def option(self, key: tuple, value: Any, declared) -> bool:
        """An option of a destination: no secret, one value."""
        if inline_secret(key[-1], declared):
            self.secret(key)
        elif not isinstance(value, (str, int, float, bool)):
            self.bad(key, f"an option takes one value (text, number or true/false), not {value!r}")
        else:
            return True
        return False

    def references(self, table: dict, key: tuple, names: tuple[str, ...], env: list, files: list) -> None:
        """``NAME_env`` / ``NAME_file`` pairs: at most one of each pair; collected for the checks of
        the environment and of the files."""
        for name in names:
            e, f = table.get(f"{name}_env"), table.get(f"{name}_file")
            if e is not None and f is not None:
                self.bad(key + (f"{name}_file",), f"give {name}_env or {name}_file, not both")
        for k, v in table.items():
            if not is_reference(k):
                continue
            text = self.text(key + (k,), v)
            if text is not None:
                (env if k.endswith("_env") else files).append((key + (k,), text))


# ----------------------------------------------------------------------------------------------
# the export settings
# ----------------------------------------------------------------------------------------------


def settings(c: Checker, merged: dict, where: dict, incremental: str) -> dict:
    out: dict = {}
    for k, (_flag, kind) in SETTINGS.items():
        if k not in merged:
            continue
        v, key = merged[k], where[k]
        if kind == "str":
            v = c.text(key, v)
        elif kind == "list":
            v = c.strings(key, v)
        elif kind in ("int", "int0"):
            v = c.integer(key, v, 0 if kind == "int0" else 1)
        elif kind == "number":
            v = c.number(key, v)
        elif kind == "flag":
            v = c.flag(key, v)
        elif kind == "specs":  # one SPEC, or a list of them (as --pseudonymise is repeated)
            v = c.strings(key, [v] if isinstance(v, str) else v)
        elif kind == "workers":
            if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 32):
                c.bad(key, f"expected a number from 1 to 32 or \"auto\", not {v!r}")
                v = None
        else:
            v = _parsed(c, key, kind, v)
        if v is not None:
            out[k] = v
    for k, needs in (("action", "unread"), ("page_size", "unread"), ("overlap", "cursor")):
        if k in out and incremental != needs:
            c.bad(where[k], f"is for incremental = \"{needs}\" (this account is \"{incremental}\")")
    if incremental == "unread" and "action" not in out:
        c.bad(where.get("incremental", ()), "incremental = \"unread\" needs action = \"NAME\" (the read-marker name)")
    if out.get("check_deletions") and incremental == "none":
        c.bad(where["check_deletions"], "is for incremental = \"cursor\" or \"unread\" (a full export always "
                                        "sees deletions)")
    for k in ("deletions", "max_deletions"):
        if k in out and incremental != "none" and not out.get("check_deletions"):
            c.bad(where[k], f"takes effect only with check_deletions = true in an incremental = \"{incremental}\" "
                            "account (which otherwise does not look for deletions)")
    return out


def pseudonymisation(c: Checker, out: dict, where: dict, env: list, files: list, base: str) -> None:
    """The pseudonymisation settings checked together, as ``--pseudonymise`` checks them
    (``privacy.spec.parse_spec``); the key's reference joins the account's (its variable is given
    to the export's process, its file checked with the others)."""
    from .privacy.spec import parse_spec

    keys = [k for k in ("pseudonymise_key_env", "pseudonymise_key_file") if k in out]
    for k in keys:
        c.references({k: out[k]}, where[k][:-1], (), env, files)
    if len(keys) == 2:
        c.bad(where["pseudonymise_key_file"], "give pseudonymise_key_env or pseudonymise_key_file, not both")
        return
    given = [k for k in ("pseudonymise", *keys, "pseudonymise_archive") if k in out]
    if not given:
        return
    key_file = out.get("pseudonymise_key_file")
    try:
        parse_spec(out.get("pseudonymise", ()), key_env=out.get("pseudonymise_key_env"),
                   key_file=_in(base, key_file) if key_file else None, archive=bool(out.get("pseudonymise_archive")))
    except ConfigError as e:
        message = str(e)
        for flag, word in _PSEUDO_WORDS.items():
            message = message.replace(flag, word)
        c.bad(where[given[0]], message)


def _parsed(c: Checker, key: tuple, kind: str, v: Any):
    """skip, deletions, max_deletions: checked by the same functions as the command line's."""
    try:
        if kind == "skip":
            from exporter.connectors.kizeo.source import parse_skip

            v = c.strings(key, v)
            return None if v is None else tuple(sorted(parse_skip(v)))
        from .deletions import parse_policy

        v = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(v, str):
            raise ConfigError(f"expected a string, not {v!r}")
        parse_policy(v if kind == "deletions" else None, v if kind == "max_deletions" else None)
        return v
    except ConfigError as e:
        c.bad(key, str(e).replace("--skip ", "").replace("--deletions ", "").replace("--max-deletions ", ""))
        return None


# ----------------------------------------------------------------------------------------------
# destinations, backup, alerts
# ----------------------------------------------------------------------------------------------


def destinations(c: Checker, value: Any, key: tuple, env: list, files: list, base: str = "."):
    """(the destinations, the formats the account writes: None when none of them writes files).
    Each option is checked on its own line as ``exporter export`` checks it (``check_options``,
    then its value against the declaration); then the account's destinations together
    (``plan_destinations``: formats, the same destination twice, options in URLs); a folder is
    relative to ``base``, the jobs file's folder."""
    from .options import parse
    from .registry import destination_options, entry_for, formats_option
    from .validate import check_formats, check_options, plan_destinations, split_url_options

    if value is None:
        c.bad(key, "no destinations: add destinations = [{ to = \"...\" }, ...]")
        return (), DEFAULT_FORMATS
    if not isinstance(value, list) or not value:
        c.bad(key, "expected a non-empty list of tables: destinations = [{ to = \"...\" }, ...]")
        return (), DEFAULT_FORMATS
    before = len(c.problems)
    out, entries = [], []
    for i, table in enumerate(value):
        dkey = key + (i,)
        if c.table(dkey, table) is None:
            continue
        if "to" not in table:
            c.bad(dkey, "no 'to': each destination needs to = \"URL or folder\"")
            continue
        to = c.url(dkey + ("to",), table["to"])
        if to is None:
            continue
        c.references(table, dkey, ("password",), env, files)
        try:
            url, _url_options = split_url_options(to)
            entry = entry_for(url)
        except ConfigError as e:
            c.bad(dkey + ("to",), str(e))
            continue
        fmt = None
        if "formats" in table:  # this destination's own formats (each destination may write others)
            fmt = c.strings(dkey + ("formats",), table["formats"])
            if fmt is not None and not entry.formats:
                c.bad(dkey + ("formats",), f"the {entry.key} destination writes no files")
                fmt = None
            elif fmt is not None:
                try:
                    check_formats(fmt, [entry], False)
                    fmt = formats_option().parse(list(fmt))
                except ConfigError as e:
                    c.bad(dkey + ("formats",), str(e))
                    fmt = None
        options = {k: v for k, v in table.items() if k not in ("to", "formats")}
        run_formats = fmt or DEFAULT_FORMATS
        for k, v in options.items():
            if not c.option(dkey + (k,), v, entry.option_names()):
                continue
            try:
                check_options({k: v}, [entry], run_formats)
                parse(destination_options(entry, run_formats), {k: v}, owner=f"the {entry.key} destination")
            except ConfigError as e:
                c.bad(dkey + (k,), str(e))
        own = {k: v for k, v in options.items() if k not in ("password_env", "password_file")}
        out.append(Destination(to=to, key=dkey, password_env=table.get("password_env"),
                               password_file=table.get("password_file"), formats=fmt, options=own))
        entries.append(entry)
    if len(c.problems) == before:
        try:
            plan_destinations([(_in(base, d.to), _options_of(d)) for d in out], {}, DEFAULT_FORMATS,
                              formats_given=False)
        except ConfigError as e:
            c.bad(key, str(e))
    return tuple(out), (DEFAULT_FORMATS if any(e.formats for e in entries) else None)


def _in(base: str, to: str) -> str:
    return to if "://" in to else os.path.join(base, os.path.expanduser(to))


def _options_of(d: Destination) -> dict:
    refs = {"password_env": d.password_env, "password_file": d.password_file, "formats": d.formats}
    return {**d.options, **{k: v for k, v in refs.items() if v is not None}}


def backup(c: Checker, value: Any, key: tuple, env: list, files: list) -> Backup | None:
    table = c.table(key, value)
    if table is None:
        return None
    declared = _remote_options(str(table.get("to", "")))
    options = {k: v for k, v in table.items() if k not in BACKUP_KEYS and c.option(key + (k,), v, declared)}
    c.references(options, key, ("password",), env, files)
    if "to" not in table or "encrypt_to" not in table:
        c.bad(key, "a backup needs to = \"URL or folder\" and encrypt_to = [\"age1...\"] (the public keys it is "
                   "encrypted to)")
        return None
    to = c.url(key + ("to",), table["to"])
    recipients = c.strings(key + ("encrypt_to",), table["encrypt_to"])
    checked = {k: c.integer(key + (k,), table[k]) for k in KEEP if k in table}
    keep = {k: v for k, v in checked.items() if v is not None}
    cron = c.cron(key + ("schedule",), table["schedule"]) if "schedule" in table else None
    if to is None or recipients is None or len(keep) != len(checked):
        return None
    found = Backup(to=to, encrypt_to=recipients, key=key, schedule=cron, options=options, **keep)
    for k, message in backup_problems(found):
        near = nearest(k, BACKUP_KEYS) if k in options else ""
        c.bad(key + ((k,) if k else ()), message + near)
    return found


def _remote_options(url: str) -> set[str]:
    """The option keys the backup destination at ``url`` declares (none when it cannot be told)."""
    from .registry import remote_for

    try:
        return remote_for(url).option_names()
    except ConfigError:
        return set()


def backup_problems(b: Backup) -> list[tuple[str, str]]:
    """What ``exporter backups create`` would refuse in a backup table ((key, message)): its
    recipients (age public keys) and its destination's options (``backups.store_options``)."""
    from .agecrypt import parse_recipients
    from .backups import store_options

    out: list[tuple[str, str]] = []
    try:
        parse_recipients(b.encrypt_to)
    except ConfigError as e:
        out.append(("encrypt_to", str(e)))
    try:
        store_options(b.to, {})
    except ConfigError as e:
        return out + [("to", str(e))]
    for k, v in b.options.items():
        try:
            store_options(b.to, {k: v})
        except ConfigError as e:
            out.append((k, str(e)))
    return out
