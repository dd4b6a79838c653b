"""The commands that read an account: ``export``, ``archive``, ``verify``, ``forms``. Each turns
its switches into a call of the Python API (``exporter.api``) and prints the outcome."""
from __future__ import annotations

import json
from typing import Any

import click

from .. import api
from .common import (
    check_summary_path,
    document_options,
    given_source_options,
    print_summary,
    progress,
    run_guarded,
    source_options,
    write_summary_json,
)
from .privacy import pseudonymise_options, spec_of


class OrderedCommand(click.Command):
    """Keeps the command's own arguments in their order (``ctx.meta["exporter.args"]``): which
    --to a --to-password-env / -o follows is lost once click has grouped each option's values."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["exporter.args"] = list(args)
        return super().parse_args(ctx, args)


@click.command(cls=OrderedCommand)
@source_options
@document_options
@click.option("--to", "destinations", multiple=True, metavar="DEST",
              help="Destination (repeatable): a directory, file:///dir, sqlite:///x.db, postgresql+psycopg://..., "
                   "mysql+pymysql://..., mssql+pyodbc://..., access+pyodbc://..., ftp://, ftps://, sftp://, "
                   "dropbox:///path, sharepoint://..., s3://bucket/prefix, azure://account/container/prefix, "
                   "archive:///path[.zip]. See `exporter destinations`. "
                   "Options may ride in the URL: file:///out?csv_bom=true. Required, unless --to-url-env is given.")
@click.option("--format", "formats", default=",".join(api.DEFAULT_FORMATS), show_default=True, metavar="LIST",
              help="File formats for file and remote destinations: json,csv,xlsx,xml,docx,pdf.")
@click.option("--incremental", type=click.Choice(["none", "cursor", "unread"]), default="none", show_default=True,
              help="none: everything; cursor: what was created or changed since each destination's stored cursor "
                   "(with an overlap window); unread: the server's read markers for --action.")
@click.option("--action", metavar="NAME", help="Read-marker name for --incremental unread (one per consumer).")
@click.option("--page-size", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="Records per page of --incremental unread (data/unread/{action}/N).")
@click.option("--overlap", type=click.IntRange(0), default=300, show_default=True,
              help="Seconds re-read before a stored cursor, so nothing on the boundary is missed.")
@click.option("--to-password-env", "to_password_env", multiple=True, metavar="NAME",
              help="Environment variable holding the password of the --to just before it (before any --to: of every "
                   "destination).")
@click.option("--to-password-file", "to_password_file", multiple=True, type=click.Path(dir_okay=False),
              help="File holding the password of the --to just before it (before any --to: of every destination).")
@click.option("--to-url-env", metavar="NAME",
              help="Environment variable holding a whole destination URL (password included); used as one more --to "
                   "(the --to-password-env/-o after it are its own).")
@click.option("--media-in-db", is_flag=True, help="SQL destinations: also store media bytes as BLOBs.")
@click.option("--option", "-o", "raw_options", multiple=True, metavar="KEY=VALUE",
              help="Destination or format option (repeatable), e.g. -o csv_delimiter=';' -o csv_bom=true -o known_hosts=PATH. "
                   "After a --to: for that destination only; before any --to: for every destination that reads it. "
                   "`exporter destinations --options` lists them.")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Submissions per batch (one transaction per batch in SQL). Default: 500.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes exporting forms side by side (a big form of an archive is shared "
                   "among them). Destinations that take parallel writers only (PostgreSQL, MariaDB/MySQL).")
@click.option("--deletions", type=click.Choice(["soft", "hard"]), default="soft", show_default=True,
              help="Submissions erased on the service: soft marks them (SQL deleted_at, files deleted.csv); "
                   "hard also removes their rows (sub-form and media rows too) or files.")
@click.option("--max-deletions", metavar="N|P%", default="10%", show_default=True,
              help="Refuse the run (nothing deleted, nothing committed) when a form would lose more "
                   "submissions than this: a count (50) or a percentage of the form (5%).")
@click.option("--check-deletions", is_flag=True,
              help="--incremental cursor|unread: also read each form's complete id list (data/all) to see "
                   "deletions (a full export always does).")
@click.option("--summary-json", type=click.Path(dir_okay=False), metavar="PATH",
              help="When the run succeeds, also write its summary (run id, counts, bytes, per destination) as JSON "
                   "to PATH, for a scheduler to read.")
@pseudonymise_options
@click.pass_context
def export(ctx: click.Context, **p: Any) -> None:
    """Export an account (or some forms) to one or more destinations in one pass.

    \b
    Examples:
      KIZEO_TOKEN=... exporter export --source https://forms.kizeo.com/rest/v3 \\
          --token-env KIZEO_TOKEN --to ./out --to sqlite:///kizeo.db --format json,csv,xlsx
      exporter export --source account.zip --to postgresql+psycopg://etl@db/forms --to-password-env PGPASS
    """

    def go() -> None:
        from ..destplan import from_command_line

        pseudonymise = spec_of(ctx)  # a bad SPEC or key is refused before anything is created
        if p["summary_json"]:
            check_summary_path(p["summary_json"])  # refused before anything is created
        takes_value = {name: not o.is_flag and not o.count for o in ctx.command.params if isinstance(o, click.Option)
                       for name in o.opts + o.secondary_opts}
        options, destinations = from_command_line(ctx.meta.get("exporter.args", []), takes_value, p["destinations"])
        if p["media_in_db"]:
            options["media_in_db"] = True
        formats_given = ctx.get_parameter_source("formats") is not click.core.ParameterSource.DEFAULT

        def given(name: str) -> Any:  # None: left to its default, which the API knows
            return None if ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT else p[name]

        summary = api.export(
            p["source"], destinations, formats=p["formats"] if formats_given else None, options=options,
            source_options=given_source_options(ctx), forms=p["forms"], incremental=p["incremental"],
            action=p["action"], overlap=given("overlap"), check_deletions=p["check_deletions"],
            deletions=given("deletions"), max_deletions=given("max_deletions"), batch_size=p["batch_size"],
            jobs=p["jobs"], progress=progress(ctx), pseudonymise=pseudonymise)
        if p["summary_json"]:
            write_summary_json(p["summary_json"], summary)
        print_summary(ctx, summary)

    run_guarded(ctx, go)


@click.command()
@source_options
@document_options
@click.option("--out", required=True, type=click.Path(), help="Archive directory, or a .zip file.")
@click.option("--zip", "as_zip", is_flag=True, help="Write a single zip file (implied by a .zip name).")
@click.option("--overwrite", is_flag=True, help="Replace an existing archive at --out (refused without it).")
@click.pass_context
def archive(ctx: click.Context, **p: Any) -> None:
    """Write a complete account archive (manifest, JSON, media): a full snapshot that `verify`
    checks and that any command taking --source can replay offline."""

    def go() -> None:
        summary = api.archive(p["source"], p["out"], source_options=given_source_options(ctx), forms=p["forms"],
                              zip=True if p["as_zip"] else None, overwrite=p["overwrite"], progress=progress(ctx))
        print_summary(ctx, summary)
        if not ctx.obj.quiet:
            click.echo(f"archive written: {p['out']}")

    run_guarded(ctx, go)


@click.command()
@click.argument("path", type=click.Path())
@click.pass_context
def verify(ctx: click.Context, path: str) -> None:
    """Re-hash every file of an account archive and check the counts.

    Exit 0 only if everything matches; otherwise each difference is printed and the exit code is 1.
    """

    def go() -> None:
        result = api.verify(path)
        if not result.ok:
            for problem in result.problems:
                click.echo(problem, err=True)
            raise click.ClickException(f"{len(result.problems)} problem(s) found in {path}")
        if not ctx.obj.quiet:
            click.echo(f"OK: {result.files} files match their SHA-256; counts "
                       + ", ".join(f"{k}={v}" for k, v in result.counts.items()))

    run_guarded(ctx, go)


@click.command()
@source_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document (a list of forms) for scripts.")
@click.pass_context
def forms(ctx: click.Context, **p: Any) -> None:
    """List the forms of an account or archive: id, name, class, submissions, last update.

    The submission count is blank when the source cannot tell it cheaply (the web service: no
    submission is downloaded to count them). --form limits the list (an id or an exact name).
    """

    def go() -> None:
        from .. import forms as formsel

        rows = api.list_forms(p["source"], source_options=given_source_options(ctx))
        if p["forms"]:
            keep = set(formsel.resolve(p["forms"], rows))
            rows = [r for r in rows if r["id"] in keep]
        if p["as_json"]:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
            return
        for line in formsel.table(rows):
            click.echo(line)

    run_guarded(ctx, go)


COMMANDS = (export, archive, verify, forms)
