"""The command line refuses settings it would otherwise ignore, takes options per destination,
names the extra a missing driver comes with, accepts the global switches after the command name,
lists forms, takes --form by name and keeps an existing archive unless told otherwise."""
import csv
import json
import shutil
import sys

import pytest
from click.testing import CliRunner

from exporter.cli import cli
from exporter.testing.fake_server import FakeKizeoServer
from exporter.validate import plan_destinations, split_url_options

TOKEN = "tok-0123456789abcdef"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def one_line_usage_error(r, *needles):
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def created(root):
    return sorted(p.name for p in root.iterdir())


# ---- 1. settings silently ignored -------------------------------------------------------------

def test_misspelt_option_key_names_the_nearest_and_creates_nothing(sample_archive, tmp_path):
    for args in (["--to", str(tmp_path / "o"), "-o", "csv_delimeter=;"],
                 ["-o", "csv_delimeter=;", "--to", str(tmp_path / "o")]):
        r = invoke("export", "-s", str(sample_archive), *args)
        one_line_usage_error(r, "csv_delimeter", "did you mean csv_delimiter?", "csv_bom")
    assert created(tmp_path) == []


def test_empty_format_lists_the_formats(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "--format", "")
    one_line_usage_error(r, "--format", "json, csv, xlsx")
    assert created(tmp_path) == []


def test_format_with_only_a_database_creates_no_database(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--to", f"sqlite:///{tmp_path / 'x.db'}", "--format", "pdf")
    one_line_usage_error(r, "--format pdf", "no destination of this run writes files", "files")
    assert created(tmp_path) == []
    # the default formats with only a database are not a mistake
    r = invoke("-q", "export", "-s", str(sample_archive), "--to", f"sqlite:///{tmp_path / 'x.db'}")
    assert r.exit_code == 0, r.output


def test_each_folder_in_its_own_formats(sample_archive, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = invoke("-q", "export", "-s", str(sample_archive), "--to", str(a), "-o", "formats=xlsx,csv", "-o", "csv_bom=true",
               "--to", str(b), "--format", "json")
    assert r.exit_code == 0, r.output
    assert {p.suffix for p in a.glob("[!.]*.*")} == {".csv", ".xlsx"} and (a / "users.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    assert {p.suffix for p in b.glob("[!.]*.*")} == {".json"}
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "c"), "-o", "formats=csv,docs")
    one_line_usage_error(r, "option formats", "some of json,csv,xlsx", "docs")
    r = invoke("export", "-s", str(sample_archive), "--to", f"sqlite:///{tmp_path / 'x.db'}", "-o", "formats=csv")
    one_line_usage_error(r, "option formats", "not read by sqlite")
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "d"), "-o", "formats=json", "-o", "csv_bom=true")
    one_line_usage_error(r, "csv_bom", "csv format, which is not written (formats json:")
    r = invoke("export", "-s", str(sample_archive), "-o", "formats=xlsx", "--to", str(tmp_path / "e"))
    one_line_usage_error(r, "option formats is a destination's own", "after its --to", "--format sets")
    assert created(tmp_path) == ["a", "b"]


def test_media_in_db_without_a_database(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "--media-in-db")
    one_line_usage_error(r, "--media-in-db", "sqlite", "postgres")
    assert created(tmp_path) == []


def test_option_for_a_format_not_written(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "-o", "pdf_single=true")
    one_line_usage_error(r, "pdf_single", "pdf format", "formats json,csv: --format")
    assert created(tmp_path) == []


@pytest.mark.parametrize("dest", ["sqlite:/tmp/x.db", "sqlite:x.db", "postgres:db/x", "nosuch:thing"])
def test_scheme_with_no_slashes_is_not_a_folder(sample_archive, tmp_path, monkeypatch, dest):
    monkeypatch.chdir(tmp_path)
    r = invoke("export", "-s", str(sample_archive), "--to", dest)
    one_line_usage_error(r, "not a destination URL", "sqlite://", "sftp://")
    assert created(tmp_path) == []


