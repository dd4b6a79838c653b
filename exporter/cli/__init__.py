"""Command line: ``exporter export | archive | verify | forms | serve | demo | destinations``.

A thin layer over the Python API (``exporter.api``): each command turns its switches into an API
call and prints the outcome. Exit codes: 0 success, 1 failure (one readable line on stderr), 2
usage error. Tracebacks only with ``--debug``. The core never imports click; this package turns
core errors into click ones (``common``). Commands by group: ``run`` (what reads an account),
``tools`` (the fake service, the demo, the registry's listing), ``backups`` (the command group
``exporter backups ...``), ``jobs`` (the command groups ``exporter jobs ...`` and ``exporter audit ...``), ``cluster``
(``exporter worker`` and ``exporter beat``, Celery's side of a jobs file).
"""
from __future__ import annotations

import os
import sys

import click

from .. import __version__
from ..errors import Interrupted, help_hint
from . import backups, cluster, forget, jobs, run, tools
from .common import Ctx, interrupted


class _Cli(click.Group):
    """The top command. Its ``invoke`` returns nothing, so that ``main`` tells a command's normal
    end (None) from an exit code (``--help``, ``--version``: click returns the code)."""

    def invoke(self, ctx: click.Context) -> None:
        super().invoke(ctx)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    ctx.obj = Ctx(quiet, verbose, debug)
    ctx.obj.apply()


def _late_switch(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``exporter export ... --debug``: the global switches work after the command name too."""
    obj = ctx.find_object(Ctx)
    if not value or obj is None:
        return
    setattr(obj, param.name, True)
    obj.apply()


def _global_switches() -> list[click.Option]:
    return [
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_late_switch,
                     help="Same as exporter --quiet (allowed after the command name)."),
        click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=_late_switch,
                     help="Same as exporter --verbose."),
        click.Option(["--debug"], is_flag=True, expose_value=False, callback=_late_switch,
                     help="Same as exporter --debug."),
    ]


GROUPS = (backups.backups, jobs.jobs, jobs.audit)
COMMANDS = (*run.COMMANDS, *tools.COMMANDS, *forget.COMMANDS, *cluster.COMMANDS)
for _command in (*COMMANDS, *(c for g in GROUPS for c in g.commands.values())):
    _command.params.extend(_global_switches())
for _command in (*COMMANDS, *GROUPS):
    cli.add_command(_command)


def main(args: list[str] | None = None) -> None:
    """The command line, with ``args`` (default: this process's arguments). Errors are one line:
    click's usage errors too (``Error: ...`` and where the help is, without the usage block)."""
    from ..interrupts import install

    install()  # this process is the CLI's: stop signals roll the run back (exporter.interrupts)
    try:
        code = cli.main(args=args, prog_name="exporter", standalone_mode=False)
    except Interrupted as e:  # outside a command (while starting): still one line and 128 + signal
        interrupted(e)
    except click.exceptions.NoArgsIsHelpError as e:  # a bare `exporter` or group: its help
        e.show()
        sys.exit(e.exit_code)
    except click.UsageError as e:
        where = help_hint(e.ctx.command_path) if e.ctx is not None else ""
        click.echo(f"Error: {e.format_message()}{where}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:  # Ctrl-C or end of input at a prompt
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except BrokenPipeError:  # `exporter ... | head`: the reader left; nothing to report
        # what Python's documentation advises (signal, "Note on SIGPIPE"): the interpreter's last
        # flush of stdout at exit goes nowhere instead of failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    sys.exit(code or 0)
