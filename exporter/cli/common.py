"""What every command shares: the global switches' state, core errors turned into click's (one
line, exit 1; a ``ConfigError`` is a usage error, exit 2), the source options and the progress
display. The core never imports click; only this package does."""
from __future__ import annotations

import logging
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

from ..errors import ConfigError, ExporterError, Interrupted, one_line
from ..logs import setup_logging
from ..secrets import mask

if TYPE_CHECKING:
    from ..pipeline import Progress, RunSummary

#: a command function, as click's decorators take and give it back
F = TypeVar("F", bound=Callable[..., Any])


class Ctx:
    """The global switches (``--quiet``, ``--verbose``, ``--debug``), before or after the command."""

    def __init__(self, quiet: bool, verbose: bool, debug: bool):
        self.quiet, self.verbose, self.debug = quiet, verbose, debug

    def log_level(self) -> int:
        return logging.DEBUG if self.debug else logging.INFO if self.verbose else logging.ERROR if self.quiet \
            else logging.WARNING

    def apply(self) -> None:
        setup_logging(self.log_level())


# ---- errors ----------------------------------------------------------------------------------------

def _fail(e: BaseException, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    msg = mask(one_line(e))
    if isinstance(e, ConfigError):
        raise click.UsageError(msg)
    raise click.ClickException(msg)


def interrupted(e: BaseException, debug: bool = False) -> None:
    """Report an interruption in one line and exit 128 + the signal (130 for Ctrl-C)."""
    if debug:
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    code = e.exit_code if isinstance(e, Interrupted) else 128 + signal.SIGINT
    click.echo(f"{one_line(e)}: rolled back; nothing was committed after the last completed batch", err=True)
    sys.exit(code)


def run_guarded(ctx: click.Context, fn: Callable[[], None]) -> None:
    """Run a command's work; any error is one line (a traceback too with --debug)."""
    obj = ctx.find_object(Ctx)
    debug = obj.debug if obj else False
    try:
        fn()
    except click.ClickException:
        raise
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted(e, debug)
    except ExporterError as e:
        _fail(e, debug)
    except Exception as e:  # noqa: BLE001 - an unexpected error still gets one line
        _fail(e, debug)


# ---- the source options ------------------------------------------------------------------------------

class WorkersType(click.ParamType):
    """``--workers``: a number of parallel requests, or ``auto`` (adapted to the service, 1 to 16)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) or str(value).strip().lower() == "auto":
            return value if isinstance(value, int) else "auto"
        try:
            n = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)
        if not 1 <= n <= 32:
            self.fail(f"{n} is not in the range 1<=x<=32 (or 'auto')", param, ctx)
        return n


def account_parts(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    """``--skip``/``--refuse``: some of users, groups, lists."""
    if not value:
        return ()
    from exporter.connectors.kizeo.source import SKIPPABLE, parse_skip

    try:
        return tuple(sorted(parse_skip(value or "")))
    except ConfigError:
        raise click.BadParameter(f"{value!r}: use some of {','.join(SKIPPABLE)}", ctx, param) from None


#: the source's options (``exporter.connectors.catalog``), each a switch of its own (``--page-size``
#: only on ``export``, the one command with ``--incremental unread``)
SOURCE_SWITCHES = ("token_env", "token_file", "login_env", "workers", "page_size", "skip", "timezone", "ca_bundle",
                   "timeout", "vendor_pdf", "vendor_exports")


def source_options(fn: F) -> F:
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
        click.option("--workers", type=WorkersType(), default=4, show_default=True,
                     help="Parallel requests for submissions and media; 'auto' adapts them to the service "
                          "(more while throughput grows, halved on 429/503/timeouts; 1 to 16)."),
        click.option("--skip", callback=account_parts, metavar="LIST",
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


def document_options(fn: F) -> F:
    """Vendor documents, opt-in (``exporter export`` and ``exporter archive``): source options."""
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


def given_source_options(ctx: click.Context) -> dict:
    """The source options given on the command line (a default is the source's own), as the API
    takes them (``source_options``)."""
    default = click.core.ParameterSource.DEFAULT
    return {k: ctx.params[k] for k in SOURCE_SWITCHES
            if ctx.params.get(k) not in (None, ()) and ctx.get_parameter_source(k) is not default}


# ---- progress and summary ----------------------------------------------------------------------------

def progress(ctx: click.Context) -> Progress:
    from ..progress import make_progress

    return make_progress(quiet=ctx.obj.quiet)


def check_summary_path(path: str) -> None:
    """``--summary-json PATH`` can be written: not a folder, and its folder (or the nearest one
    that exists, where the missing ones will be made) takes files; else a ConfigError."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--summary-json {path}: cannot be written there ({folder} is not a writable folder)")


def write_summary_json(path: str, summary: RunSummary) -> None:
    """``--summary-json``: the run's summary as one JSON object, written atomically."""
    import dataclasses
    import json

    from ..errors import os_error_text
    from ..fsutil import atomic_write

    try:
        with atomic_write(path, "w", encoding="utf-8") as fh:
            json.dump(dataclasses.asdict(summary), fh, indent=1, sort_keys=True)
    except OSError as e:
        raise click.ClickException(f"the run {summary.run_id} is committed, but its summary was not written: "
                                   f"{os_error_text(e, 'write --summary-json')}") from None


def print_summary(ctx: click.Context, summary: RunSummary) -> None:
    if ctx.obj.quiet:
        return
    from ..progress import format_summary

    click.echo(format_summary(summary))