def test_existing_path_with_a_colon_is_still_a_folder(sample_archive, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out:2026").mkdir()
    r = invoke("-q", "export", "-s", str(sample_archive), "--to", "out:2026")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out:2026" / "users.csv").is_file()


def test_an_option_read_by_one_destination_of_several_is_fine(sample_archive, tmp_path):
    r = invoke("-q", "export", "-s", str(sample_archive), "-o", "csv_delimiter=;", "--to", str(tmp_path / "o"),
               "--to", f"sqlite:///{tmp_path / 'x.db'}")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "users.csv").read_text("utf-8").splitlines()[0].count(";") > 2


# ---- 2. per-destination options and secrets -----------------------------------------------------

def _recorded_sinks(monkeypatch):
    import exporter.registry as registry

    made = []
    real = registry.create_sink

    def record(url, options=None, formats=None):
        sink = real(url, options, formats)
        made.append(sink)
        return sink

    monkeypatch.setattr(registry, "create_sink", record)
    return made


def _no_run(monkeypatch):
    """The sinks as the command built them, without running the export (passwords are checked on
    the sink objects; these databases are not reachable)."""
    import exporter.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run", lambda *a, **k: None)


def test_password_and_options_after_a_to_are_that_destinations(sample_archive, tmp_path, monkeypatch):
    made = _recorded_sinks(monkeypatch)
    _no_run(monkeypatch)
    pw_file = tmp_path / "pw-b"
    pw_file.write_text("secret-b\n")
    r = invoke("-q", "export", "-s", str(sample_archive),
               "--to", "postgresql+psycopg2://etl@db-a/forms", "--to-password-env", "PW_A", "-o", "schema=kizeo",
               "--to=mysql+pymysql://etl@db-b/forms", f"--to-password-file={pw_file}",
               "--to", "postgresql+psycopg2://etl@db-c/forms",
               env={"PW_A": "secret-a"})
    assert r.exit_code == 0, r.output
    a, b, c = made
    assert (a._password, a.schema) == ("secret-a", "kizeo")
    assert (b._password, b.schema) == ("secret-b", None)
    assert (c._password, c.schema) == (None, None)
    assert "secret" not in r.output


def test_format_options_after_a_to_are_that_destinations(sample_archive, tmp_path):
    r = invoke("-q", "export", "-s", str(sample_archive),
               "--to", str(tmp_path / "semi colon é"), "-o", "csv_delimiter=;", "-o", "csv_bom=true",
               "--to", str(tmp_path / "comma"))
    assert r.exit_code == 0, r.output
    semi = (tmp_path / "semi colon é" / "users.csv").read_bytes()
    comma = (tmp_path / "comma" / "users.csv").read_bytes()
    assert semi.startswith(b"\xef\xbb\xbfid;") and comma.startswith(b"id,")


def test_password_before_any_to_is_every_destinations(sample_archive, tmp_path, monkeypatch):
    made = _recorded_sinks(monkeypatch)
    _no_run(monkeypatch)
    r = invoke("-q", "export", "-s", str(sample_archive), "--to-password-env", "PW",
               "--to", "postgresql+psycopg2://etl@db-a/forms", "--to", "mysql+pymysql://etl@db-b/forms", env={"PW": "pw-all"})
    assert r.exit_code == 0, r.output
    assert [s._password for s in made] == ["pw-all", "pw-all"]


def test_the_same_setting_twice_for_one_destination_is_refused(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--to", f"sqlite:///{tmp_path / 'a.db'}",
               "--to-password-env", "A", "--to-password-env", "B")
    one_line_usage_error(r, "--to-password-env given twice")
    assert created(tmp_path) == []


