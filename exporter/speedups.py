"""The optional C module ``exporter._speedups`` (exporter/_speedups.c), or None.

It holds C versions of hot loops whose pure-Python versions stay the reference (the tests compare
both). ``pip install`` builds it when a C compiler is at hand and goes on without it otherwise.
``EXPORTER_PURE_PYTHON=1`` in the environment makes the exporter ignore it (the Python versions
run: same output, slower). ``available()`` tells which is in use (``exporter --version``).
"""
from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("EXPORTER_PURE_PYTHON", "").strip() not in ("", "0"):
        return None
    try:
        from exporter import _speedups as mod
    except ImportError:
        return None
    return mod


_speedups = _load()


def available() -> bool:
    return _speedups is not None
