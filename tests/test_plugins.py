"""A third-party plugin, installed as a distribution of its own (a dist-info with entry points, on
sys.path), is found and used exactly like the built-ins: a source, a destination, a remote and a
format, through the Python API and the command line, its options declared, checked and typed."""
import json
import textwrap

import pytest
from click.testing import CliRunner

from exporter import export, registry
from exporter.cli import cli
from exporter.errors import ConfigError

PLUGIN = textwrap.dedent('''
    """A plugin package: declarations (cheap to import) and the code they name."""
    import json
    import os
    import shutil
    from pathlib import Path

    from exporter.capabilities import Capabilities
    from exporter.connectors.remote.base import RemoteStat
    from exporter.connectors.remote.catalog import destination
    from exporter.options import Option
    from exporter.registry import Destination, Format, Remote, Source

    # ---- declarations (what the entry points name) -------------------------------------------
    MEMO = Destination("memo", "exporter_testplugin:memo_sink", "records listed in one JSON file",
                       (Option("label", "text", "memo", "written with the records"),
                        Option("every", "int", 1, "keep one submission in N", min=1)),
                       "memo:///path.json")
    VAULT = Remote("vault", "exporter_testplugin:vault_remote", "a local folder seen as remote storage",
                   (Option("slow", "bool", False, "unused"),), "vault:///dir")
    VAULT_SINK = destination(VAULT)
    TSV = Format("tsv", "exporter_testplugin:TsvWriter", "one tab-separated line per submission",
                 (Option("tsv_header", "bool", True, "write a header line"),))
    SAMPLE = Source("sample", "exporter_testplugin:sample_source", "an archive named by a sample:// URL", (),
                    "sample:///path")

    # ---- the code ------------------------------------------------------------------------------
    class MemoSink:
        capabilities = Capabilities(tested="tests/test_plugins.py")

        def __init__(self, path, options):
            self.path, self.options, self.name, self.rows = Path(path), options, f"memo {path}", []

        def open(self, ctx):
            self.formats = ctx.formats

        def write(self, batch):
            for r in batch:
                if r.kind == "submission":
                    self.rows.append(r.id)

        def commit(self):
            pass

        def close(self, ok):
            if ok:
                kept = self.rows[::self.options["every"]]
                self.path.write_text(json.dumps({"label": self.options["label"], "every": self.options["every"],
                                                 "submissions": kept}))


    def memo_sink(url, options):
        return MemoSink(url.split("://", 1)[1], options)


    class VaultRemote:
        capabilities = Capabilities(max_name_length=255, max_path_length=4096, rename=True, streaming=True)

        def __init__(self, root):
            self.root, self.name = Path(root), f"vault {root}"

        def connect(self):
            self.root.mkdir(parents=True, exist_ok=True)

        def stat(self, path):
            p = self.root / path
            return RemoteStat(p.stat().st_size) if p.is_file() else None

        def put(self, path, data, size):
            with open(self.root / path, "wb") as fh:
                shutil.copyfileobj(data, fh)

        def mkdir(self, path):
            (self.root / path).mkdir(parents=True, exist_ok=True)

        def rename(self, src, dst):
            os.replace(self.root / src, self.root / dst)

        def delete(self, path):
            (self.root / path).unlink(missing_ok=True)

        def close(self):
            pass


    def vault_remote(url, options):
        assert isinstance(options["slow"], bool)
        return VaultRemote(url.split("://", 1)[1])


    class TsvWriter:
        key, description = "tsv", "one tab-separated line per submission"
        from exporter.formats.base import FormatLimits
        limits = FormatLimits()

        def __init__(self, out, options):
            self.out, self.lines = out, []
            self.header = TSV.parse_options(options, strict=False)["tsv_header"]

        def write(self, record):
            if record.kind == "submission":
                self.lines.append(f"{record.form_id}\\t{record.id}")

        def close(self, ok):
            if ok:
                with self.out.atomic("submissions.tsv", "w", "utf-8") as fh:
                    fh.write("".join(line + "\\n" for line in (["form\\tid"] if self.header else []) + self.lines))


    def sample_source(url, **run):
        from exporter.connectors.archive.source import ArchiveSource

        return ArchiveSource(url.split("://", 1)[1], **run)
''')