def test_an_option_after_a_to_must_be_read_by_that_destination(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "--to", f"sqlite:///{tmp_path / 'a.db'}",
               "-o", "csv_bom=true")
    one_line_usage_error(r, "csv_bom", "a.db", "not read by sqlite")
    r = invoke("export", "-s", str(sample_archive), "--to", f"sqlite:///{tmp_path / 'a.db'}", "--to", str(tmp_path / "o"),
               "--to-password-env", "PW")
    one_line_usage_error(r, "--to-password-env for", "not read by files")
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "-oschema=x")  # -oVALUE, as click reads it
    one_line_usage_error(r, "option schema for", "not read by files")
    assert created(tmp_path) == []


def test_options_in_the_url_query(sample_archive, tmp_path):
    out = tmp_path / "o"
    r = invoke("-q", "export", "-s", str(sample_archive), "--to", f"file://{out}?csv_delimiter=%3B&json_per_submission=false")
    assert r.exit_code == 0, r.output
    rows = list(csv.reader((out / "users.csv").open(encoding="utf-8", newline=""), delimiter=";"))
    assert rows[0][0] == "id" and len(rows[0]) > 3
    assert not any(out.rglob("submissions/*.json"))
    r = invoke("export", "-s", str(sample_archive), "--to", f"file://{out}?csv_delimeter=%3B")
    one_line_usage_error(r, "csv_delimeter", "did you mean csv_delimiter?")
    r = invoke("export", "-s", str(sample_archive), "--to", f"sqlite:///{tmp_path / 'x.db'}?password=hunter22")
    line = one_line_usage_error(r, "secret", "--to-password-env")
    assert "hunter22" not in line
    assert not (tmp_path / "x.db").exists()


def test_url_query_options_are_typed_and_driver_parameters_stay():
    url = "postgresql+psycopg2://etl@db:5432/forms?sslmode=require&password_env=PG_B&media_in_db=true&schema=a+b"
    clean, options = split_url_options(url)
    assert clean == "postgresql+psycopg2://etl@db:5432/forms?sslmode=require"
    assert options == {"password_env": "PG_B", "media_in_db": "true", "schema": "a b"}
    [(planned, typed)] = plan_destinations([(url, {})], {"background_load": "off"}, ("json",), formats_given=False)
    assert planned == clean
    assert (typed["password_env"], typed["media_in_db"], typed["schema"]) == ("PG_B", True, "a b")
    assert typed["background_load"] is False and typed["media_in_db_max_bytes"] == 256 << 20  # defaults filled


# ---- 3. a missing driver names its extra --------------------------------------------------------

@pytest.mark.parametrize("module, url, extra", [
    ("psycopg", "postgresql+psycopg://etl@127.0.0.1:1/x", "postgres"),
    ("psycopg", "postgresql+psycopg2://etl@127.0.0.1:1/x", "postgres"),  # served by psycopg 3
    ("psycopg", "postgresql://etl@127.0.0.1:1/x", "postgres"),
    ("pymysql", "mysql+pymysql://root@127.0.0.1:1/x", "mysql"),
    ("pyodbc", "mssql+pyodbc://u@dsn", "mssql"),
    ("pyodbc", "mysql+pyodbc://u@dsn", "odbc"),
    ("pyodbc", "access+pyodbc://@dsn", "access"),
    ("sqlalchemy_access", "access+pyodbc://@dsn", "access"),
    ("paramiko", "sftp://u@127.0.0.1:1/x", "sftp"),
    ("dropbox", "dropbox:///x", "dropbox"),
    ("office365", "sharepoint://t.sharepoint.com/sites/a/Docs/x", "sharepoint"),
])
def test_missing_driver_names_the_extra(sample_archive, tmp_path, monkeypatch, module, url, extra):
    monkeypatch.setitem(sys.modules, module, None)
    r = invoke("export", "-s", str(sample_archive), "--to", url)
    line = one_line_usage_error(r, f"needs {module}: pip install 'exporter[{extra}]'")
    assert "ModuleNotFoundError" not in line


