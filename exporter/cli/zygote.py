"""The zygote process (``exporter.zygote``): ``python -c 'from exporter.cli.zygote import main;
main()' FD``. It serves its owner until the owner leaves; each child it forks becomes an account's
process and runs its command as ``python -m exporter ARGS`` does.

This is the main of a process that only this project starts (never a host's): after each round of
imports it freezes what it holds out of the collector's way (``gc.freeze``, the remedy Python's
documentation gives for forking without exec), so that a child's collections neither walk nor
copy the zygote's objects: about 0.05 s of CPU less per account, and pages that stay shared.
"""
from __future__ import annotations

import gc
import sys

from ..zygote import become, serve
from . import main as cli_main


def _freeze() -> None:
    gc.collect()
    gc.freeze()


def main() -> None:
    conn = serve(int(sys.argv[1]), after_imports=_freeze)
    if conn is not None:
        cli_main(become(conn))
