"""Meta-test: what differs between SQL databases lives in ``connectors/sql/dialects/`` only.

No code of the package outside that folder decides anything by a dialect's or SQL driver's name
(``profile.dialect == "mysql"``, ``driver != "psycopg2"``, ``d in ("postgresql", ...)``,
``"postgresql" in url``, ``if parallel_mysql:``, a table keyed by dialect names...): it reads the
dialect's profile or calls its module. The detector is itself checked on known bad and good code.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from exporter.connectors.sql.dialects import for_backend, profile_for
from exporter.connectors.sql.dialects.base import Dialect

ROOT = Path(__file__).resolve().parents[1]
DIALECTS = ROOT / "connectors" / "sql" / "dialects"

#: dialect names (SQLAlchemy backend names and their aliases) and SQL driver names
DIALECT_NAMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "access"})
DRIVER_NAMES = frozenset({"psycopg2", "psycopg", "pymysql", "pyodbc", "mysqldb", "pysqlite", "asyncpg"})
#: identifiers that carry a dialect name (``parallel_mysql``, ``is_postgres``); not "access", which
#: names plenty of other things (``access_token``)
_NAMED = re.compile(r"(?:^|_)(?:sqlite|postgres|postgresql|mysql|mariadb|mssql)(?:_|$)", re.I)


def _is_name(node: ast.AST, names: frozenset[str] = DIALECT_NAMES | DRIVER_NAMES) -> bool:
    """A string constant naming a dialect or driver (``"postgresql"``, ``"postgresql+psycopg2"``)."""
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return False
    v = node.value.lower()
    return v in names or v.split("+")[0] in DIALECT_NAMES and "+" in v


def _constants(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return list(node.elts)
    return [node]


def dialect_branches(source: str) -> list[int]:
    """Line numbers of the code in ``source`` that tests a dialect's or driver's name."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        hit = False
        if isinstance(node, ast.Compare):
            hit = any(_is_name(c) for side in (node.left, *node.comparators) for c in _constants(side))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("startswith", "endswith"):
            hit = any(_is_name(c) for a in node.args for c in _constants(a))
        elif isinstance(node, ast.MatchValue):
            hit = _is_name(node.value)
        elif isinstance(node, ast.Subscript):
            hit = _is_name(node.slice, DIALECT_NAMES)
        elif isinstance(node, ast.Dict):
            hit = sum(_is_name(k, DIALECT_NAMES) for k in node.keys if k is not None) >= 2
        elif isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)) or \
                isinstance(node, ast.comprehension):
            tests = node.ifs if isinstance(node, ast.comprehension) else [node.test]
            for t in tests:
                for sub in ast.walk(t):
                    ident = sub.id if isinstance(sub, ast.Name) else sub.attr if isinstance(sub, ast.Attribute) else ""
                    hit = hit or bool(_NAMED.search(ident))
        if hit:
            lines.append(node.lineno)
    return sorted(set(lines))


def _sources() -> list[Path]:
    out = []
    for top in ("exporter", "connectors", "formats"):
        out += [p for p in (ROOT / top).rglob("*.py") if DIALECTS not in p.parents]
    return out


def test_no_dialect_name_branch_outside_the_dialect_modules():
    offenders = {}
    for p in _sources():
        text = p.read_text("utf-8")
        found = dialect_branches(text)
        if found:
            lines = text.splitlines()
            offenders[p.relative_to(ROOT).as_posix()] = [f"{n}: {lines[n - 1].strip()}" for n in found]
    assert offenders == {}, "decide by the dialect's profile or module (connectors/sql/dialects/), not its name"


BAD = [
    'if self.profile.dialect == "mysql":\n    pass',
    'add = "ADD" if profile.dialect == "mssql" else "ADD COLUMN"',
    'if d in ("postgresql", "mysql"):\n    pass',
    'ok = "postgresql" in str(url)',
    'if conn.dialect.driver != "psycopg2":\n    pass',
    'refuse = name == "postgresql" and driver not in ("psycopg2", "psycopg")',
    'parallel_mysql = ctx.worker is not None\nif not parallel_mysql:\n    pass',
    'DEFAULT = {"postgresql": "psycopg2", "mysql": "pymysql"}',
    'driver = DEFAULT["mysql"]',
    'match backend:\n    case "sqlite":\n        pass',
    'if url.drivername.startswith("mysql"):\n    pass',
    'x = url.drivername == "postgresql+psycopg2"',
]
GOOD = [
    'if self.profile.late_constraints:\n    pass',
    'sink = create_sink(f"sqlite:///{db}", {})',
    'EXTRAS = {"psycopg": ("postgres",), "pymysql": ("mysql",)}',
    'if self.access_token is None:\n    pass',
    'help = "a directory, sqlite:///x.db, postgresql+psycopg://..."',
]


@pytest.mark.parametrize("code", BAD)
def test_the_detector_sees_a_dialect_branch(code):
    assert dialect_branches(code) != []


@pytest.mark.parametrize("code", GOOD)
def test_the_detector_leaves_other_code_alone(code):
    assert dialect_branches(code) == []


def test_each_dialect_module_serves_its_names():
    """One module per dialect, found by the names it declares (adding one is a new module)."""
    modules = sorted(p.stem for p in DIALECTS.glob("*.py") if p.stem not in ("__init__", "base"))
    assert modules == ["access", "mssql", "mysql", "postgresql", "sqlite"]
    for stem in modules:
        d = for_backend(stem)
        assert isinstance(d, Dialect) and type(d).__module__.endswith(f".dialects.{stem}")
        assert profile_for(stem).capabilities.max_identifier_length
    assert for_backend("mariadb") is for_backend("mysql") and for_backend("postgres") is for_backend("postgresql")
    with pytest.raises(ValueError, match="no SQL dialect module"):
        for_backend("oracle")
