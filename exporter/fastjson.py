"""JSON decoding on the hot path: orjson when it is installed, the standard library otherwise.

orjson is stricter than ``json`` (no ``NaN``, no lone surrogates), so whatever it refuses is
handed to ``json.loads``. It also reads an integer beyond 64 bits as a float (precision lost):
a document holding a run of 19 or more digits anywhere goes to ``json.loads`` too. The result is
always what ``json.loads`` gives, only faster (measured in docs/benchmarks.md), and an invalid
document raises ``ValueError``.
"""
from __future__ import annotations

import json
from types import ModuleType
from typing import Any

_orjson: ModuleType | None
try:  # pragma: no cover - which branch runs depends on the installation
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None


def _loads_std(data: bytes | str) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    return json.loads(data)


if _orjson is not None:
    _fast = _orjson.loads
    _FastError = _orjson.JSONDecodeError

    # every digit -> "0", anything else -> " ": a run of n digits is then a plain substring search
    _DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))

    _RUN = b"0" * 19  # a run of 19 digits, once translated by ``_DIGITS``

    def loads(data: bytes | str) -> Any:
        """``json.loads`` of UTF-8 bytes or text (orjson first, the standard library for the rest)."""
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if _RUN not in bytes(raw).translate(_DIGITS):  # no run of 19 digits
            try:
                return _fast(raw)
            except _FastError:
                pass
        return _loads_std(data)
else:  # pragma: no cover
    loads = _loads_std