def test_every_extra_of_pyproject_is_known_to_the_driver_message():
    import tomllib
    from pathlib import Path

    from exporter.registry import DRIVER_EXTRAS

    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    # celery brings the workers of `exporter worker`, not a destination's driver
    drivers = {e for e, deps in extras.items() if deps and e not in ("all", "dev", "bench", "celery")}
    assert drivers == {e for es in DRIVER_EXTRAS.values() for e in es}


# ---- 4. global switches after the command name ------------------------------------------------

def test_global_switches_after_the_command(sample_archive, tmp_path):
    r = invoke("export", "-s", str(tmp_path / "none"), "--to", str(tmp_path / "o"), "--debug")
    assert r.exit_code == 1 and "Traceback" in r.output
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "-q")
    assert r.exit_code == 0 and r.output == ""
    r = invoke("verify", str(sample_archive), "--quiet")
    assert r.exit_code == 0 and r.output == ""
    for cmd in ("export", "archive", "verify", "serve", "demo", "destinations", "forms"):
        r = invoke(cmd, "--help")
        assert "--debug" in r.output and "--quiet" in r.output and "--verbose" in r.output


# ---- 6. forms -------------------------------------------------------------------------------------

def test_forms_lists_an_archive(sample_archive):
    r = invoke("forms", "-s", str(sample_archive))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split() == ["id", "name", "class", "submissions", "update_time"]
    assert lines[1].split()[:1] == ["1001"] and "Inspection de chantier" in lines[1] and " 25 " in lines[1]
    rows = json.loads(invoke("forms", "-s", str(sample_archive), "--json").output)
    assert [(f["id"], f["submissions"]) for f in rows] == [("1001", 25), ("1002", 15), ("1003", 10)]
    assert sum(f["submissions"] for f in rows) == 50
    assert rows[2]["name"] == "Relevé de compteur" and rows[2]["class"] == "Maintenance" and rows[2]["update_time"]


def test_forms_lists_the_web_service_without_reading_submissions(sample_archive):
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        r = invoke("forms", "-s", srv.base_url, "--token-env", "KZ", "--json", env={"KZ": TOKEN})
        assert r.exit_code == 0, r.output
        rows = json.loads(r.output)
        assert [f["id"] for f in rows] == ["1001", "1002", "1003"]
        assert all(f["submissions"] is None for f in rows)
        assert srv.request_count("*/data*") == 0
        r = invoke("forms", "-s", srv.base_url, "--token-env", "KZ", env={"KZ": TOKEN})
        assert r.exit_code == 0 and "Bon de livraison" in r.output


