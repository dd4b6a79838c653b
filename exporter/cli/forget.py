"""``exporter forget`` (``exporter.privacy.forget``): erase a person or submissions from every
destination given, as for an export."""
from __future__ import annotations

import contextlib
from pathlib import Path

import click

from ..errors import ConfigError
from .backups import identities_of, identity_given, identity_options
from .common import run_guarded
from .run import OrderedCommand


def _ids_file(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        text = Path(path).read_text("utf-8")
    except OSError as e:
        raise ConfigError(f"--submissions-file {path}: {e.strerror or e}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@click.command("forget", cls=OrderedCommand)
@click.option("--to", "destinations", multiple=True, metavar="DEST",
              help="Destination to erase from (repeatable), as given to export: a directory, sqlite:///x.db, "
                   "postgresql+psycopg://..., mysql+pymysql://..., a remote (sftp://, s3://...)")
@click.option("--to-password-env", "to_password_env", multiple=True, metavar="NAME",
              help="Environment variable holding the password of the --to just before it.")
@click.option("--to-password-file", "to_password_file", multiple=True, type=click.Path(dir_okay=False),
              help="File holding the password of the --to just before it.")
@click.option("--to-url-env", metavar="NAME", help="Environment variable holding a whole destination URL.")
@click.option("--option", "-o", "raw_options", multiple=True, metavar="KEY=VALUE",
              help="Destination option, as for export (e.g. -o schema=kizeo, -o media_dir=DIR).")
@click.option("--account", "-a", "account", metavar="NAME",
              help="Also erase from every backup of this account (`exporter backups`; needs --state-dir and the "
                   "identity that decrypts them).")
@click.option("--state-dir", envvar="EXPORTER_STATE_DIR", type=click.Path(file_okay=False),
              help="With --account: the folder of the accounts' state (backups index, lock, spool); "
                   "default $EXPORTER_STATE_DIR.")
@identity_options
@click.option("--user", "user_id", metavar="ID", help="The user to erase (their id, as in users.user_id).")
@click.option("--only-personal", is_flag=True,
              help="With --user: empty only their personal columns (login, names, email, phone, references) "
                   "everywhere; their submissions and memberships stay.")
@click.option("--submission", "submission_ids", multiple=True, metavar="ID",
              help="A submission to erase, in whichever form holds it (repeatable).")
@click.option("--submissions-file", metavar="PATH", type=click.Path(dir_okay=False),
              help="A file of submission ids to erase, one per line.")
@click.option("--gone-from-service", is_flag=True,
              help="With --account: erase the submissions an older backup holds that the newest verified backup "
                   "no longer has (deleted in Kizeo since), from every backup and every --to.")
@click.option("--apply", is_flag=True, help="Erase. Without it, only say what would be erased (dry run).")
@click.option("--audit", "audit_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also append each audit line (JSON) to FILE (each destination keeps its own).")
@click.option("--reference", metavar="TEXT",
              help="Your reference for this erasure (a ticket number), written in the audit lines.")
@click.pass_context
def forget(ctx: click.Context, destinations: tuple[str, ...], to_password_env: tuple[str, ...],
           to_password_file: tuple[str, ...], to_url_env: str | None, raw_options: tuple[str, ...], account: str | None,
           state_dir: str | None, user_id: str | None,
           only_personal: bool, submission_ids: tuple[str, ...], submissions_file: str | None, gone_from_service: bool,
           apply: bool, audit_file: str | None, reference: str | None) -> None:
    """Erase a person (--user ID) or submissions (--submission ID) from every destination given.

    \b
    A user: their user row, their group memberships and the submissions they made or
    received go; in submissions they only edited, the metadata naming them is emptied.
    --only-personal empties their personal columns everywhere instead. A dry run by default
    (counts per kind, never the data); --apply erases, in one transaction per database
    (files: their files and media removed, the aggregates rewritten). Each erasure writes an
    audit line (what kind, how much; never the data) in the destination: SQL table
    `erasures`, files `.exporter/erasures.jsonl`, remotes `.exporter-erasures.jsonl`, an
    archive `<archive>.erasures.jsonl` beside it (the archive written again without the data,
    verified, swapped in). A forget that is stopped is finished by running it again.

    \b
    --account NAME (with --state-dir and --identity-file/--identity-env) adds every
    backup of the account: each that holds the data is downloaded, decrypted, written
    again without it, verified, encrypted to the same recipients, stored under a new
    name and swapped in the index; the old one is removed after. Audit lines go to
    STATE_DIR/NAME/erasures.jsonl.

    \b
    Examples:
      exporter forget --to sqlite:///kizeo.db --to ./kizeo-files --user 104
      exporter forget --to postgresql+psycopg://etl@db/forms --to-password-env PGPASS \\
          --user 104 --apply --audit erasures.jsonl --reference GDPR-2026-017
      exporter forget --account acme --state-dir /var/lib/exporter \\
          --identity-file ~/backup.key --user 104 --apply
    """

    def go() -> None:
        from ..destplan import from_command_line
        from ..privacy.forget import Outcome, Request, describe, forget_destinations

        ids = tuple(dict.fromkeys([*submission_ids, *_ids_file(submissions_file)]))
        uid = user_id.strip() if user_id else None
        if gone_from_service and (account is None or uid is not None):
            raise ConfigError("--gone-from-service is for an account's backups (--account NAME), without --user")
        if not gone_from_service:  # checked before anything is read
            Request(user_id=uid, submission_ids=ids, only_personal=only_personal, reference=reference)
        if not destinations and not to_url_env and not account:
            raise ConfigError("no destination: give --to DEST (repeatable), --to-url-env NAME or --account NAME "
                              "(its backups)")
        takes_value = {name: not p.is_flag and not p.count for p in ctx.command.params
                       if isinstance(p, click.Option) for name in p.opts + p.secondary_opts}
        options, dests = from_command_line(ctx.meta.get("exporter.args", []), takes_value, destinations)
        quiet = getattr(ctx.obj, "quiet", False)

        def stage(text: str) -> None:  # progress: each destination's count or erasure can be long
            click.echo(f"{text}...", err=True)

        def said(outcome: Outcome) -> None:
            if not quiet and not apply:
                click.echo(f"{outcome.name}: would erase {describe(outcome.counts)}")

        with contextlib.ExitStack() as stack:
            backups = _backups(ctx, stack, account, state_dir, apply)
            erasers: list = []
            if backups is not None:
                from ..backup_forget import backup_erasers
                from ..backup_forget import gone_from_service as gone

                if gone_from_service:
                    found = gone(*backups)
                    if not quiet:
                        click.echo(f"{len(found)} submission(s) of older backups are gone from the newest one")
                    if not found and not ids:
                        return
                    ids = tuple(dict.fromkeys([*ids, *found]))
                erasers = backup_erasers(*backups)
            request = Request(user_id=uid, submission_ids=ids, only_personal=only_personal, reference=reference)
            outcomes = forget_destinations(dests, request, options=options, apply=apply, audit_file=audit_file,
                                           erasers=erasers, on_planned=said, on_stage=None if quiet else stage)
        if quiet:
            return
        if not apply:
            click.echo("dry run: nothing was changed (add --apply to erase)")
            return
        for o in outcomes:
            click.echo(f"{o.name}: erased {describe(o.counts)}")
        click.echo("audit: one line per destination in its own record (SQL table erasures, files "
                   ".exporter/erasures.jsonl, remotes .exporter-erasures.jsonl, archives "
                   "<archive>.erasures.jsonl beside them"
                   + (f", backups {state_dir}/{account}/erasures.jsonl" if account else "")
                   + ")" + (f" and in {audit_file}" if audit_file else ""))

    run_guarded(ctx, go)


def _backups(ctx: click.Context, stack: contextlib.ExitStack, account: str | None, state_dir: str | None,
             apply: bool) -> tuple[str, str, list] | None:
    """(state folder, account, the identities that decrypt its backups), the account's lock held in
    ``stack``, what a stopped forget left finished first (None without --account)."""
    if account is None:
        if identity_given(ctx):
            raise ConfigError("--identity-file/--identity-env decrypt an account's backups: give --account NAME too")
        if ctx.get_parameter_source("state_dir") is click.core.ParameterSource.COMMANDLINE:
            raise ConfigError("--state-dir holds an account's backups index: give --account NAME too")
        return None
    from ..backup_forget import recover
    from ..locks import AccountLock

    if not state_dir:
        raise ConfigError("--account needs --state-dir DIR (or $EXPORTER_STATE_DIR): where its backups index is")
    identities = identities_of(ctx)  # refused before anything is read
    stack.enter_context(AccountLock(state_dir, account, command="forget"))
    if apply:
        recover(state_dir, account)
    return state_dir, account, identities


COMMANDS = (forget,)
