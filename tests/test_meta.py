"""Meta-tests: packaging lists every package, the README documents every destination and command,
the README and docs/options.md show the generated tables, the built-ins are registered as entry
points, no module imports another's private names, no module is over 500 lines, the code passes the
linter and the type checker."""
import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from exporter.cli import cli
from exporter.docs import OPTIONS_FILE, destinations_table, options_table, stale_files
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
    assert destinations_table() in README, "run: python -m exporter.docs --write"


def test_options_table_is_generated_from_the_declarations():
    """Every option of every destination, format and source, as declared, in docs/options.md (too
    long for the README, which links to it): a stale table fails."""
    assert options_table() in (ROOT / OPTIONS_FILE).read_text("utf-8"), "run: python -m exporter.docs --write"
    assert stale_files(ROOT) == []


def test_readme_documents_every_command_and_sink():
    for name in cli.commands:
        assert f"exporter {name}" in README, f"README does not mention `exporter {name}`"
    for key in SINKS.all():
        assert f"`{key}`" in README


def test_every_sink_has_tests():
    tests = "\n".join(p.read_text("utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    for key, entry in SINKS.all().items():
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


def _python_files(*tops: str):
    for top in tops:
        yield from sorted((ROOT / top).rglob("*.py"))


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines():
    """Modules stay small, one job each: a module of the package (exporter/, connectors/,
    formats/) over 500 lines is split along a seam, not let grow."""
    long = {p.relative_to(ROOT).as_posix(): n for p in _python_files("exporter", "connectors", "formats")
            if (n := len(p.read_text("utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines (split them along a seam): {long}"


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in ("connectors", "formats"):
        parts.insert(0, "exporter")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_no_private_cross_module_imports():
    """No module reaches into another of ours for a private name: neither ``from x import _name``
    nor ``module._name`` on a module of ours it imported (``pipeline._guard``, ``records._parse_plan``).
    What two modules share is public in the one that owns it."""
    offenders = []
    for path in _python_files("exporter", "connectors", "formats"):
        module = _module_of(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text("utf-8"))
        ours: set[str] = set()  # local names bound to modules of ours
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                if not base.startswith("exporter"):
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        offenders.append(f"{path.relative_to(ROOT)}: from {base} import {alias.name}")
                    ours.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("exporter"):
                        ours.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ours
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert offenders == [], offenders


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports made absolute."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def test_only_the_cli_composes_with_click():
    """The core never imports the command line nor click; ``parallel.py``'s workers rebuild their
    source and sinks through the registry, and its fork server preloads no CLI module."""
    for path in _python_files("exporter", "connectors", "formats"):
        if "cli" in path.relative_to(ROOT).parts or path.name == "__main__.py":
            continue
        bad = {m for m in _imported_modules(path) if m == "click" or m.startswith(("click.", "exporter.cli"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    from exporter import parallel

    assert not any(m.startswith("exporter.cli") for m in parallel._PRELOAD)


def test_the_builtins_are_registered_as_entry_points_like_plugins():
    """pyproject.toml declares every built-in in its group; each names a declaration of its kind
    with the same key, and every declaration in a catalog module is registered."""
    from importlib import import_module

    from exporter import registry

    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    kinds = {"exporter.sources": registry.Source, "exporter.sinks": registry.Destination,
             "exporter.remotes": registry.Remote, "exporter.formats": registry.Format}
    registered = set()
    for group, kind in kinds.items():
        assert groups.get(group), f"no built-in in {group}"
        for key, target in groups[group].items():
            module, _, attr = target.partition(":")
            obj = getattr(import_module(module), attr)
            assert isinstance(obj, kind) and obj.key == key, f"{group} {key} = {target}"
            registered.add(id(obj))
    # the project's own folders only (the checkout's .venv holds other packages' catalog.py files)
    for path in (p for top in ("exporter", "connectors", "formats") for p in (ROOT / top).rglob("catalog.py")):
        module = import_module(_module_of(path))
        for name, obj in vars(module).items():
            if isinstance(obj, registry.Plugin) and not name.startswith("_"):
                assert id(obj) in registered, f"{module.__name__}.{name} is declared but not registered in pyproject.toml"


def test_secret_options_are_references():
    """A secret is declared as the variable or the file holding it (``*_env``/``*_file``), never
    as an option taking the secret itself."""
    from exporter import registry
    from exporter.options import SECRET_KEY

    for reg in (registry.SOURCES, registry.SINKS, registry.REMOTES, registry.FORMATS):
        for plugin in reg.all().values():
            for o in plugin.options:
                assert not SECRET_KEY.search(o.name), f"{plugin.key}: option {o.name} would take a secret by value"
                if o.secret:
                    assert o.name.endswith(("_env", "_file")), f"{plugin.key}: {o.name}"
