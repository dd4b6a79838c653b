"""Where log lines go: stderr, one format, every registered secret masked (``SecretFilter``).
Set up by the command line and by each worker process of a parallel export."""
from __future__ import annotations

import logging
import sys

from .secrets import SecretFilter


class _Handler(logging.StreamHandler):
    """Ours, so that setting the level again replaces it instead of adding a second one."""


def setup_logging(level: int) -> None:
    handler = _Handler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _Handler):
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
