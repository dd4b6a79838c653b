"""Command line: ``exporter export | archive | verify | serve | demo | destinations``.

Exit codes: 0 success, 1 failure (one readable line on stderr), 2 usage error. Tracebacks only
with ``--debug``. The core never imports click; this module turns core errors into click ones.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
from pathlib import Path

import click

from . import __version__
from .errors import ConfigError, ExporterError, Interrupted, one_line
from .secrets import SecretFilter, mask

log = logging.getLogger("exporter")

DEFAULT_FORMATS = "json,csv"


# --------------------------------------------------------------------------------------------
# logging, errors
# --------------------------------------------------------------------------------------------


def _setup_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_exporter", False):
            root.removeHandler(h)
    handler._exporter = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


class _Ctx:
    def __init__(self, quiet: bool, verbose: bool, debug: bool):
        self.quiet, self.verbose, self.debug = quiet, verbose, debug


def _fail(e: BaseException, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    msg = mask(one_line(e))
    if isinstance(e, ConfigError):
        raise click.UsageError(msg)
    raise click.ClickException(msg)


def _interrupted(e: BaseException, debug: bool = False) -> None:
    """Report an interruption in one line and exit 128 + the signal (130 for Ctrl-C)."""
    if debug:
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    code = e.exit_code if isinstance(e, Interrupted) else 128 + signal.SIGINT
    click.echo(f"{one_line(e)}: rolled back; nothing was committed after the last completed batch", err=True)
    sys.exit(code)


def _run_guarded(ctx: click.Context, fn):
    debug = ctx.find_object(_Ctx).debug if ctx.find_object(_Ctx) else False
    try:
        return fn()
    except click.ClickException:
        raise
    except (KeyboardInterrupt, Interrupted) as e:
        _interrupted(e, debug)
    except ExporterError as e:
        _fail(e, debug)
    except Exception as e:  # noqa: BLE001 - an unexpected error still gets one line
        _fail(e, debug)


class _Commands(click.Group):
    """The command group. Command groups kept in modules of their own are named in ``LAZY``
    (name -> "module:attribute") and imported only when used (the hook for such groups)."""

    LAZY = {"backups": "exporter.cli_backups:backups", "jobs": "exporter.cli_jobs:jobs", "audit": "exporter.cli_jobs:audit",
            "worker": "exporter.cli_cluster:worker", "beat": "exporter.cli_cluster:beat"}

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx, name):
        if name in self.LAZY and name not in self.commands:
            import importlib

            module, _, attr = self.LAZY[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="exporter", message="%(prog)s %(version)s")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress, no summary.")
@click.option("-v", "--verbose", is_flag=True, help="Log each step (INFO).")
@click.option("--debug", is_flag=True, help="Log everything and show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: bool, debug: bool) -> None:
    """Take a whole Kizeo Forms account out: forms, submissions, sub-forms, media, users, groups and
    external lists, to files, SQL databases and remote storage.

    Secrets (tokens, passwords) are read from environment variables or files, never from the
    command line. Run `exporter demo` for a first look. --quiet, --verbose and --debug may also
    follow the command name.
    """
    _setup_logging(logging.DEBUG if debug else logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING)
    ctx.obj = _Ctx(quiet, verbose, debug)


# --------------------------------------------------------------------------------------------
# shared options
# --------------------------------------------------------------------------------------------


class _WorkersType(click.ParamType):
    """``--workers``: a number of parallel requests, or ``auto`` (adapted to the service, 1 to 16)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or str(value).strip().lower() == "auto":
            return value if isinstance(value, int) else "auto"
        try:
            n = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)
        if not 1 <= n <= 32:
            self.fail(f"{n} is not in the range 1<=x<=32 (or 'auto')", param, ctx)
        return n


def _account_parts(ctx, param, value: str | None) -> tuple[str, ...]:
    """``--skip``/``--refuse``: some of users, groups, lists."""
    if not value:
        return ()
    from exporter.connectors.kizeo.source import SKIPPABLE, parse_skip

    try:
        return tuple(sorted(parse_skip(value or "")))
    except ConfigError:
        raise click.BadParameter(f"{value!r}: use some of {','.join(SKIPPABLE)}", ctx, param) from None


