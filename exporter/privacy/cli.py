"""The command line of privacy: ``export --pseudonymise ...`` and ``exporter forget``.

``pseudonymise_options`` adds the export options (their values wait in ``ctx.meta`` until
``spec_of(ctx)`` reads them, so the export command's signature does not change); ``check_run``
checks the spec against the run's source and destinations before anything is created.
``make_forget(guard, command_class)`` builds the ``forget`` command with the main CLI's error
handling (``guard``) and its ordered-arguments command class (which ``--to`` a ``-o`` follows).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import click

from exporter.errors import ConfigError

log = logging.getLogger("exporter.privacy")

_META = "exporter.privacy"


def _keep(ctx: click.Context, param: click.Parameter, value):
    ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def pseudonymise_options(fn):
    """The ``--pseudonymise*`` options of ``export`` (read back with ``spec_of``)."""
    opts = [
        click.option("--pseudonymise", "pseudonymise", multiple=True, metavar="SPEC", expose_value=False,
                     callback=_keep,
                     help="Pseudonymise on the way out (repeatable, or rules separated by commas): "
                          "field:NAME=hmac|drop, type:TYPE=hmac|drop|round:N|round:month, users=hmac|drop, "
                          "user:login|names|email|phone|refs=hmac|drop. Every destination gets the same "
                          "result; an archive keeps the data as served unless --pseudonymise-archive. "
                          "See README 'Privacy'."),
        click.option("--pseudonymise-key-env", "pseudonymise_key_env", metavar="NAME", expose_value=False,
                     callback=_keep, help="Environment variable holding the hmac key (16 characters or more)."),
        click.option("--pseudonymise-key-file", "pseudonymise_key_file", metavar="PATH", expose_value=False,
                     callback=_keep, type=click.Path(dir_okay=False), help="File holding the hmac key."),
        click.option("--pseudonymise-archive", "pseudonymise_archive", is_flag=True, expose_value=False,
                     callback=_keep, help="Pseudonymise the archive destination too (by default it keeps "
                                          "the data exactly as served)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def spec_of(ctx: click.Context):
    """The ``PseudonymiseSpec`` of the command line (None without ``--pseudonymise``); a bad one
    is a ConfigError, raised before anything is created."""
    from .spec import parse_spec

    given = ctx.meta.get(_META, {})
    spec = parse_spec(given.get("pseudonymise") or (), key_env=given.get("pseudonymise_key_env"),
                      key_file=given.get("pseudonymise_key_file"), archive=bool(given.get("pseudonymise_archive")))
    if spec is not None:
        spec.key()  # a missing, unreadable or short key is refused now
    return spec


def check_run(spec, source, sinks: Iterable) -> None:
    """Before anything is created: ``field:`` rules against the definitions of the forms the run
    exports (``spec.check_forms``), ``--pseudonymise-archive`` against the destinations. The
    source is closed when the run is refused."""
    if spec is None:
        return
    try:
        from .spec import check_forms

        archives = [s for s in sinks if getattr(s.capabilities, "as_served", False)]
        if spec.archive and not archives:
            raise ConfigError("--pseudonymise-archive: this run has no archive destination (archive:///path)")
        if any(r.selector == "field" for r in spec.rules):
            check_forms(spec, _definitions(source))
    except BaseException:
        source.close()
        raise
    for s in archives if not spec.archive else ():
        log.warning("%s keeps the data as served, not pseudonymised (add --pseudonymise-archive to "
                    "pseudonymise it too)", s.name)


def _definitions(source):
    """The definitions of the forms a source exports (an archive's files, or the web service's
    ``GET /forms/{id}``), for the checks made before the run."""
    from exporter.records import parse_form

    reader = getattr(source, "reader", None)
    for fid in source.form_ids():
        yield parse_form(reader.form_raw(fid) if reader is not None else source.client.get_form(fid))


# --------------------------------------------------------------------------------------------
# exporter forget
# --------------------------------------------------------------------------------------------


def _ids_file(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        text = Path(path).read_text("utf-8")
    except OSError as e:
        raise ConfigError(f"--submissions-file {path}: {e.strerror or e}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def make_forget(guard, command_class: type[click.Command]) -> click.Command:
    """The ``forget`` command; ``guard(ctx, fn)`` runs ``fn`` the way every command does (one
    line per error, exit codes), ``command_class`` keeps the arguments' order (``destplan``)."""

    @click.command("forget", cls=command_class)
    @click.option("--to", "destinations", multiple=True, metavar="DEST",
                  help="Destination to erase from (repeatable), as given to export: a directory, sqlite:///x.db, "
                       "postgresql+psycopg2://..., mysql+pymysql://...")
    @click.option("--to-password-env", "to_password_env", multiple=True, metavar="NAME",
                  help="Environment variable holding the password of the --to just before it.")
    @click.option("--to-password-file", "to_password_file", multiple=True, type=click.Path(dir_okay=False),
                  help="File holding the password of the --to just before it.")
    @click.option("--to-url-env", metavar="NAME", help="Environment variable holding a whole destination URL.")
    @click.option("--option", "-o", "raw_options", multiple=True, metavar="KEY=VALUE",
                  help="Destination option, as for export (e.g. -o schema=kizeo, -o media_dir=DIR).")
    @click.option("--user", "user_id", metavar="ID", help="The user to erase (their id, as in users.user_id).")
    @click.option("--only-personal", is_flag=True,
                  help="With --user: empty only their personal columns (login, names, email, phone, references) "
                       "everywhere; their submissions and memberships stay.")
    @click.option("--submission", "submission_ids", multiple=True, metavar="ID",
                  help="A submission to erase, in whichever form holds it (repeatable).")
    @click.option("--submissions-file", metavar="PATH", type=click.Path(dir_okay=False),
                  help="A file of submission ids to erase, one per line.")
    @click.option("--apply", is_flag=True, help="Erase. Without it, only say what would be erased (dry run).")
    @click.option("--audit", "audit_file", metavar="FILE", type=click.Path(dir_okay=False),
                  help="Also append each audit line (JSON) to FILE (each destination keeps its own).")
    @click.option("--reference", metavar="TEXT",
                  help="Your reference for this erasure (a ticket number), written in the audit lines.")
    @click.pass_context
    def forget(ctx, destinations, to_password_env, to_password_file, to_url_env, raw_options, user_id, only_personal,
               submission_ids, submissions_file, apply, audit_file, reference):
        """Erase a person (--user ID) or submissions (--submission ID) from every destination given.

        \b
        A user: their user row, their group memberships and the submissions they made or
        received go; in submissions they only edited, the metadata naming them is emptied.
        --only-personal empties their personal columns everywhere instead. A dry run by default
        (counts per kind, never the data); --apply erases, in one transaction per database
        (files: their files and media removed, the aggregates rewritten). Each erasure writes an
        audit line (what kind, how much; never the data) in the destination: SQL table
        `erasures`, files `.exporter/erasures.jsonl`. A forget that is stopped is finished by
        running it again.

        \b
        Examples:
          exporter forget --to sqlite:///kizeo.db --to ./kizeo-files --user 104
          exporter forget --to postgresql+psycopg2://etl@db/forms --to-password-env PGPASS \\
              --user 104 --apply --audit erasures.jsonl --reference GDPR-2026-017
        """

        def go():
            from exporter.destplan import plan
            from exporter.registry import create_sink

            from .forget import Request, describe, forget

            ids = tuple(dict.fromkeys([*submission_ids, *_ids_file(submissions_file)]))
            request = Request(user_id=user_id.strip() if user_id else None, submission_ids=ids,
                              only_personal=only_personal, reference=reference)
            if not destinations and not to_url_env:
                raise ConfigError("no destination: give --to DEST (repeatable) or --to-url-env NAME")
            takes_value = {name: not p.is_flag and not p.count for p in ctx.command.params
                           if isinstance(p, click.Option) for name in p.opts + p.secondary_opts}
            options, dests = plan(ctx.meta.get("exporter.args", []), takes_value, destinations, ("json",), False,
                                  False)
            sinks = [create_sink(u, {**options, **own}) for u, own in dests]
            quiet = getattr(ctx.obj, "quiet", False)
            verb = "erase" if apply else "would erase"

            def said(outcome) -> None:
                if not quiet and not apply:
                    click.echo(f"{outcome.name}: {verb} {describe(outcome.counts)}")

            outcomes = forget(sinks, request, apply=apply, audit_file=audit_file, on_planned=said)
            if quiet:
                return
            if not apply:
                click.echo("dry run: nothing was changed (add --apply to erase)")
                return
            for o in outcomes:
                click.echo(f"{o.name}: erased {describe(o.counts)}")
            click.echo("audit: one line per destination in its own record (SQL table erasures, files "
                       ".exporter/erasures.jsonl)" + (f" and in {audit_file}" if audit_file else ""))

        guard(ctx, go)

    return forget
