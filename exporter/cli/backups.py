"""``exporter backups create | list | verify | restore | prune``: encrypted, verified backups of
an account, with retention (the core is ``exporter.backups``; this module only reads the command
line and prints). A command group of its own in ``exporter.cli``.

Each create, verify, restore and (not dry) prune appends one line to the account's audit logs
(``exporter.audit.operation``: actions ``backup``, ``verify``, ``restore``, ``prune``), whatever
its outcome; a command refused for bad input before any work writes none, while an error once the
work began (the core calls ``started``, the line's ``begin``) is a failure, a ``ConfigError`` too.
``exporter jobs run`` passes ``create`` the hidden ``--no-audit``: it writes that backup's line
itself.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import api
from ..errors import ConfigError
from ..secrets import mask
from .common import F, given_source_options, progress, run_guarded, source_options

if TYPE_CHECKING:
    from ..audit import Line
    from ..retention import Retention

STATE_HELP = "Folder of the accounts' state (index, lock, spool); needed, here or as $EXPORTER_STATE_DIR."


def _needed(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """--state-dir: required, but $EXPORTER_STATE_DIR gives it too (click's "[required]" in the
    help would say otherwise)."""
    if not value:
        raise click.UsageError("Missing option '--state-dir' (or $EXPORTER_STATE_DIR).", ctx)
    return value


def account_options(fn: F) -> F:
    opts = [
        click.option("--account", "-a", required=True, metavar="NAME", help="The account (a name of your choice)."),
        click.option("--state-dir", envvar="EXPORTER_STATE_DIR", type=click.Path(file_okay=False), callback=_needed,
                     help=STATE_HELP),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def retention_options(fn: F) -> F:
    for rule, what in reversed((("last", "most recent backups"), ("daily", "days"), ("weekly", "ISO weeks"),
                                ("monthly", "months"), ("yearly", "years"))):
        fn = click.option(f"--keep-{rule}", f"keep_{rule}", type=click.IntRange(0), default=0, metavar="N",
                          help=f"Keep the newest backup of each of the last N {what} that have one."
                          if rule != "last" else "Keep the N most recent backups.")(fn)
    return fn


_IDENTITY = "exporter.identity"


def _keep_identity(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    ctx.meta.setdefault(_IDENTITY, {})[param.name] = value
    return value


def identity_options(fn: F) -> F:
    """``--identity-file`` / ``--identity-env`` of the commands that decrypt, read back with
    ``identities_of`` (their values wait in ``ctx.meta``: the commands' signatures do not take them)."""
    fn = click.option("--identity-env", metavar="NAME", expose_value=False, callback=_keep_identity,
                      help="Environment variable holding the age identity (AGE-SECRET-KEY-1...).")(fn)
    return click.option("--identity-file", type=click.Path(dir_okay=False), metavar="PATH", expose_value=False,
                        callback=_keep_identity,
                        help="age identity file (age-keygen output) that decrypts the backups.")(fn)


def identity_given(ctx: click.Context) -> bool:
    """Whether ``--identity-file`` or ``--identity-env`` was given."""
    return any(ctx.meta.get(_IDENTITY, {}).values())


def identities_of(ctx: click.Context) -> list[Any]:
    """The age identities of ``identity_options``: one of the file or the variable, read and checked."""
    from ..agecrypt import load_identities

    given = ctx.meta.get(_IDENTITY, {})
    file, env = given.get("identity_file"), given.get("identity_env")
    if file and env:
        raise ConfigError("give one of --identity-file and --identity-env, not both")
    return load_identities(file=file, env=env)


def _retention(**keep: int) -> Retention | None:
    from ..retention import Retention

    policy = Retention(**{k: v for k, v in keep.items() if k.startswith("keep_")})
    return None if policy.empty else policy


def _audited(ctx: click.Context, state_dir: str, account: str, action: str, on: bool = True,
             **fields: Any) -> contextlib.AbstractContextManager[Line]:
    """The audit line of the operation in the ``with`` block (a dict to complete, naming the
    command), or a dict written nowhere when ``on`` is false."""
    from ..audit import Line, operation

    if not on:
        return contextlib.nullcontext(Line())
    return operation(state_dir, account, action, command=f"backups {ctx.info_name}", **fields)


def _options(raw: tuple[str, ...], password_env: str | None, password_file: str | None) -> dict:
    from ..destplan import parse_items

    options = parse_items(raw)
    if password_env:
        options["password_env"] = password_env
    if password_file:
        options["password_file"] = password_file
    return options


@click.group()
def backups() -> None:
    """Encrypted, verified backups of an account, with retention.

    A backup is a full account archive (zip), re-hashed after writing, encrypted with age to
    public keys (decrypt it with `age -d -i KEY FILE.zip.age > FILE.zip`, no exporter needed),
    stored on any destination that holds files and checked there. An index per account
    (STATE_DIR/ACCOUNT/backups.json) lists them; a lock (STATE_DIR/ACCOUNT/lock) stops two runs
    of one account at once.
    """


@backups.command()
@account_options
@source_options
@click.option("--to", "to", required=True, metavar="DEST",
              help="Where backups go: a folder, file:///dir, sftp://, ftp://, ftps://, dropbox:///, sharepoint://, "
                   "s3://bucket/prefix, azure://account/container/prefix.")
@click.option("--option", "-o", "raw_options", multiple=True, metavar="KEY=VALUE",
              help="Option of the destination (credentials by reference: -o secret_access_key_env=NAME ...).")
@click.option("--to-password-env", metavar="NAME", help="Environment variable holding the destination's password.")
@click.option("--to-password-file", type=click.Path(dir_okay=False), help="File holding the destination's password.")
@click.option("--encrypt-to", "recipients", multiple=True, metavar="AGE1...",
              help="age public key (or SSH public key) the backups are encrypted to (repeatable).")
@click.option("--recipients-file", type=click.Path(dir_okay=False, exists=True),
              help="age recipients file: one public key a line.")
@retention_options
@click.option("--no-audit", is_flag=True, hidden=True,
              help="Write no audit line: the caller writes it (exporter jobs run does).")
@click.pass_context
def create(ctx: click.Context, account: str, state_dir: str, source: str, forms: tuple[str, ...], to: str,
           raw_options: tuple[str, ...], to_password_env: str | None, to_password_file: str | None,
           recipients: tuple[str, ...], recipients_file: str | None, no_audit: bool, **switches: Any) -> None:
    """Back up an account: archive, verify, encrypt, store, check; then prune old backups by the
    --keep-* rules (only after the new one is verified; the newest good one is always kept)."""

    def go() -> None:
        from ..agecrypt import read_recipients_file
        from ..backups import BackupConfig, audit_fields, create_backup, plan_backup

        if forms:
            raise ConfigError("a backup holds the whole account: --form is not accepted")
        keys = list(recipients) + (read_recipients_file(recipients_file) if recipients_file else [])
        options = _options(raw_options, to_password_env, to_password_file)
        # ``switches``: the source's (read with given_source_options) and the --keep-* rules
        config = BackupConfig(account, Path(state_dir), to, options, keys, _retention(**switches))
        plan = plan_backup(config)  # refused before anything runs: recipients, destination, its secrets
        with _audited(ctx, state_dir, account, "backup", not no_audit, source=mask(source),
                      destinations=[mask(to)]) as line:
            src = api.open_source(source, given_source_options(ctx))  # a ConfigError here is a refusal too
            line.begin()  # from here on, any error is a failure of the backup
            entry = create_backup(plan, src, progress=progress(ctx))
            line.update(counts=entry["archive"]["counts"], backup=audit_fields(entry))
        if not ctx.obj.quiet:
            click.echo(f"backup {entry['name']} stored on {entry['destination']}: {entry['size']} bytes, "
                       f"sha256 {entry['sha256']}, {entry['archive']['files']} files verified, {entry['checked_by']}")

    run_guarded(ctx, go)


@backups.command(name="list")
@account_options
@click.option("--json", "as_json", is_flag=True, help="The index entries as JSON.")
@click.pass_context
def list_(ctx: click.Context, account: str, state_dir: str, as_json: bool) -> None:
    """List an account's backups: id (what --backup takes), date, size, sha256, verified."""

    def go() -> None:
        from ..backups import load_index

        entries = sorted(load_index(state_dir, account), key=lambda e: e["created"], reverse=True)
        if as_json:
            click.echo(json.dumps(entries, ensure_ascii=False, indent=1))
            return
        if not entries:
            click.echo(f"no backup of account {account} yet")
            return
        click.echo(f"{'id':<16}  {'created':<20}  {'size':>12}  {'sha256':<64}  verified")
        for e in entries:
            state = f"yes {e.get('verified_at', '')}" if e.get("verified") else "NO " + "; ".join(e.get("problems", []))[:80]
            click.echo(f"{e['id']:<16}  {e['created']:<20}  {e['size']:>12}  {e['sha256']:<64}  {state}")
            if ctx.obj.verbose:
                click.echo(f"  {e['name']} on {e['destination']}; archive {e['archive']['sha256']} "
                           f"({e['archive']['files']} files)")

    run_guarded(ctx, go)


@backups.command()
@account_options
@click.option("--backup", "which", default="latest", show_default=True, metavar="ID|NAME|latest|all",
              help="Which backup(s) to verify.")
@identity_options
@click.pass_context
def verify(ctx: click.Context, account: str, state_dir: str, which: str) -> None:
    """Download, decrypt and re-hash backups (every file of the archive inside); the result is
    recorded in the index. Exit 1 if any does not verify."""

    def go() -> None:
        from ..backups import audit_fields, verify_backups

        identities = identities_of(ctx)
        with _audited(ctx, state_dir, account, "verify", selection=which) as line:
            results = verify_backups(state_dir, account, which, identities, started=line.begin)
            line["backups"] = [{**audit_fields(e), "verified": not problems} for e, problems in results]
            line["destinations"] = sorted({e["destination"] for e, _problems in results})
            bad = [(e["name"], problems[0]) for e, problems in results if problems]
            if bad:
                line.update(result="failed", error=f"{len(bad)} backup(s) do not verify: {bad[0][0]}: {bad[0][1]}")
        for entry, problems in results:
            if problems:
                for p in problems:
                    click.echo(f"{entry['name']}: {p}", err=True)
            elif not ctx.obj.quiet:
                click.echo(f"OK: {entry['name']} ({entry['archive']['files']} files match their sha256)")
        if bad:
            raise click.ClickException(f"{len(bad)} backup(s) of account {account} do not verify")

    run_guarded(ctx, go)


@backups.command()
@account_options
@click.option("--backup", "which", default="latest", show_default=True, metavar="ID|NAME|latest",
              help="Which backup to restore (latest = the newest verified one).")
@identity_options
@click.option("--out", type=click.Path(), help="Write the decrypted, verified archive (.zip) here.")
@click.option("--to", "destinations", multiple=True, metavar="DEST",
              help="Replay the account into this destination (repeatable; any destination of `exporter export`).")
@click.option("--option", "-o", "raw_options", multiple=True, metavar="KEY=VALUE",
              help="Option of every --to destination.")
@click.option("--to-password-env", metavar="NAME", help="Environment variable holding the --to password.")
@click.option("--to-password-file", type=click.Path(dir_okay=False), help="File holding the --to password.")
@click.option("--format", "formats", default="json,csv", show_default=True, metavar="LIST",
              help="File formats for file and remote --to destinations.")
@click.pass_context
def restore(ctx: click.Context, account: str, state_dir: str, which: str, out: str | None,
            destinations: tuple[str, ...], raw_options: tuple[str, ...], to_password_env: str | None,
            to_password_file: str | None, formats: str) -> None:
    """Decrypt a backup, verify it, then write it (--out) and/or replay it into destinations (--to)."""

    def go() -> None:
        from ..backups import audit_fields
        from ..backups import restore as restore_backup
        from ..registry import create_sink
        from ..validate import plan_destinations

        fmt = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
        options = _options(raw_options, to_password_env, to_password_file)
        given = ctx.get_parameter_source("formats") is not click.core.ParameterSource.DEFAULT
        planned = plan_destinations([(u, {}) for u in destinations], options, fmt, formats_given=given) \
            if destinations else []
        identities = identities_of(ctx)
        sinks = [create_sink(u, typed, fmt) for u, typed in planned]
        with _audited(ctx, state_dir, account, "restore", selection=which,
                      destinations=[*(mask(u) for u in destinations), *([str(out)] if out else [])]) as line:
            entry = restore_backup(state_dir, account, which, identities, out=out, sinks=sinks,
                                   progress=progress(ctx), started=line.begin)
            line.update(source=entry["destination"], counts=entry["archive"]["counts"], backup=audit_fields(entry))
        if not ctx.obj.quiet:
            where = ", ".join([*(mask(u) for u in destinations), *([out] if out else [])])
            click.echo(f"restored {entry['name']} ({entry['archive']['files']} files verified) to {where}")

    run_guarded(ctx, go)


@backups.command()
@account_options
@retention_options
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@click.pass_context
def prune(ctx: click.Context, account: str, state_dir: str, dry_run: bool, **keep: int) -> None:
    """Remove the backups the --keep-* rules do not keep (restic's forget rules; the newest good
    backup is always kept)."""

    def go() -> None:
        from ..backups import audit_fields
        from ..backups import prune as prune_backups

        policy = _retention(**keep)
        if policy is None:
            raise ConfigError("no retention rule: give at least one --keep-last/--keep-daily/--keep-weekly/"
                              "--keep-monthly/--keep-yearly")
        with _audited(ctx, state_dir, account, "prune", not dry_run, retention=policy.describe()) as line:
            removed = prune_backups(state_dir, account, policy, dry_run=dry_run, started=line.begin)
            line.update(removed=[audit_fields(e) for e in removed],
                        destinations=sorted({e["destination"] for e in removed}))
        if not ctx.obj.quiet:
            for e in removed:
                click.echo(f"{'would remove' if dry_run else 'removed'} {e['name']} ({e['created']})")
            click.echo(f"{len(removed)} backup(s) {'to remove' if dry_run else 'removed'} ({policy.describe()})")

    run_guarded(ctx, go)
