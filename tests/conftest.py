"""Shared fixtures. Service-backed tests use ``require_service``: in CI (CI=true) a missing service
is a failure, never a silent skip; on a developer machine it skips with the reason."""
from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(ok: bool, what: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require_service(path is not None, f"the program {name}")
    return path  # type: ignore[return-value]


@pytest.fixture
def sample_archive() -> Path:
    return SAMPLE
