"""Meta-test: the shipped code (exporter/, connectors/, formats/) changes nothing that belongs to
the whole process. An exporter run inside an Airflow worker, a notebook or a test suite must leave
its host as it found it: no assignment to an attribute of an imported module, class or function
(monkeypatching a library, flipping a library's global setting), no ``setattr`` on one, no change
of an object's ``__class__``, and no interpreter-wide switch (``sys.setswitchinterval``,
``sys.setrecursionlimit``, ``gc.set_threshold``, ``gc.disable``, ``gc.freeze``). Where a library
needs different behaviour, use its per-object settings or a subclass used only by our code."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("exporter", "connectors", "formats")
INTERPRETER_SWITCHES = {("sys", "setswitchinterval"), ("sys", "setrecursionlimit"), ("gc", "set_threshold"),
                        ("gc", "disable"), ("gc", "freeze")}


def _imported(tree: ast.AST) -> dict[str, str]:
    """Names bound by imports of anything but the project itself: local name -> what it names."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top != "exporter":  # `import a.b` binds a; `import a.b as c` binds c to a.b
                    names[a.asname or top] = a.name if a.asname else top
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            if module.split(".")[0] != "exporter":
                for a in node.names:
                    names[a.asname or a.name] = f"{module}.{a.name}"
    return names


def _root(expr: ast.expr) -> str | None:
    while isinstance(expr, (ast.Attribute, ast.Subscript)):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def process_wide_tweaks(source: str) -> list[str]:
    """What in ``source`` changes state shared by the whole process (one line each)."""
    tree = ast.parse(source)
    names = _imported(tree)
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for t in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                if isinstance(t, (ast.Attribute, ast.Subscript)) and _root(t) in names:
                    found.append(f"line {node.lineno}: {ast.unparse(t)} changed (state of {names[_root(t)]})")
                elif isinstance(t, ast.Attribute) and t.attr == "__class__":
                    found.append(f"line {node.lineno}: {ast.unparse(t)} replaced")
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in names:
                if (names[f.value.id], f.attr) in INTERPRETER_SWITCHES:
                    found.append(f"line {node.lineno}: {ast.unparse(f)}() changes the interpreter")
            if (isinstance(f, ast.Name) and f.id in ("setattr", "delattr") and node.args
                    and _root(node.args[0]) in names):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checker_finds_each_kind_of_tweak():
    bad = """
import gc, sys
import reportlab.rl_config as cfg
from reportlab import rl_config
from reportlab.pdfbase import ttfonts
from docx.parts.image import ImagePart
import pymysql.connections

def f(part, x):
    rl_config.useA85 = 0
    ttfonts.makeToUnicodeCMap = x
    cfg.verbose += 1
    pymysql.connections.MySQLResult._send_local_file = x
    setattr(ImagePart, "blob", x)
    part.__class__ = ImagePart
    import os
    os.environ["TZ"] = "UTC"
    sys.setswitchinterval(1)
    gc.set_threshold(100000)
    gc.disable()
"""
    found = process_wide_tweaks(bad)
    for needle in ("rl_config.useA85", "ttfonts.makeToUnicodeCMap", "cfg.verbose", "_send_local_file",
                   "setattr(ImagePart", "part.__class__", "os.environ['TZ']", "sys.setswitchinterval",
                   "gc.set_threshold", "gc.disable"):
        assert any(needle in line for line in found), f"{needle} not found in {found}"
    fine = """
import gc
from docx.shared import Mm
from exporter import model

class Local:
    pass

def g(sec, doc, obj):
    sec.page_width = Mm(210)      # an attribute of an object we made
    doc.styles["Normal"].font.size = 10
    model.SOMETHING = 1           # our own module: not a library's
    Local.x = 1
    gc.collect(1)                 # runs the collector once, changes no setting
    setattr(sec, "left_margin", Mm(18))
"""
    assert process_wide_tweaks(fine) == []


#: the mains of processes that only this project starts, never a host's, and the one switch each
#: may turn: the zygote freezes what it imported before it forks (``exporter/cli/zygote.py``)
OWN_PROCESSES = {"exporter/cli/zygote.py": ["gc.freeze() changes the interpreter"]}


def test_shipped_code_changes_nothing_process_wide():
    offenders = []
    for top in SHIPPED:
        for p in sorted((ROOT / top).rglob("*.py")):
            name = p.relative_to(ROOT).as_posix()
            found = process_wide_tweaks(p.read_text("utf-8"))
            allowed = OWN_PROCESSES.get(name, [])
            offenders += [f"{name} {line}" for line in found if not any(line.endswith(a) for a in allowed)]
    assert offenders == [], "process-wide changes in the shipped code:\n" + "\n".join(offenders)
