"""The jobs file: one TOML table per account, checked whole before anything runs.

    [defaults]                      any account key; an account's own key replaces it (tables whole)
    [accounts.NAME]                 source, token_env | token_file, schedule, incremental,
                                    destinations = [{ to, password_env | password_file, formats, options }],
                                    backup = { to, encrypt_to, keep_daily, keep_weekly, keep_monthly, schedule },
                                    alerts = { webhook_env | webhook_file, on = ["failure", "success"] },
                                    state_dir, time_limit, and the export settings of ``SETTINGS``

Secrets are given only by reference: ``*_env`` names an environment variable, ``*_file`` a file.
A secret written in the file (a ``password``/``token``/``secret`` key, a password inside a URL),
an unknown key, a wrong type, a bad cron expression, a destination option its destination does
not read, a table declared twice, or (``check_environment``) a variable that is not set or a file
that cannot be read is a problem reported as ``FILE:LINE: KEY: what is wrong``; every problem of
the file is reported at once (``JobsFileError.problems``). Relative paths are relative to the
jobs file's folder (the export runs there).
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import schedule, tomlpos
from .errors import ConfigError

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
INCREMENTAL = ("none", "cursor", "unread")
ALERT_ON = ("failure", "success")
DEFAULT_FORMATS = ("json", "csv")

#: export settings an account may carry: key -> (the `exporter export` option, kind)
SETTINGS: dict[str, tuple[str, str]] = {
    "forms": ("--form", "list"), "skip": ("--skip", "skip"), "timezone": ("--timezone", "str"),
    "ca_bundle": ("--ca-bundle", "str"), "timeout": ("--timeout", "number"), "workers": ("--workers", "workers"),
    "jobs": ("--jobs", "int"), "batch_size": ("--batch-size", "int"), "deletions": ("--deletions", "deletions"),
    "max_deletions": ("--max-deletions", "max_deletions"), "check_deletions": ("--check-deletions", "flag"),
    "overlap": ("--overlap", "int0"), "page_size": ("--page-size", "int"), "action": ("--action", "str"),
}
ACCOUNT_KEYS = {"source", "token_env", "token_file", "schedule", "incremental", "destinations", "backup", "alerts",
                "state_dir", "time_limit", *SETTINGS}
KEEP = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
BACKUP_KEYS = {"to", "encrypt_to", "schedule", *KEEP}
ALERT_KEYS = {"webhook_env", "webhook_file", "on"}


class JobsFileError(ConfigError):
    """Problems of a jobs file, each one line ``FILE:LINE: KEY: message``, in the file's order
    (a problem of [defaults] shared by several accounts is said once)."""

    def __init__(self, problems: list[str]):
        def line(p: str) -> int:
            m = re.match(r".*?:(\d+): ", p)
            return int(m.group(1)) if m else 0

        problems = sorted(dict.fromkeys(problems), key=line)
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


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


@dataclass(frozen=True)
class Alerts:
    key: tuple
    webhook_env: str | None = None
    webhook_file: str | None = None
    on: tuple[str, ...] = ("failure",)


@dataclass(frozen=True)
class Account:
    name: str
    source: str
    state_dir: Path
    base_dir: Path  # the jobs file's folder: relative paths start there
    destinations: tuple[Destination, ...]
    token_env: str | None = None
    token_file: str | None = None
    schedule: str | None = None
    incremental: str = "none"
    formats: tuple[str, ...] | None = DEFAULT_FORMATS  # None: no destination of the account writes files
    backup: Backup | None = None
    alerts: Alerts | None = None
    time_limit: float | None = None
    settings: dict = field(default_factory=dict)
    #: (key path, variable) of every ``*_env`` the export reads: the only secrets its process gets
    env_refs: tuple[tuple[tuple, str], ...] = ()
    #: (key path, file) of every ``*_file`` the account names
    file_refs: tuple[tuple[tuple, str], ...] = ()

    @property
    def dir(self) -> Path:
        return self.state_dir / self.name


@dataclass(frozen=True)
class JobsFile:
    path: Path
    accounts: dict[str, Account]
    lines: dict

    def at(self, key: tuple) -> str:
        """``FILE:LINE: KEY`` for a key path."""
        return f"{self.path}:{tomlpos.line_of(self.lines, key)}: {dotted(key)}"


dotted = tomlpos.key_text


def _is_reference(key: str) -> bool:
    return key.endswith(("_env", "_file"))


class _Checker(tomlpos.Problems):
    """The jobs file's own checks: schedules, URLs, secrets by reference only."""

    def __init__(self, path: Path, doc: dict, lines: dict):
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

    def unknown(self, table: dict, key: tuple, known: set[str], extra: str = "") -> None:
        for k in table:
            if k not in known and _secret_key(k):
                self.bad(key + (k,), f"inline secret: write {k}_env (an environment variable) or {k}_file "
                                     "(a file) instead")
        super().unknown({k: v for k, v in table.items() if not _secret_key(k)}, key, known, extra)

    def references(self, table: dict, key: tuple, names: tuple[str, ...], env: list, files: list) -> None:
        """``NAME_env`` / ``NAME_file`` pairs: at most one of each pair; collected for the checks of
        the environment and of the files."""
        for name in names:
            e, f = table.get(f"{name}_env"), table.get(f"{name}_file")
            if e is not None and f is not None:
                self.bad(key + (f"{name}_file",), f"give {name}_env or {name}_file, not both")
        for k, v in table.items():
            if not _is_reference(k):
                continue
            text = self.text(key + (k,), v)
            if text is not None:
                (env if k.endswith("_env") else files).append((key + (k,), text))