def source_options(fn):
    opts = [
        click.option("--source", "-s", required=True, metavar="URL|ARCHIVE",
                     help="Web-service base URL (https://forms.kizeo.com/rest/v3) "
                          "or an account archive (directory or .zip)."),
        click.option("--token-env", metavar="NAME", help="Environment variable holding the API token."),
        click.option("--token-file", type=click.Path(dir_okay=False), metavar="PATH", help="File holding the API token."),
        click.option("--login-env", metavar="PREFIX",
                     help="Legacy POST /login with PREFIX_USER, PREFIX_PASSWORD and PREFIX_COMPANY "
                          "from the environment (renewed before expiry)."),
        click.option("--form", "forms", multiple=True, metavar="ID|NAME",
                     help="Only this form, by id or exact name (repeatable; see `exporter forms`). Default: every form."),
        click.option("--workers", type=_WorkersType(), default=4, show_default=True,
                     help="Parallel requests for submissions and media; 'auto' adapts them to the service "
                          "(more while throughput grows, halved on 429/503/timeouts; 1 to 16)."),
        click.option("--page-size", type=click.IntRange(1, 10000), default=100, show_default=True,
                     help="Records per page of --incremental unread (data/unread/{action}/N)."),
        click.option("--skip", callback=_account_parts, metavar="LIST",
                     help="Leave out account parts the token may not read: users,groups,lists (a group "
                          "leader's token is refused them; without --skip the run fails instead)."),
        click.option("--timezone", metavar="IANA",
                     help="Account time zone (e.g. Europe/Paris), recorded with the data; served times have no offset."),
        click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False),
                     help="CA bundle for TLS verification (verification is always on)."),
        click.option("--timeout", type=float, default=120.0, show_default=True, help="Read timeout per request, in seconds."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def document_options(fn):
    """Vendor documents, opt-in (``exporter export`` and ``exporter archive``)."""
    opts = [
        click.option("--vendor-pdf", is_flag=True,
                     help="Also store each submission's standard PDF as the service makes it (GET data/{id}/pdf)."),
        click.option("--vendor-exports", is_flag=True,
                     help="Also store each submission through every custom Word/Excel export of its form "
                          "(GET forms/{id}/exports, then data/{id}/exports/{export})."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def build_source(source: str, *, token_env=None, token_file=None, login_env=None, forms=(), workers=4,
                 timezone=None, ca_bundle=None, timeout=120.0, mode="full", action=None, overlap=300,
                 page_size=100, skip=(), check_deletions=False, vendor_pdf=False, vendor_exports=False):
    try:
        return _build_source(source, token_env=token_env, token_file=token_file, login_env=login_env, forms=forms,
                             workers=workers, timezone=timezone, ca_bundle=ca_bundle, timeout=timeout, mode=mode,
                             action=action, overlap=overlap, page_size=page_size, skip=skip,
                             check_deletions=check_deletions, vendor_pdf=vendor_pdf, vendor_exports=vendor_exports)
    except OSError as e:  # an archive that cannot be read (permissions, a vanished disk)
        from .errors import SourceError, os_error_text

        raise SourceError(os_error_text(e, f"read the source {source}")) from None


def _build_source(source: str, *, token_env, token_file, login_env, forms, workers, timezone, ca_bundle, timeout,
                  mode, action, overlap, page_size, skip, check_deletions=False, vendor_pdf=False, vendor_exports=False):
    if action and mode != "unread":
        raise ConfigError(f"--action {action} is for --incremental unread (this run is --incremental "
                          f"{'none' if mode == 'full' else mode})")
    if source.startswith(("http://", "https://")):
        from exporter.connectors.kizeo import build_web_source

        return build_web_source(source, token_env=token_env, token_file=token_file, login_env=login_env,
                                forms=list(forms), mode=mode, action=action, overlap_seconds=overlap,
                                workers=workers, timezone=timezone, ca_bundle=ca_bundle, timeout=timeout,
                                page_size=page_size, skip=skip, check_deletions=check_deletions,
                                vendor_pdf=vendor_pdf, vendor_exports=vendor_exports)
    if token_env or token_file or login_env:
        log.info("an archive source needs no token; ignoring the token options")
    if skip:
        raise ConfigError(f"--skip {','.join(sorted(skip))} is for the web service: an archive's users, groups "
                          "and lists are exported with it")
    from exporter.connectors.archive.source import ArchiveSource

    return ArchiveSource(source, forms=list(forms), mode=mode, overlap_seconds=overlap, check_deletions=check_deletions,
                         vendor_pdf=vendor_pdf, vendor_exports=vendor_exports)


def _progress(obj: _Ctx, source=None):
    from .progress import make_progress

    return make_progress(quiet=obj.quiet, total=getattr(source, "expected_submissions", None))


def _print_summary(obj: _Ctx, summary, sinks) -> None:
    if obj.quiet:
        return
    from .progress import format_summary

    click.echo(format_summary(summary, sinks))


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


class _OrderedCommand(click.Command):
    """Keeps the command's own arguments in their order (``ctx.meta["exporter.args"]``): which
    --to a --to-password-env / -o follows is lost once click has grouped each option's values."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["exporter.args"] = list(args)
        return super().parse_args(ctx, args)


@cli.command(cls=_OrderedCommand)
@source_options
@document_options
@click.option("--to", "destinations", multiple=True, metavar="DEST",
              help="Destination (repeatable): a directory, file:///dir, sqlite:///x.db, postgresql+psycopg2://..., "
                   "mysql+pymysql://..., mssql+pyodbc://..., access+pyodbc://..., ftp://, ftps://, sftp://, "
                   "dropbox:///path, sharepoint://..., archive:///path[.zip]. See `exporter destinations`. "
                   "Options may ride in the URL: file:///out?csv_bom=true. Required, unless --to-url-env is given.")
@click.option("--format", "formats", default=DEFAULT_FORMATS, show_default=True, metavar="LIST",
              help="File formats for file and remote destinations: json,csv,xlsx,xml,docx,pdf.")
@click.option("--incremental", type=click.Choice(["none", "cursor", "unread"]), default="none", show_default=True,
              help="none: everything; cursor: what changed since each destination's stored cursor "
                   "(by _update_time, with an overlap window); unread: the server's read markers for --action.")
@click.option("--action", metavar="NAME", help="Read-marker name for --incremental unread (one per consumer).")
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
                   "After a --to: for that destination only; before any --to: for every destination that reads it.")
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
@click.pass_context
def export(ctx, source, token_env, token_file, login_env, forms, workers, page_size, skip, timezone, ca_bundle,
           timeout, vendor_pdf, vendor_exports, destinations, formats, incremental, action, overlap, to_password_env,
           to_password_file, to_url_env, media_in_db, raw_options, batch_size, jobs, deletions, max_deletions, check_deletions):
    """Export an account (or some forms) to one or more destinations in one pass.

    \b
    Examples:
      KIZEO_TOKEN=... exporter export --source https://forms.kizeo.com/rest/v3 \\
          --token-env KIZEO_TOKEN --to ./out --to sqlite:///kizeo.db --format json,csv,xlsx
      exporter export --source account.zip --to postgresql+psycopg2://etl@db/forms --to-password-env PGPASS
    """

    def go():
        from .pipeline import new_run_id, run
        from .registry import create_sink
        from .sinks import RunContext
        from .validate import with_url_options

        mode = {"none": "full"}.get(incremental, incremental)
        if not destinations and not to_url_env:
            raise ConfigError("no destination: give --to DEST (repeatable) or --to-url-env NAME")
        if mode == "unread" and not action:
            raise ConfigError("--incremental unread needs --action NAME (the read-marker name)")
        if mode != "unread" and ctx.get_parameter_source("page_size") is not click.core.ParameterSource.DEFAULT:
            raise ConfigError(f"--page-size is for --incremental unread (this run is --incremental {incremental})")
        if check_deletions and mode == "full":
            raise ConfigError("--check-deletions is for --incremental cursor or unread (a full export always "
                              "sees deletions)")
        from .deletions import parse_policy

        parse_policy(deletions, max_deletions)  # a bad --max-deletions is refused before anything is created
        fmt = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
        options, dests = _plan_destinations(ctx, fmt, media_in_db)
        sinks = [create_sink(u, {**options, **own}) for u, own in dests]
        urls = [with_url_options(u, own) for u, own in dests]  # how worker processes rebuild them
        source_args = dict(source=source, token_env=token_env, token_file=token_file, login_env=login_env,
                           workers=workers, timezone=timezone, ca_bundle=ca_bundle, timeout=timeout, mode=mode,
                           action=action, overlap=overlap, page_size=page_size, skip=skip,
                           check_deletions=check_deletions, vendor_pdf=vendor_pdf, vendor_exports=vendor_exports)
        src = build_source(forms=_resolve_forms(forms, source_args), **source_args)
        rc = RunContext(run_id=new_run_id(), source=src.description, mode=mode, formats=fmt, options=options,
                        deletions=deletions, max_deletions=max_deletions)
        if jobs > 1:
            from .parallel import run_parallel

            summary = run_parallel(src, sinks, rc, jobs=jobs, source_args=source_args, urls=urls,
                                   batch_size=batch_size, progress=_progress(ctx.obj, src),
                                   log_level=logging.getLogger().level, debug=ctx.obj.debug)
        else:
            summary = run(src, sinks, rc, batch_size=batch_size, progress=_progress(ctx.obj, src))
        _print_summary(ctx.obj, summary, sinks)

    _run_guarded(ctx, go)


def _refuse_password_in_url(url: str) -> None:
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


# --------------------------------------------------------------------------------------------
# archive, verify
# --------------------------------------------------------------------------------------------


@cli.command()
@source_options
@document_options
@click.option("--out", required=True, type=click.Path(), help="Archive directory, or a .zip file.")
@click.option("--zip", "as_zip", is_flag=True, help="Write a single zip file (implied by a .zip name).")
@click.option("--overwrite", is_flag=True, help="Replace an existing archive at --out (refused without it).")
@click.pass_context
def archive(ctx, source, token_env, token_file, login_env, forms, workers, page_size, skip, timezone, ca_bundle,
            timeout, vendor_pdf, vendor_exports, out, as_zip, overwrite):
    """Write a complete account archive (manifest, JSON, media): a full snapshot that `verify`
    checks and that any command taking --source can replay offline."""

    def go():
        from exporter.connectors.archive.sink import ArchiveSink

        from .pipeline import new_run_id, run
        from .sinks import RunContext

        _refuse_existing(out, overwrite)
        source_args = dict(source=source, token_env=token_env, token_file=token_file, login_env=login_env,
                           workers=workers, timezone=timezone, ca_bundle=ca_bundle, timeout=timeout, skip=skip,
                           vendor_pdf=vendor_pdf, vendor_exports=vendor_exports)
        src = build_source(forms=_resolve_forms(forms, source_args), **source_args)
        sink = ArchiveSink(out, zip_output=True if as_zip else None)
        summary = run(src, [sink], RunContext(run_id=new_run_id(), source=src.description),
                      progress=_progress(ctx.obj, src))
        _print_summary(ctx.obj, summary, [sink])
        if not ctx.obj.quiet:
            click.echo(f"archive written: {sink.target}")

    _run_guarded(ctx, go)


@cli.command()
@click.argument("path", type=click.Path())
@click.pass_context
def verify(ctx, path):
    """Re-hash every file of an account archive and check the counts.

    Exit 0 only if everything matches; otherwise each difference is printed and the exit code is 1.
    """

    def go():
        from exporter.connectors.archive.reader import ArchiveReader
        from exporter.connectors.archive.verify import verify as verify_archive

        problems = verify_archive(path)
        if problems:
            for p in problems:
                click.echo(p, err=True)
            raise click.ClickException(f"{len(problems)} problem(s) found in {path}")
        if not ctx.obj.quiet:
            r = ArchiveReader(path)
            counts = r.manifest.get("counts", {})
            n = sum(1 for _ in r.iter_files())
            r.close()
            click.echo(f"OK: {n} files match their SHA-256; counts "
                       + ", ".join(f"{k}={v}" for k, v in counts.items()))

    _run_guarded(ctx, go)


# --------------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------------


@cli.command()
@click.option("--source", "-s", required=True, type=click.Path(exists=True), help="Account archive to serve.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--token-env", metavar="NAME", required=True, help="Environment variable holding the token clients must send.")
@click.option("--rate-limit-every", type=click.IntRange(0), default=0, help="Answer every Nth request with 429 + Retry-After.")
@click.option("--retry-after", type=float, default=1.0, show_default=True, help="Retry-After seconds sent with injected 429s.")
@click.option("--fail-every", type=click.IntRange(0), default=0, help="Answer every Nth request with 503.")
@click.option("--drop-every", type=click.IntRange(0), default=0, help="Drop the connection on every Nth request.")
@click.option("--latency", type=float, default=0.0, help="Seconds added to every answer.")
@click.option("--max-answer", type=click.IntRange(0), default=0,
              help="Answer 504 Gateway Timeout to a data/advanced search of more than N records (0: no limit).")
@click.option("--refuse", callback=_account_parts, metavar="LIST",
              help="Refuse the token these routes, as for a group leader's token: users,groups,lists.")
@click.pass_context
def serve(ctx, source, host, port, token_env, rate_limit_every, retry_after, fail_every, drop_every, latency,
          max_answer, refuse):
    """Serve an account archive with the REST v3 routes and shapes (a fake Kizeo Forms), with
    optional injected faults, so the whole tool can be tried and tested without an account."""

    def go():
        from exporter.testing.fake_server import FakeKizeoServer, Faults

        from .secrets import read_secret

        token = read_secret(env=token_env, what="token")
        faults = Faults(rate_limit_every=rate_limit_every, retry_after=retry_after, fail_503_every=fail_every,
                        drop_every=drop_every, latency=latency, max_answer=max_answer)
        server = FakeKizeoServer(source, token, host=host, port=port, faults=faults, refuse=refuse)
        try:
            click.echo(f"serving {source} at {server.base_url} (Ctrl-C to stop)", err=True)
            server.serve_forever()
        except (KeyboardInterrupt, Interrupted):  # Ctrl-C, SIGTERM: the way to stop a server
            pass
        finally:
            server.stop()

    _run_guarded(ctx, go)


# --------------------------------------------------------------------------------------------
# demo, destinations
# --------------------------------------------------------------------------------------------


def sample_data_path() -> Path:
    """The bundled sample archive: from a checkout, or from the installed package."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sample_data", here.parent / "sample_data"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise ConfigError("the bundled sample_data archive is missing from this installation")


@cli.command()
@click.option("--out", default="exporter-demo", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the demo output.")
@click.option("--format", "formats", default=None, metavar="LIST",
              help="File formats (default: every available format).")
@click.pass_context
def demo(ctx, out, formats):
    """Export the bundled sample account to SQLite and files, and print what was written where."""

    def go():
        from exporter.connectors.archive.source import ArchiveSource
        from exporter.connectors.files import FilesSink
        from exporter.formats.base import get_writer_class, known_formats

        from .pipeline import new_run_id, run
        from .registry import create_sink
        from .sinks import RunContext

        out_p = Path(out).resolve()
        fmt = tuple(f.strip() for f in formats.split(",")) if formats else tuple(known_formats())
        for f in fmt:  # a refused format creates nothing
            get_writer_class(f)
        src = ArchiveSource(sample_data_path())
        created = not out_p.exists()
        try:
            out_p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            from .errors import SinkError, os_error_text

            raise SinkError(os_error_text(e, "create the demo folder")) from None
        db = out_p / "demo.db"
        sinks = [create_sink(f"sqlite:///{db}", {}), FilesSink(out_p / "files")]
        try:
            summary = run(src, sinks, RunContext(run_id=new_run_id(), source=src.description, formats=fmt),
                          progress=_progress(ctx.obj, src))
        except BaseException:
            if created:  # the sinks removed what they made; the folder goes too when empty
                with contextlib.suppress(OSError):
                    out_p.rmdir()
            raise
        _print_summary(ctx.obj, summary, sinks)
        click.echo(f"\nSQLite database: {db}")
        import sqlite3

        with contextlib.closing(sqlite3.connect(db)) as con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            for t in tables:
                n = con.execute(f'SELECT COUNT(*) FROM "{t.replace(chr(34), chr(34) * 2)}"').fetchone()[0]
                click.echo(f"  {t:<40} {n:>6} rows")
        click.echo(f"  try: sqlite3 {db} 'SELECT * FROM \"{tables[0] if tables else ''}\" LIMIT 5'")
        files_root = out_p / "files"
        click.echo(f"\nFiles ({', '.join(fmt)}): {files_root}")
        for p in sorted(files_root.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                n = sum(1 for q in p.rglob("*") if q.is_file())
                click.echo(f"  {p.name}/{'':<{max(0, 38 - len(p.name))}} {n:>6} files")
            else:
                click.echo(f"  {p.name}")
        for form_dir in sorted((files_root / "forms").iterdir()) if (files_root / "forms").is_dir() else []:
            click.echo(f"  forms/{form_dir.name}/: " + ", ".join(sorted(
                q.name + ("/" if q.is_dir() else "") for q in form_dir.iterdir())))

    _run_guarded(ctx, go)


@cli.command()
def destinations():
    """List every destination kind with its URL form."""
    from .registry import SINKS

    width = max(len(k) for k in SINKS)
    for key, e in SINKS.items():
        click.echo(f"{key:<{width}}  {e.url_form:<60}  {e.description}")


# --------------------------------------------------------------------------------------------
# forms; global switches after the command name
# --------------------------------------------------------------------------------------------


@cli.command()
@source_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document (a list of forms) for scripts.")
@click.pass_context
def forms(ctx, source, token_env, token_file, login_env, forms, workers, page_size, skip, timezone, ca_bundle, timeout,
          as_json):
    """List the forms of an account or archive: id, name, class, submissions, last update.

    The submission count is blank when the source cannot tell it cheaply (the web service: no
    submission is downloaded to count them). --form limits the list (an id or an exact name).
    """

    def go():
        from . import forms as formsel

        src = build_source(source, token_env=token_env, token_file=token_file, login_env=login_env,
                           workers=workers, timezone=timezone, ca_bundle=ca_bundle, timeout=timeout, skip=skip)
        try:
            rows = formsel.list_forms(src)
        finally:
            src.close()
        if forms:
            keep = set(formsel.resolve(forms, rows))
            rows = [r for r in rows if r["id"] in keep]
        if as_json:
            import json

            click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
            return
        for line in formsel.table(rows):
            click.echo(line)

    _run_guarded(ctx, go)


def _resolve_forms(requested: tuple[str, ...], source_args: dict) -> tuple[str, ...]:
    """``--form`` values (ids or exact names) as form ids, checked against the source's forms
    before anything is created; nothing to ask when no --form is given."""
    if not requested:
        return ()
    from . import forms as formsel

    args = {k: v for k, v in source_args.items() if k in ("source", "token_env", "token_file", "login_env",
                                                          "workers", "timezone", "ca_bundle", "timeout", "skip")}
    lister = build_source(**args)
    try:
        return tuple(formsel.resolve(requested, formsel.list_forms(lister), lister.description))
    finally:
        lister.close()


def _refuse_existing(out: str, overwrite: bool) -> None:
    p = Path(out)
    if overwrite or not p.exists() or (p.is_dir() and not any(p.iterdir())):
        return
    raise ConfigError(f"{out} already exists: add --overwrite to replace it, or choose another --out")


def _plan_destinations(ctx: click.Context, fmt: tuple[str, ...], media_in_db: bool) -> tuple[dict, list[tuple[str, dict]]]:
    """(options for every destination, [(URL, its own options)]): see ``exporter.destplan``."""
    from .destplan import plan

    takes_value = {name: not p.is_flag and not p.count for p in ctx.command.params if isinstance(p, click.Option)
                   for name in p.opts + p.secondary_opts}
    for url in ctx.params["destinations"]:
        _refuse_password_in_url(url)
    return plan(ctx.meta.get("exporter.args", []), takes_value, ctx.params["destinations"], fmt,
                ctx.get_parameter_source("formats") is not click.core.ParameterSource.DEFAULT, media_in_db)


def _late_switch(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``exporter export ... --debug``: the global switches work after the command name too."""
    obj = ctx.find_object(_Ctx)
    if not value or obj is None:
        return
    setattr(obj, param.name, True)
    _setup_logging(logging.DEBUG if obj.debug else logging.INFO if obj.verbose else
                   logging.ERROR if obj.quiet else logging.WARNING)


def _add_global_switches(group: click.Group) -> None:
    for command in group.commands.values():
        command.params.extend([
            click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_late_switch,
                         help="Same as exporter --quiet (allowed after the command name)."),
            click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=_late_switch,
                         help="Same as exporter --verbose."),
            click.Option(["--debug"], is_flag=True, expose_value=False, callback=_late_switch,
                         help="Same as exporter --debug."),
        ])


_add_global_switches(cli)
run_guarded = _run_guarded  # for the command groups in modules of their own (_Commands.LAZY)


def main() -> None:
    from .interrupts import install

    install()  # this process is the CLI's: stop signals roll the run back (exporter.interrupts)
    try:
        cli(prog_name="exporter")
    except Interrupted as e:  # outside a command (while starting): still one line and 128 + signal
        _interrupted(e)


if __name__ == "__main__":  # pragma: no cover
    main()
