"""The name planner: deterministic, within each dialect's limits, collision-free without case."""
from __future__ import annotations

import pytest
from exporter.connectors.sql.dialects import profile_for
from exporter.connectors.sql.planner import NamePlanner, slug


@pytest.mark.parametrize("dialect,limit", [("postgresql", 63), ("mysql", 64), ("mssql", 128), ("access", 64)])
def test_limits_reserved_and_case_twins(dialect, limit):
    p = NamePlanner(profile_for(dialect))
    taken: set[str] = set()
    names = [p.column(n, taken) for n in ("select", "Order", "Name", "name", "NAME", "a" * 200, "a" * 199 + "b",
                                           "", "2024 total", "Température °C")]
    assert names[0] == "select_" and names[1] == "order_"
    assert len({n.lower() for n in names}) == len(names)
    assert all(len(n) <= limit for n in names)
    assert names[8].startswith("c_2024") and names[9] == "temperature_c"
    again: set[str] = set()
    assert [p.column(n, again) for n in ("select", "Order", "Name", "name", "NAME", "a" * 200, "a" * 199 + "b",
                                         "", "2024 total", "Température °C")] == names


def test_slug():
    assert slug("Électricité / Gaz ; DROP") == "electricite_gaz_drop"
    assert slug("日本語") == ""