def _secret_key(key: str, declared=()) -> bool:
    """Whether ``key`` would hold a secret itself: its name says so (``password``, ``token``...),
    or the destination reads it by reference (``key_env``/``key_file`` among ``declared``)."""
    from .validate import names_a_secret

    if _is_reference(key):
        return False
    return names_a_secret(key) or key in ("webhook", "webhook_url") or f"{key}_env" in declared \
        or f"{key}_file" in declared


def _declared(url: str) -> set[str]:
    """The option keys the destination at ``url`` declares (none when it cannot be told)."""
    from .registry import entry_for

    try:
        return set(entry_for(url.partition("?")[0]).options or ())
    except ConfigError:
        return set()


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def load(path: str | os.PathLike) -> JobsFile:
    """The jobs file at ``path``, checked whole (JobsFileError listing every problem)."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        from .errors import os_error_text

        raise ConfigError(os_error_text(e, "read the jobs file")) from None
    except UnicodeDecodeError as e:
        raise JobsFileError([f"{p}:1: the jobs file is not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise JobsFileError([_syntax_problem(p, text, e)]) from None
    lines = tomlpos.locate(text)
    c = _Checker(p, doc, lines)
    accounts = _accounts(c, p.resolve().parent)
    if c.problems:
        raise JobsFileError(c.problems)
    return JobsFile(p, accounts, lines)


def _syntax_problem(p: Path, text: str, e: tomllib.TOMLDecodeError) -> str:
    seen: dict[tuple, int] = {}
    for name, line in tomlpos.headers(text):
        if name in seen:
            what = f"account '{name[1]}'" if len(name) == 2 and name[0] == "accounts" else f"table [{dotted(name)}]"
            return f"{p}:{line}: {dotted(name)}: {what} is defined twice (first at line {seen[name]})"
        seen[name] = line
    message = str(e)
    m = re.search(r"\s*\(at line (\d+), column \d+\)", message)
    line = m.group(1) if m else "1"
    message = message[:m.start()] + message[m.end():] if m else message
    return f"{p}:{line}: not valid TOML: {message}"


def _accounts(c: _Checker, base: Path) -> dict[str, Account]:
    c.unknown(c.doc, (), {"defaults", "accounts"})
    defaults = c.table(("defaults",), c.doc.get("defaults", {})) or {}
    c.unknown(defaults, ("defaults",), ACCOUNT_KEYS)
    accounts = c.table(("accounts",), c.doc.get("accounts", {}))
    if accounts is None:
        return {}
    if not accounts:
        c.bad(("accounts",), "no account: add an [accounts.NAME] table")
        return {}
    out: dict[str, Account] = {}
    folded: dict[str, str] = {}
    for name, table in accounts.items():
        key = ("accounts", name)
        if not ACCOUNT_NAME.fullmatch(name):
            c.bad(key, "an account name is 1 to 64 letters, digits, '-' or '_' (it names its state folder)")
            continue
        if name.lower() in folded:
            c.bad(key, f"account '{name}' and account '{folded[name.lower()]}' differ only by case "
                       "(their state folders would collide)")
            continue
        folded[name.lower()] = name
        if c.table(key, table) is None:
            continue
        account = _account(c, name, defaults, table, base)
        if account is not None:
            out[name] = account
    return out


def _account(c: _Checker, name: str, defaults: dict, own: dict, base: Path) -> Account | None:
    before = len(c.problems)
    merged = {**defaults, **own}
    where = {k: (("accounts", name) if k in own else ("defaults",)) + (k,) for k in merged}
    c.unknown(own, ("accounts", name), ACCOUNT_KEYS)
    merged = {k: v for k, v in merged.items() if k in ACCOUNT_KEYS}
    env: list = []
    files: list = []
    for k in ("token_env", "token_file"):
        if k in merged:
            c.references({k: merged[k]}, where[k][:-1], (), env, files)
    if "token_env" in merged and "token_file" in merged:
        c.bad(where["token_file"], "give token_env or token_file, not both")

    source = c.url(where["source"], merged["source"]) if "source" in merged else None
    if "source" not in merged:
        c.bad(("accounts", name), "no source: add source = \"https://forms.kizeo.com/rest/v3\" (or an archive path)")
    elif source and source.startswith(("http://", "https://")):
        if "token_env" not in merged and "token_file" not in merged:
            c.bad(where["source"], "the web service needs a token: add token_env (an environment variable) or token_file")
    elif source:
        for k in ("token_env", "token_file"):
            if k in merged:
                c.bad(where[k], "an archive source needs no token")
        if not (base / os.path.expanduser(source)).exists():
            c.bad(where["source"], f"the archive {source} does not exist")

    state = c.text(where["state_dir"], merged["state_dir"]) if "state_dir" in merged else None
    if "state_dir" not in merged:
        c.bad(("accounts", name), "no state_dir: add state_dir = \"/var/lib/exporter\" (here or in [defaults])")
    cron = c.cron(where["schedule"], merged["schedule"]) if "schedule" in merged else None
    incremental = merged.get("incremental", "none")
    if incremental not in INCREMENTAL:
        c.bad(where["incremental"], f"expected one of {', '.join(INCREMENTAL)}, not {incremental!r}")
    time_limit = c.number(where["time_limit"], merged["time_limit"]) if "time_limit" in merged else None
    settings = _settings(c, merged, where, incremental)

    dests, formats = _destinations(c, merged.get("destinations"), where.get("destinations", ("accounts", name)),
                                   env, files)
    backup = _backup(c, merged["backup"], where["backup"], env, files) if "backup" in merged else None
    alerts = _alerts(c, merged["alerts"], where["alerts"], [], files) if "alerts" in merged else None
    if len(c.problems) > before:
        return None
    return Account(name=name, source=source, state_dir=(base / os.path.expanduser(state)).resolve(), base_dir=base,
                   destinations=dests, token_env=merged.get("token_env"), token_file=merged.get("token_file"),
                   schedule=cron, incremental=incremental, formats=formats, backup=backup, alerts=alerts,
                   time_limit=time_limit, settings=settings, env_refs=tuple(env), file_refs=tuple(files))


def _settings(c: _Checker, merged: dict, where: dict, incremental: str) -> dict:
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
        elif kind == "workers":
            if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 32):
                c.bad(key, f"expected a number from 1 to 32 or \"auto\", not {v!r}")
                v = None
        else:
            v = _parsed(c, key, kind, v)
        if v is not None:
            out[k] = v
    for k, needs in (("action", "unread"), ("page_size", "unread")):
        if k in out and incremental != needs:
            c.bad(where[k], f"is for incremental = \"{needs}\" (this account is \"{incremental}\")")
    if incremental == "unread" and "action" not in out:
        c.bad(where.get("incremental", ()), "incremental = \"unread\" needs action = \"NAME\" (the read-marker name)")
    if out.get("check_deletions") and incremental == "none":
        c.bad(where["check_deletions"], "is for incremental = \"cursor\" or \"unread\" (a full export always "
                                        "sees deletions)")
    return out


def _parsed(c: _Checker, key: tuple, kind: str, v: Any):
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


def _destinations(c: _Checker, value: Any, key: tuple, env: list, files: list):
    from .registry import entry_for
    from .validate import check_options, split_url_options

    if value is None:
        c.bad(key, "no destinations: add destinations = [{ to = \"...\" }, ...]")
        return (), DEFAULT_FORMATS
    if not isinstance(value, list) or not value:
        c.bad(key, "expected a non-empty list of tables: destinations = [{ to = \"...\" }, ...]")
        return (), DEFAULT_FORMATS
    formats: tuple[str, ...] | None = None
    formats_at: tuple = ()
    out = []
    all_options = []  # each destination's options, its URL's included (for the format options)
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
            url, url_options = split_url_options(to)
            entry = entry_for(url)
        except ConfigError as e:
            c.bad(dkey + ("to",), str(e))
            continue
        fmt = None
        if "formats" in table:
            fmt = c.strings(dkey + ("formats",), table["formats"])
            if fmt is not None and not entry.formats:
                c.bad(dkey + ("formats",), f"the {entry.key} destination writes no files")
            elif fmt is not None and formats is not None and set(fmt) != set(formats):
                c.bad(dkey + ("formats",), f"every destination of an account writes the same formats (one export "
                                           f"pass): {', '.join(formats)} at line "
                                           f"{tomlpos.line_of(c.lines, formats_at)}")
            elif fmt is not None and formats is None:
                formats, formats_at = fmt, dkey + ("formats",)
        options = {k: v for k, v in table.items() if k not in ("to", "formats")}
        for k, v in options.items():
            if _secret_key(k, entry.options or ()):
                c.bad(dkey + (k,), f"inline secret: write {k}_env (an environment variable) or {k}_file instead")
            elif not isinstance(v, (str, int, float, bool)):
                c.bad(dkey + (k,), f"an option takes one value (text, number or true/false), not {v!r}")
            else:
                try:
                    check_options({k: v}, [entry], fmt or formats or DEFAULT_FORMATS)
                except ConfigError as e:
                    c.bad(dkey + (k,), str(e))
        own = {k: v for k, v in options.items() if k not in ("password_env", "password_file")}
        out.append(Destination(to=to, key=dkey, password_env=table.get("password_env"),
                               password_file=table.get("password_file"), formats=fmt, options=own))
        all_options.append({**url_options, **own})
    formats = formats or DEFAULT_FORMATS
    _check_formats(c, formats, formats_at or key, all_options)
    return tuple(out), (formats if any(entry_for(d.to).formats for d in out) else None)


def _check_formats(c: _Checker, formats: tuple[str, ...], key: tuple, options: list[dict]) -> None:
    from exporter.formats.base import check_format_options, get_writer_class

    try:
        for f in formats:
            get_writer_class(f)
        for o in options:
            check_format_options(formats, o)
    except ConfigError as e:
        c.bad(key, str(e))


def _backup(c: _Checker, value: Any, key: tuple, env: list, files: list) -> Backup | None:
    table = c.table(key, value)
    if table is None:
        return None
    declared = _declared(str(table.get("to", "")))
    options = {}
    for k, v in table.items():
        if k in BACKUP_KEYS:
            continue
        if _secret_key(k, declared):
            c.bad(key + (k,), f"inline secret: write {k}_env (an environment variable) or {k}_file instead")
        elif not isinstance(v, (str, int, float, bool)):
            c.bad(key + (k,), f"an option takes one value (text, number or true/false), not {v!r}")
        else:
            options[k] = v
    c.references(options, key, ("password",), env, files)
    if "to" not in table or "encrypt_to" not in table:
        c.bad(key, "a backup needs to = \"URL or folder\" and encrypt_to = [\"age1...\"] (the public keys it is "
                   "encrypted to)")
        return None
    to = c.url(key + ("to",), table["to"])
    recipients = c.strings(key + ("encrypt_to",), table["encrypt_to"])
    keep = {k: c.integer(key + (k,), table[k]) for k in KEEP if k in table}
    cron = c.cron(key + ("schedule",), table["schedule"]) if "schedule" in table else None
    if to is None or recipients is None or None in keep.values():
        return None
    backup = Backup(to=to, encrypt_to=recipients, key=key, schedule=cron, options=options, **keep)
    from .jobrun import backup_problems

    for k, message in backup_problems(backup):
        near = tomlpos.nearest(k, BACKUP_KEYS) if k in options else ""
        c.bad(key + ((k,) if k else ()), message + near)
    return backup


def _alerts(c: _Checker, value: Any, key: tuple, env: list, files: list) -> Alerts | None:
    table = c.table(key, value)
    if table is None:
        return None
    c.unknown(table, key, ALERT_KEYS, " (alerts are webhooks: a JSON POST, Slack/Teams compatible)")
    c.references({k: v for k, v in table.items() if k in ALERT_KEYS}, key, ("webhook",), env, files)
    if "webhook_env" not in table and "webhook_file" not in table:
        c.bad(key, "alerts need webhook_env (an environment variable holding the URL) or webhook_file")
        return None
    on = c.strings(key + ("on",), table.get("on", ["failure"]))
    if on is not None:
        for i, v in enumerate(on):
            if v not in ALERT_ON:
                c.bad(key + ("on", i), f"expected one of {', '.join(ALERT_ON)}, not {v!r}")
                on = None
                break
    return None if on is None else Alerts(key=key, webhook_env=table.get("webhook_env"),
                                          webhook_file=table.get("webhook_file"), on=on)


# ----------------------------------------------------------------------------------------------
# the environment
# ----------------------------------------------------------------------------------------------


def check_environment(jobs: JobsFile, names, environ=None) -> None:
    """Every variable the accounts ``names`` read is set (not empty) and every file they name can
    be read: JobsFileError listing what is missing, before anything runs."""
    environ = os.environ if environ is None else environ
    problems = []
    for name in names:
        account = jobs.accounts[name]
        for key, var in account.env_refs:
            if not environ.get(var, "").strip():
                problems.append(f"{jobs.at(key)}: environment variable {var} is not set")
        if account.alerts and account.alerts.webhook_env:
            var = account.alerts.webhook_env
            if not environ.get(var, "").strip():
                problems.append(f"{jobs.at(account.alerts.key + ('webhook_env',))}: environment variable {var} "
                                "is not set")
        for key, f in account.file_refs:
            p = account.base_dir / os.path.expanduser(f)
            if not p.is_file() or not os.access(p, os.R_OK):
                problems.append(f"{jobs.at(key)}: {f} is not a readable file")
    if problems:
        raise JobsFileError(problems)
