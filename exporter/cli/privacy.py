"""``export --pseudonymise ...`` (``exporter.privacy``): ``pseudonymise_options`` adds the
options to a command; their values wait in ``ctx.meta`` until ``spec_of(ctx)`` reads them, so the
command's signature does not change."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .common import F

if TYPE_CHECKING:
    from ..privacy.spec import PseudonymiseSpec

_META = "exporter.privacy"


def _keep(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def pseudonymise_options(fn: F) -> F:
    """The ``--pseudonymise*`` options of ``export`` (read back with ``spec_of``)."""
    opts = [
        click.option("--pseudonymise", "pseudonymise", multiple=True, metavar="SPEC", expose_value=False,
                     callback=_keep,
                     help="Pseudonymise on the way out (repeatable, or rules separated by commas): "
                          "field:NAME=hmac|drop, type:TYPE=hmac|drop|round:N|round:month, users=hmac|drop, "
                          "user:login|names|email|phone|refs=hmac|drop. Every destination gets the same "
                          "result; an archive keeps the data as served unless --pseudonymise-archive. "
                          "See docs/privacy.md."),
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


def spec_of(ctx: click.Context) -> PseudonymiseSpec | None:
    """The ``PseudonymiseSpec`` of the command line (None without ``--pseudonymise``); a bad one
    is a ConfigError, raised before anything is created."""
    given = ctx.meta.get(_META, {})
    if not any(given.get(k) for k in ("pseudonymise", "pseudonymise_key_env", "pseudonymise_key_file",
                                      "pseudonymise_archive")):
        return None  # none of them given: what parse_spec says, without importing the privacy modules
    from ..privacy.spec import parse_spec

    spec = parse_spec(given.get("pseudonymise") or (), key_env=given.get("pseudonymise_key_env"),
                      key_file=given.get("pseudonymise_key_file"), archive=bool(given.get("pseudonymise_archive")))
    if spec is not None:
        spec.key()  # a missing, unreadable or short key is refused now
    return spec