def test_form_by_exact_name_and_ambiguous_name(sample_archive, tmp_path):
    r = invoke("-q", "export", "-s", str(sample_archive), "--form", "Bon de livraison", "--to", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "o" / "forms").iterdir()] == ["1002-Bon de livraison"]
    twin = tmp_path / "twin"
    shutil.copytree(sample_archive, twin)
    lines = (twin / "forms.jsonl").read_text("utf-8").splitlines()
    first = json.loads(lines[0])
    lines[1] = json.dumps({**json.loads(lines[1]), "name": first["name"]}, ensure_ascii=False)
    (twin / "forms.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    r = invoke("export", "-s", str(twin), "--form", first["name"], "--to", str(tmp_path / "o2"))
    one_line_usage_error(r, "names 2 forms", "1001, 1002")
    assert not (tmp_path / "o2").exists()


def test_unknown_form_suggests_the_nearest(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--form", "Bon de livraisson", "--to", str(tmp_path / "o"))
    assert r.exit_code == 1
    assert "did you mean 1002 (Bon de livraison)?" in r.output and "1001 (Inspection de chantier)" in r.output
    assert not (tmp_path / "o").exists()


# ---- 7. archive --out over an existing archive -------------------------------------------------

def test_archive_refuses_to_overwrite_unless_told(sample_archive, tmp_path):
    out = tmp_path / "acc.zip"
    out.write_bytes(b"precious")
    r = invoke("archive", "-s", str(sample_archive), "--out", str(out))
    one_line_usage_error(r, str(out), "already exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    folder = tmp_path / "acc"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    r = invoke("archive", "-s", str(sample_archive), "--out", str(folder))
    one_line_usage_error(r, "already exists")
    assert created(folder) == ["keep.txt"]
    r = invoke("-q", "archive", "-s", str(sample_archive), "--out", str(out), "--overwrite")
    assert r.exit_code == 0, r.output
    assert invoke("verify", str(out)).exit_code == 0


# ---- the declarations the checks read stay true --------------------------------------------------

#: keys the code passes to itself, never given by a user
INTERNAL_OPTIONS = {"track_published"}


def test_option_declarations_match_what_the_code_reads():
    import re
    from pathlib import Path

    from exporter.validate import all_option_keys

    root = Path(__file__).parent.parent
    # the code that reads options; the declarations (catalog.py) name every key and prove nothing
    sources = {p: p.read_text("utf-8") for d in ("connectors", "formats") for p in (root / d).rglob("*.py")
               if p.name != "catalog.py"}
    read = set()
    for text in sources.values():
        for pattern in (r'options\.get\(\s*"(\w+)"', r'options\[\s*"(\w+)"\s*\]',
                        r'(?:opt_bool|opt_int|_opt_float|_bool_option)\(\s*(?:self\.)?options,\s*"(\w+)"'):
            read.update(re.findall(pattern, text))
        for a, b in re.findall(r'secret_option\(\s*options,\s*"(\w+)",\s*"(\w+)"', text):
            read.update((a, b))
        for base in re.findall(r'read_secret\(\s*options,\s*"(\w+)"', text):
            read.update((base + "_env", base + "_file"))
    declared = all_option_keys()
    assert read - INTERNAL_OPTIONS <= declared, f"read but not declared: {sorted(read - INTERNAL_OPTIONS - declared)}"
    everything = "\n".join(sources.values())
    unused = sorted(k for k in declared if f'"{k}"' not in everything and f'"{k.removesuffix("_env")}"' not in everything
                    and f'"{k.removesuffix("_file")}"' not in everything)
    assert not unused, f"declared but never read: {unused}"


# ---- review: --to-url-env alone, option values checked before anything is created ----------------

def test_to_url_env_alone_is_a_destination(sample_archive, tmp_path):
    out = tmp_path / "from-env"
    r = invoke("-q", "export", "-s", str(sample_archive), "--to-url-env", "DEST", env={"DEST": f"file://{out}"})
    assert r.exit_code == 0, r.output
    assert (out / "account.json").exists()


def test_no_destination_at_all_names_both_ways(sample_archive):
    one_line_usage_error(invoke("export", "-s", str(sample_archive)), "--to", "--to-url-env")


@pytest.mark.parametrize("args", [
    ["-o", "csv_bom=maybe"], ["-o", "csv_delimiter=x"], ["-o", "csv_formula_guard=perhaps"],
    ["-o", "json_per_submission=maybe"],
    ["--format", "pdf", "-o", "pdf_single=maybe"], ["--format", "docx", "-o", "report_page_size=B9"],
])
def test_bad_option_value_creates_nothing(sample_archive, tmp_path, args):
    """A refused value is refused before any destination is opened: no folder, no database."""
    r = invoke("export", "-s", str(sample_archive), "--to", f"sqlite:///{tmp_path / 'x.db'}",
               "--to", str(tmp_path / "o"), *args)
    assert r.exit_code == 2, r.output
    assert created(tmp_path) == [], r.output


@pytest.mark.parametrize("case", ["token variable not set", "base URL without /rest/v3"])
def test_a_source_that_cannot_be_read_creates_no_destination(sample_archive, tmp_path, case):
    """The source answers (token, address) before any destination is opened: a refused run leaves
    no empty folder or database behind."""
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        if case == "token variable not set":
            src, env, code = srv.base_url, {"KZ_TOKEN": None}, 2
        else:
            src, env, code = srv.base_url.removesuffix("/rest/v3"), {"KZ_TOKEN": TOKEN}, 1
        r = invoke("export", "-s", src, "--token-env", "KZ_TOKEN", "--to", str(tmp_path / "o"),
                   "--to", f"sqlite:///{tmp_path / 'x.db'}", env=env)
    assert r.exit_code == code, r.output
    assert created(tmp_path) == [], r.output


def test_grouped_short_switches_keep_their_option(sample_archive, tmp_path):
    """``-qo KEY=VALUE`` (click groups short switches): the option is read and checked like ``-o``."""
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "-qo", "csv_delimiter=;")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "users.csv").read_text("utf-8").startswith("id;login;")
    one_line_usage_error(invoke("export", "-s", str(sample_archive), "-qo", "nonsense=1", "--to", str(tmp_path / "p")),
                         "nonsense")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("args, words", [
    (["--action", "erp"], ["--action erp", "--incremental unread"]),
    (["--incremental", "cursor", "--action", "erp"], ["--action erp", "--incremental cursor"]),
    (["--skip", "users"], ["--skip users", "web service"]),
    (["--page-size", "10"], ["--page-size", "--incremental none"]),
    (["--overlap", "600"], ["--overlap", "--incremental none"]),
    (["--incremental", "unread", "--action", "erp", "--overlap", "600"], ["--overlap", "--incremental unread"]),
    (["--incremental", "cursor", "--deletions", "hard"], ["--deletions", "--check-deletions"]),
    (["--incremental", "cursor", "--max-deletions", "5"], ["--max-deletions", "--check-deletions"]),
])
def test_source_settings_this_run_would_ignore_are_refused(sample_archive, tmp_path, args, words):
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), *args)
    one_line_usage_error(r, *words)
    assert created(tmp_path) == []


