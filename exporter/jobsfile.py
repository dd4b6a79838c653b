"""The jobs file: one TOML table per account, checked whole before anything runs.

    [defaults]                      any account key; an account's own key replaces it (tables whole)
    [accounts.NAME]                 source, token_env | token_file, schedule, incremental,
                                    destinations = [{ to, password_env | password_file, formats, options }],
                                    backup = { to, encrypt_to, keep_daily, keep_weekly, keep_monthly, schedule },
                                    alerts = { webhook_env | webhook_file, email = { to, from, smtp, tls,
                                               user | user_env | user_file, password_env | password_file,
                                               ca_file }, on = ["failure", "success"] },
                                    state_dir, time_limit, and the export settings of ``SETTINGS``

Secrets are given only by reference: ``*_env`` names an environment variable, ``*_file`` a file.
A secret written in the file (a ``password``/``token``/``secret`` key, a password inside a URL),
an unknown key, a wrong type, a bad cron expression, a destination option its destination does
not read, a table declared twice, or (``check_environment``) a variable that is not set or a file
that cannot be read is a problem reported as ``FILE:LINE: KEY: what is wrong``; every problem of
the file is reported at once (``JobsFileError.problems``). Relative paths are relative to the
jobs file's folder (the export runs there). The tables of an account (destinations, backup,
alerts, export settings) are checked by ``exporter.jobtables``.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import tomlpos
from .errors import ConfigError
from .jobalerts import Alerts, alerts
from .jobtables import (
    DEFAULT_FORMATS,
    SETTINGS,
    Backup,
    Checker,
    Destination,
    backup,
    destinations,
    pseudonymisation,
    settings,
)

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
INCREMENTAL = ("none", "cursor", "unread")
ACCOUNT_KEYS = {"source", "token_env", "token_file", "schedule", "incremental", "destinations", "backup", "alerts",
                "state_dir", "time_limit", *SETTINGS}


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
    c = Checker(p, doc, lines)
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
    at = m.group(1) if m else "1"
    message = message[:m.start()] + message[m.end():] if m else message
    return f"{p}:{at}: not valid TOML: {message}"


def _accounts(c: Checker, base: Path) -> dict[str, Account]:
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


def _account(c: Checker, name: str, defaults: dict, own: dict, base: Path) -> Account | None:
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
    account_settings = settings(c, merged, where, incremental)
    pseudonymisation(c, account_settings, where, env, files, str(base))

    dests, formats = destinations(c, merged.get("destinations"), where.get("destinations", ("accounts", name)),
                                   env, files, str(base))
    for d in dests if incremental == "none" else ():  # as `exporter export` refuses it: the run would ignore it
        if d.options.get("deltas") is True:
            c.bad(d.key + ("deltas",), "deltas is for incremental runs: set incremental = \"cursor\" or \"unread\"")
    found_backup = backup(c, merged["backup"], where["backup"], env, files) if "backup" in merged else None
    found_alerts = alerts(c, merged["alerts"], where["alerts"], files) if "alerts" in merged else None
    if len(c.problems) > before or source is None or state is None:  # both None only with a problem recorded
        return None
    return Account(name=name, source=source, state_dir=(base / os.path.expanduser(state)).resolve(), base_dir=base,
                   destinations=dests, token_env=merged.get("token_env"), token_file=merged.get("token_file"),
                   schedule=cron, incremental=incremental, formats=formats, backup=found_backup, alerts=found_alerts,
                   time_limit=time_limit, settings=account_settings, env_refs=tuple(env), file_refs=tuple(files))


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
        for key, var in [*account.env_refs, *(account.alerts.env_refs if account.alerts else ())]:
            if not environ.get(var, "").strip():
                how = "is not set" if environ.get(var) is None else "is empty"
                problems.append(f"{jobs.at(key)}: environment variable {var} {how}")
        email = account.alerts.email if account.alerts else None
        if email and email.ca_file:
            problem = _ca_problem(account.base_dir / os.path.expanduser(email.ca_file))
            if problem:
                problems.append(f"{jobs.at(email.key + ('ca_file',))}: {email.ca_file} {problem}")
        for key, f in account.file_refs:
            p = account.base_dir / os.path.expanduser(f)
            if not p.is_file() or not os.access(p, os.R_OK):
                problems.append(f"{jobs.at(key)}: {f} is not a readable file")
        problems += _short_keys(jobs, account, environ)
    if problems:
        raise JobsFileError(problems)


def _ca_problem(path: Path) -> str | None:
    """Why ``path`` cannot serve as the CA certificates (PEM) of a TLS client, or None."""
    import ssl

    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        return "does not exist"
    except ssl.SSLError:  # (an OSError too)
        return "holds no CA certificate (PEM) that TLS can load"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    return None


def _short_keys(jobs: JobsFile, account: Account, environ) -> list[str]:
    """A pseudonymisation key shorter than the export accepts (never shown)."""
    from .privacy.spec import MIN_KEY_CHARS

    found = [(key, environ.get(var, "")) for key, var in account.env_refs if key[-1] == "pseudonymise_key_env"]
    for key, f in account.file_refs:
        if key[-1] == "pseudonymise_key_file":
            try:
                found.append((key, (account.base_dir / os.path.expanduser(f)).read_text("utf-8")))
            except (OSError, UnicodeDecodeError):
                continue  # said above
    return [f"{jobs.at(key)}: the pseudonymisation key is {len(value.strip())} characters long: give at least "
            f"{MIN_KEY_CHARS} (e.g. the output of `openssl rand -hex 32`)"
            for key, value in found if value.strip() and len(value.strip()) < MIN_KEY_CHARS]
