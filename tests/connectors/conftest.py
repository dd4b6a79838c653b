"""Fixtures of the Kizeo web-service tests (``test_kizeo_client.py``, ``test_kizeo_source.py``):
the rich account archive, built once per test module, and the fake service started over it.
Their helpers live in ``conftest_kizeo.py``. (The remote tests define their own ``fake``.)"""
from __future__ import annotations

import pytest

from tests.connectors.conftest_kizeo import build_rich_archive, serve


@pytest.fixture(scope="module")
def rich_archive(tmp_path_factory):
    return build_rich_archive(tmp_path_factory.mktemp("kizeo") / "rich")


@pytest.fixture
def fake(rich_archive):
    """A started fake service over the rich archive (no faults)."""
    with serve(rich_archive) as srv:
        yield srv