ENTRY_POINTS = textwrap.dedent('''
    [exporter.sinks]
    memo = exporter_testplugin:MEMO
    vault = exporter_testplugin:VAULT_SINK

    [exporter.remotes]
    vault = exporter_testplugin:VAULT

    [exporter.formats]
    tsv = exporter_testplugin:TSV

    [exporter.sources]
    sample = exporter_testplugin:SAMPLE
''')


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """The plugin installed as a distribution of its own: its package and its dist-info on sys.path."""
    site = tmp_path / "site"
    (site / "exporter_testplugin").mkdir(parents=True)
    (site / "exporter_testplugin" / "__init__.py").write_text(PLUGIN, "utf-8")
    info = site / "exporter_testplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exporter-testplugin\nVersion: 1.0\n", "utf-8")
    (info / "entry_points.txt").write_text(ENTRY_POINTS, "utf-8")
    monkeypatch.syspath_prepend(str(site))
    registry.refresh()
    yield
    registry.refresh()  # sys.path is restored by monkeypatch: forget the plugin


def test_plugins_are_registered_beside_the_builtins(plugin):
    assert "memo" in registry.SINKS.keys() and "files" in registry.SINKS.keys()
    assert registry.entry_for("memo:///x.json").key == "memo"
    assert registry.entry_for("vault:///x").formats  # a remote made a destination writes the formats
    assert registry.remote_for("vault:///x").key == "vault"
    assert registry.source_for("sample:///x").key == "sample"
    assert "tsv" in registry.FORMATS.ordered_keys()
    assert list(registry.SINKS.all())[:2] == ["files", "archive"]  # the built-ins keep their place
    r = CliRunner().invoke(cli, ["destinations", "--options"])
    assert r.exit_code == 0 and "memo:///path.json" in r.output and "tsv_header" in r.output


def test_plugins_are_used_like_builtins(plugin, sample_archive, tmp_path):
    memo, vault = tmp_path / "memo.json", tmp_path / "vault"
    summary = export(f"sample://{sample_archive}", [(f"memo://{memo}", {"every": "5"}), f"vault://{vault}?tsv_header=false"],
                     formats=["tsv", "json"], options={"label": "nightly"})
    assert summary.status == "ok" and summary.counts["submission"] == 50
    doc = json.loads(memo.read_text())
    assert doc["label"] == "nightly" and doc["every"] == 5 and len(doc["submissions"]) == 10  # typed: "5" -> 5
    lines = (vault / "submissions.tsv").read_text("utf-8").splitlines()
    assert len(lines) == 50 and lines[0].startswith("1001\t")  # no header: the URL's option, typed
    assert any(vault.rglob("submissions.jsonl"))  # a built-in format through the plugin remote


def test_plugin_options_are_checked_like_builtins(plugin, sample_archive, tmp_path):
    with pytest.raises(ConfigError, match="option every: expected every >= 1"):
        export(sample_archive, [(f"memo://{tmp_path / 'm.json'}", {"every": "0"})])
    with pytest.raises(ConfigError, match="unknown option evry .*did you mean every"):
        export(sample_archive, [(f"memo://{tmp_path / 'm.json'}", {"evry": "2"})])
    r = CliRunner().invoke(cli, ["export", "-s", str(sample_archive), "--to", f"memo://{tmp_path / 'm.json'}",
                                 "-o", "tsv_header=true"])
    assert r.exit_code == 2 and "not read by memo" in r.output, r.output
    assert list(tmp_path.iterdir()) == [tmp_path / "site"]  # nothing created
    r = CliRunner().invoke(cli, ["-q", "export", "-s", str(sample_archive), "--to", f"memo://{tmp_path / 'm.json'}",
                                 "-o", "label=cli"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m.json").read_text())["label"] == "cli"
