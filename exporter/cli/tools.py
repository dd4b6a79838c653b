"""The commands around an export: ``serve`` (the fake service), ``demo`` (the bundled sample
account exported to SQLite and files) and ``destinations`` (what the registry holds)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from .. import api
from ..errors import ConfigError, Interrupted
from .common import account_parts, print_summary, progress, run_guarded


@click.command()
@click.option("--source", "-s", required=True, type=click.Path(exists=True), help="Account archive to serve.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0: any free port, printed at start).")
@click.option("--token-env", metavar="NAME", required=True, help="Environment variable holding the token clients must send.")
@click.option("--rate-limit-every", type=click.IntRange(0), default=0, help="Answer every Nth request with 429 + Retry-After.")
@click.option("--retry-after", type=float, default=1.0, show_default=True, help="Retry-After seconds sent with injected 429s.")
@click.option("--fail-every", type=click.IntRange(0), default=0, help="Answer every Nth request with 503.")
@click.option("--drop-every", type=click.IntRange(0), default=0, help="Drop the connection on every Nth request.")
@click.option("--latency", type=float, default=0.0, help="Seconds added to every answer.")
@click.option("--max-answer", type=click.IntRange(0), default=0,
              help="Answer 504 Gateway Timeout to a data/advanced search of more than N records (0: no limit).")
@click.option("--refuse", callback=account_parts, metavar="LIST",
              help="Refuse the token these routes, as for a group leader's token: users,groups,lists.")
@click.pass_context
def serve(ctx: click.Context, **p: Any) -> None:
    """Serve an account archive with the REST v3 routes and shapes (a fake Kizeo Forms), with
    optional injected faults, so the whole tool can be tried and tested without an account."""

    def go() -> None:
        from exporter.testing.fake_server import FakeKizeoServer, Faults

        from ..secrets import read_secret

        token = read_secret(env=p["token_env"], what="token")
        faults = Faults(rate_limit_every=p["rate_limit_every"], retry_after=p["retry_after"],
                        fail_503_every=p["fail_every"], drop_every=p["drop_every"], latency=p["latency"],
                        max_answer=p["max_answer"])
        server = FakeKizeoServer(p["source"], token, host=p["host"], port=p["port"], faults=faults, refuse=p["refuse"])
        try:
            click.echo(f"serving {p['source']} at {server.base_url} (Ctrl-C to stop)", err=True)
            server.serve_forever()
        except (KeyboardInterrupt, Interrupted):  # Ctrl-C, SIGTERM: the way to stop a server
            pass
        finally:
            server.stop()

    run_guarded(ctx, go)


def sample_data_path() -> Path:
    """The bundled sample archive: from a checkout, or from the installed package."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "sample_data", package.parent / "sample_data"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise ConfigError("the bundled sample_data archive is missing from this installation")


@click.command()
@click.option("--out", default="exporter-demo", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the demo output.")
@click.option("--format", "formats", default=None, metavar="LIST",
              help="File formats (default: every available format).")
@click.pass_context
def demo(ctx: click.Context, out: str, formats: str | None) -> None:
    """Export the bundled sample account to SQLite and files, and print what was written where
    (nothing with --quiet)."""

    def go() -> None:
        from exporter.formats.base import get_writer_class, known_formats

        out_p = Path(out).resolve()
        fmt = tuple(f.strip() for f in formats.split(",")) if formats else tuple(known_formats())
        for f in fmt:  # a refused format creates nothing
            get_writer_class(f)
        created = not out_p.exists()
        try:
            out_p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            from ..errors import SinkError, os_error_text

            raise SinkError(os_error_text(e, "create the demo folder")) from None
        db, files_root = out_p / "demo.db", out_p / "files"
        try:
            summary = api.export(sample_data_path(), [f"sqlite:///{db}", str(files_root)], formats=fmt,
                                 progress=progress(ctx))
        except BaseException:
            if created:  # the sinks removed what they made; the folder goes too when empty
                with contextlib.suppress(OSError):
                    out_p.rmdir()
            raise
        print_summary(ctx, summary)
        if not ctx.obj.quiet:  # -q: only errors, as every command
            _show_database(db)
            _show_files(files_root, fmt)

    run_guarded(ctx, go)


def _show_database(db: Path) -> None:
    import sqlite3  # (the demo's only: not imported by every command)

    click.echo(f"\nSQLite database: {db}")
    with contextlib.closing(sqlite3.connect(db)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        for t in tables:
            n = con.execute(f'SELECT COUNT(*) FROM "{t.replace(chr(34), chr(34) * 2)}"').fetchone()[0]
            click.echo(f"  {t:<40} {n:>6} rows")
    click.echo(f"  try: sqlite3 {db} 'SELECT * FROM \"{tables[0] if tables else ''}\" LIMIT 5'")


def _show_files(files_root: Path, fmt: tuple[str, ...]) -> None:
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


@click.command()
@click.option("--options", "with_options", is_flag=True,
              help="Also list each destination's, format's and source's options: name, type, default, secret or "
                   "not, what it does.")
def destinations(with_options: bool) -> None:
    """List every destination kind with its URL form (and, with --options, every option)."""
    from ..docs import options_lines
    from ..registry import FORMATS, SINKS, SOURCES, own_options

    sinks = SINKS.all()
    width = max(len(k) for k in sinks)
    for key, e in sinks.items():
        click.echo(f"{key:<{width}}  {e.url_form:<60}  {e.description}")
        if with_options:
            for line in options_lines(own_options(e)):
                click.echo("    " + line)
            if e.formats:
                click.echo("    (and the options of the formats it writes)")
    if not with_options:
        return
    for title, plugins in (("formats", FORMATS.all()), ("sources", SOURCES.all())):
        click.echo(f"\n{title}:")
        for key, plugin in plugins.items():
            click.echo(f"{key:<{width}}  {plugin.description}")
            for line in options_lines(plugin.options):
                click.echo("    " + line)


COMMANDS = (serve, demo, destinations)