def test_deletion_settings_count_with_check_deletions(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "--incremental", "cursor",
               "--check-deletions", "--deletions", "hard", "--max-deletions", "5")
    assert r.exit_code == 0, r.output
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "f"), "--deletions", "hard")
    assert r.exit_code == 0, r.output  # a full run always looks for deletions


def test_deltas_in_a_full_run_is_refused(sample_archive, tmp_path):
    """A full run wrote no runs/ deltas and said nothing: -o deltas=true was silently ignored."""
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "-o", "deltas=true")
    one_line_usage_error(r, "deltas", "--incremental cursor")
    assert created(tmp_path) == []
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "-o", "deltas=true",
               "--incremental", "cursor")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("command", [["archive", "--out", "{tmp}/a.zip"], ["forms"]])
def test_page_size_is_an_export_switch_only(tmp_path, command):
    """Only ``export`` reads unread pages; ``archive`` and ``forms`` from the web service took
    ``--page-size`` and ignored it: now it is not theirs (a usage error, nothing contacted)."""
    args = [a.format(tmp=tmp_path) for a in command[1:]]
    r = invoke(command[0], "-s", "https://forms.kizeo.com/rest/v3", *args, "--page-size", "10")
    one_line_usage_error(r, "--page-size")
    assert "--page-size" not in invoke(command[0], "--help").output
    assert created(tmp_path) == []


@pytest.mark.parametrize("twice", [
    lambda t: [str(t / "o"), f"file://{t / 'o'}/"],
    lambda t: [f"sqlite:///{t / 'x.db'}", f"sqlite:///{t / 'x.db'}"],
])
def test_the_same_destination_twice_is_refused(sample_archive, tmp_path, twice):
    """Two writers on one folder or database fought (SQLite: 'database is locked' half-way)."""
    a, b = twice(tmp_path)
    one_line_usage_error(invoke("export", "-s", str(sample_archive), "--to", a, "--to", b), "twice")
    assert created(tmp_path) == []
