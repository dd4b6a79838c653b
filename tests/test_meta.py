"""Meta-tests: packaging lists every package, the README documents every destination and command,
the code passes the linter and the type checker."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from exporter.cli import cli
from exporter.docs import readme_is_current
from exporter.registry import SINKS
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def test_every_package_is_packaged():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    # connectors/ and formats/ install under the exporter. namespace (package-dir in pyproject.toml)
    found = {("" if top == "exporter" else "exporter.") + p.parent.relative_to(ROOT).as_posix().replace("/", ".")
             for top in ("exporter", "connectors", "formats") for p in (ROOT / top).rglob("__init__.py")}
    assert found - listed == set(), "add these packages to pyproject.toml [tool.setuptools] packages"


def test_no_top_level_connectors_or_formats_imports():
    """An installed copy claims only the import name `exporter`: code and tests import
    exporter.connectors / exporter.formats, never the repository's folder names."""
    bad = re.compile(r"^\s*(from|import) (connectors|formats)\b", re.M)
    offenders = [p.relative_to(ROOT).as_posix() for top in ("exporter", "connectors", "formats", "tests")
                 for p in (ROOT / top).rglob("*.py") if bad.search(p.read_text("utf-8"))]
    assert offenders == []


def test_readme_destination_table_is_generated_from_the_registry():
    assert readme_is_current(ROOT / "README.md"), "run: python -m exporter.docs and paste into README.md"


def test_readme_documents_every_command_and_sink():
    for name in cli.commands:
        assert f"exporter {name}" in README, f"README does not mention `exporter {name}`"
    for key in SINKS:
        assert f"`{key}`" in README


def test_every_sink_has_tests():
    tests = "\n".join(p.read_text("utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    for key, entry in SINKS.items():
        module = entry.target.partition(":")[0]
        scheme = entry.schemes[0] if entry.schemes else key
        assert module in tests or f"{scheme}://" in tests or f"{scheme}+" in tests, f"no test mentions sink {key}"



NATIVE_SUFFIXES = {".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".pyx", ".pxd", ".pxi"}
_NOT_SOURCE = {"build", "dist", "node_modules", "__pycache__", "venv"}


def test_no_native_code_of_our_own():
    """The project ships no C (or Cython, C++) of its own: speed comes from maintained libraries.
    Any such source file in the tree, or an extension module declared in pyproject.toml, fails."""
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames
                       if not d.startswith(".") and d not in _NOT_SOURCE and not d.endswith(".egg-info")]
        found += [os.path.relpath(os.path.join(dirpath, f), ROOT) for f in filenames
                  if os.path.splitext(f)[1].lower() in NATIVE_SUFFIXES]
    assert found == [], f"native source files in the tree: {sorted(found)}"
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"].get("setuptools", {})
    assert "ext-modules" not in setuptools and "ext_modules" not in setuptools
    assert not (ROOT / "setup.py").exists() or "Extension" not in (ROOT / "setup.py").read_text("utf-8")


def test_the_code_passes_ruff():
    # ruff comes with the dev extra; in CI (CI=true) it must be there, elsewhere its absence skips
    ruff = shutil.which("ruff") or shutil.which("ruff", path=os.path.dirname(sys.executable))
    require_service(ruff is not None, "ruff (pip install -e '.[dev]')")
    res = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _installed_layout(tree: Path) -> Path:
    """The package as it is installed (exporter/, with connectors/ and formats/ inside it), made of
    symlinks under ``tree``: mypy cannot follow setuptools' editable import hook for package-dir."""
    pkg = tree / "exporter"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "exporter").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for sub in ("connectors", "formats"):
        (pkg / sub).symlink_to(ROOT / sub)
    return tree


def test_the_code_passes_mypy(tmp_path):
    # mypy comes with the dev extra; in CI (CI=true) it must be there, elsewhere its absence skips
    try:
        import mypy.api
    except ImportError:
        mypy = None
    require_service(mypy is not None, "mypy (pip install -e '.[dev]')")
    tree = _installed_layout(tmp_path / "tree")
    res = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                          "--cache-dir", str(tmp_path / "cache"), "-p", "exporter"],
                         cwd=tree, capture_output=True, text=True, env={**os.environ, "MYPYPATH": str(tree)})
    assert res.returncode == 0, res.stdout + res.stderr
