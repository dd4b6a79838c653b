"""The jobs file: what `exporter jobs check` accepts, and every refusal as FILE:LINE: KEY: message,
all problems at once, before anything runs; the crontab and systemd output; key positions."""
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter import tomlpos
from exporter.cli import cli
from exporter.jobsfile import JobsFileError, load
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
ENV = {"ACME_TOKEN": "tok-acme-0123456789", "ACME_PG": "pg-secret-value", "ALERT_URL": "http://127.0.0.1:9/h"}


def check(path, *args, env=None):
    return CliRunner().invoke(cli, ["jobs", "check", str(path), *args], env={**ENV, **(env or {})},
                              catch_exceptions=False)


def write(tmp_path, text, name="jobs.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def readme_example() -> str:
    page = (ROOT / "docs" / "jobs.md").read_text("utf-8")
    m = re.search(r"```toml\n(\[defaults\]\nstate_dir = \"/var/lib/exporter\".*?)```", page, re.S)
    assert m, "docs/jobs.md (linked from the README) shows the jobs file example of issue 18"
    return m.group(1)


def test_the_readme_example_works_as_written(tmp_path):
    from pyrage import x25519

    text = readme_example()
    assert 'encrypt_to = ["age1..."]' in text
    # "age1..." stands for a public key: with one, the example is good as it is
    key = str(x25519.Identity.generate().to_public())
    p = write(tmp_path, text.replace('"age1..."', f'"{key}"'))
    r = check(p)
    assert r.exit_code == 0, r.output
    assert "1 account(s) OK: acme" in r.output
    acme = load(p).accounts["acme"]
    assert acme.incremental == "cursor" and acme.schedule == "0 2 * * *"
    assert [d.formats for d in acme.destinations] == [None, ("csv", "json", "xlsx")]  # the folder's own
    assert acme.state_dir == Path("/var/lib/exporter") and not Path("/var/lib/exporter/acme").exists()
    assert acme.backup.to == "s3://backups/acme" and acme.backup.encrypt_to == (key,)
    assert (acme.backup.keep_daily, acme.backup.keep_monthly, acme.backup.schedule) == (30, 12, "30 3 * * *")
    assert {v for _k, v in acme.env_refs} == {"ACME_TOKEN", "ACME_PG"}
    # and the placeholder itself is refused at its line
    p = write(tmp_path, text, "verbatim.toml")
    r = check(p)
    assert r.exit_code == 2
    assert r.output.startswith(f"{p}:14: accounts.acme.backup.encrypt_to: not an age recipient: 'age1...'")


GOOD = """\
[defaults]
state_dir = "state"
incremental = "cursor"
alerts = { webhook_env = "ALERT_URL", on = ["failure", "success"] }

[accounts.acme]
source = "https://forms.kizeo.com/rest/v3"
token_env = "ACME_TOKEN"
schedule = "@daily"
time_limit = 3600
workers = "auto"
skip = ["users"]
destinations = [
  { to = "postgresql+psycopg2://etl@db.example.com/acme", password_env = "ACME_PG", schema = "kizeo" },
  { to = "out/acme", formats = ["json", "csv"], csv_bom = true },
]

[accounts.beta]
source = "archive.zip"
incremental = "none"
destinations = [{ to = "sqlite:///beta.db" }]
"""


def test_a_good_file_loads_with_defaults_merged(tmp_path):
    (tmp_path / "archive.zip").write_bytes(b"")
    p = write(tmp_path, GOOD)
    r = check(p)
    assert r.exit_code == 0, r.output
    jobs = load(p)
    acme, beta = jobs.accounts["acme"], jobs.accounts["beta"]
    assert acme.state_dir == tmp_path / "state" and acme.dir == tmp_path / "state" / "acme"
    assert acme.schedule == "@daily" and acme.settings == {"workers": "auto", "skip": ("users",)}
    assert [d.to for d in acme.destinations] == ["postgresql+psycopg2://etl@db.example.com/acme", "out/acme"]
    assert acme.destinations[0].options == {"schema": "kizeo"} and acme.destinations[1].options == {"csv_bom": True}
    assert {v for _k, v in acme.env_refs} == {"ACME_TOKEN", "ACME_PG"}  # the webhook's is not the export's
    assert beta.incremental == "none" and beta.token_env is None and beta.alerts.on == ("failure", "success")
    assert not (tmp_path / "state").exists()  # checking creates nothing


BAD = """\
[defaults]
state_dir = "state"
alerts = { webhook = "https://hooks.example.com/T000/B000/XXXX", on = ["failure"] }

[accounts.acme]
source = "https://user:pw0rd@forms.kizeo.com/rest/v3"
token = "abc-inline-token"
schedule = "0 25 * * *"
destinations = [
  { to = "sqlite:///acme.db", password = "inline-pw", csv_bom = true },
  { to = "out/acme", formats = ["json", "csvx"], colour = 1 },
  { to = "postgresql://etl:secretpw@db/x" },
]
shedule = "1 * * * *"

[accounts.beta]
source = "https://forms.kizeo.com/rest/v3"
token_env = "BETA_TOKEN"
incremental = "sometimes"
destinations = [{ to = "out/beta", password_env = "X" }]
alerts = { webhook_env = "ALERT_URL", on = ["always"] }
"""


def test_every_problem_is_one_line_naming_file_line_and_key(tmp_path):
    p = write(tmp_path, BAD)
    r = check(p, "--no-env")
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    expected = [
        (3, "defaults.alerts.webhook", "inline secret"),
        (6, "accounts.acme.source", "a password inside a URL is an inline secret"),
        (7, "accounts.acme.token", "inline secret: write token_env"),
        (8, "accounts.acme.schedule", "bad hour"),
        (10, "accounts.acme.destinations[0].password", "inline secret"),
        (10, "accounts.acme.destinations[0].csv_bom", "not read by sqlite"),
        (11, "accounts.acme.destinations[1].formats", "unknown format 'csvx'"),
        (11, "accounts.acme.destinations[1].colour", "unknown option colour"),
        (12, "accounts.acme.destinations[2].to", "inline secret"),
        (14, "accounts.acme.shedule", "unknown key (did you mean schedule?)"),
        (19, "accounts.beta.incremental", "expected one of none, cursor, unread"),
        (20, "accounts.beta.destinations[0].password_env", "not read by files"),
        (21, "accounts.beta.alerts.on[0]", "expected one of failure, success"),
    ]
    for line, key, words in expected:
        assert any(x.startswith(f"{p}:{line}: {key}: ") and words in x for x in lines), (line, key, r.output)
    for secret in ("abc-inline-token", "inline-pw", "pw0rd", "secretpw", "XXXX"):
        assert secret not in r.output
    assert all(re.match(rf"{re.escape(str(p))}:\d+: \S+: ", x) for x in lines), r.output


def test_unset_variables_and_missing_files_are_named_before_anything_runs(tmp_path):
    p = write(tmp_path, GOOD.replace('token_env = "ACME_TOKEN"', 'token_file = "secrets/acme.token"'))
    (tmp_path / "archive.zip").write_bytes(b"")
    r = check(p, env={"ACME_PG": None, "ALERT_URL": None})
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"{p}:4: defaults.alerts.webhook_env: environment variable ALERT_URL is not set",
        f"{p}:8: accounts.acme.token_file: secrets/acme.token is not a readable file",
        f"{p}:14: accounts.acme.destinations[0].password_env: environment variable ACME_PG is not set",
    ]
    # the run refuses the same way, and creates nothing
    r = CliRunner().invoke(cli, ["jobs", "run", str(p)], env={"ACME_PG": None, "ALERT_URL": None})
    assert r.exit_code == 2 and "ALERT_URL is not set" in r.output and not (tmp_path / "state").exists()
    assert check(p, "--no-env").exit_code == 0


def test_deltas_in_an_account_read_in_full_is_refused_at_its_line(tmp_path):
    """`exporter export` refuses -o deltas=true in a full run (it would write no runs/): the check
    says so at the line, instead of the account's run failing."""
    (tmp_path / "archive.zip").write_bytes(b"")
    text = '[accounts.a]\nstate_dir = "state"\nsource = "archive.zip"\ndestinations = [{ to = "out", deltas = true }]\n'
    p = write(tmp_path, text)
    r = check(p)
    assert r.exit_code == 2
    assert r.output.strip() == (f'{p}:4: accounts.a.destinations[0].deltas: deltas is for incremental runs: '
                                'set incremental = "cursor" or "unread"')
    assert check(write(tmp_path, text.replace("source", 'incremental = "cursor"\nsource'))).exit_code == 0


def test_an_empty_variable_is_named_empty_not_unset(tmp_path):
    """It was "is not set" while `env` showed it set (to nothing)."""
    p = write(tmp_path, GOOD)
    (tmp_path / "archive.zip").write_bytes(b"")
    r = check(p, env={"ACME_PG": " ", "ALERT_URL": "https://hooks.example.com/x"})
    assert r.exit_code == 2
    assert r.output.strip() == f"{p}:14: accounts.acme.destinations[0].password_env: environment variable ACME_PG is empty"


def test_duplicate_account_and_bad_toml_name_file_and_line(tmp_path):
    p = write(tmp_path, GOOD + '\n[accounts.acme]\nsource = "x"\n')
    r = check(p)
    assert r.exit_code == 2
    assert r.output.strip() == f"{p}:23: accounts.acme: account 'acme' is defined twice (first at line 6)"
    p = write(tmp_path, GOOD.replace('[accounts.beta]', '[accounts.Acme]'))
    (tmp_path / "archive.zip").write_bytes(b"")
    r = check(p)
    assert r.exit_code == 2 and f"{p}:18: accounts.Acme: account 'Acme' and account 'acme' differ only by case" \
        in r.output
    p = write(tmp_path, '[accounts.a]\nsource = "https://x\n')
    r = check(p)
    assert r.exit_code == 2 and r.output.startswith(f"{p}:2: not valid TOML: ")


@pytest.mark.parametrize("text, line, key, words", [
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\n', 1, "accounts.a",
     "no destinations"),
    ('[accounts.a]\ntoken_env = "T"\nstate_dir = "s"\ndestinations = [{to = "o"}]\n', 1, "accounts.a", "no source"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\nstate_dir = "s"\ndestinations = [{to = "o"}]\n', 2,
     "accounts.a.source", "needs a token"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\ntoken_file = "f"\nstate_dir = "s"\n'
     'destinations = [{to = "o"}]\n', 4, "accounts.a.token_file", "not both"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\nschedule = "* * *"\n'
     'destinations = [{to = "o"}]\n', 5, "accounts.a.schedule", "five fields"),
    ('[accounts."a b"]\nsource = "x"\n', 1, 'accounts."a b"', "an account name is"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\naction = "x"\n'
     'destinations = [{to = "o"}]\n', 5, "accounts.a.action", "is for incremental = \"unread\""),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\noverlap = 600\n'
     'destinations = [{to = "o"}]\n', 5, "accounts.a.overlap", "is for incremental = \"cursor\""),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\nincremental = "cursor"\n'
     'deletions = "hard"\ndestinations = [{to = "o"}]\n', 6, "accounts.a.deletions", "check_deletions = true"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\nmax_deletions = "five"\n'
     'destinations = [{to = "o"}]\n', 5, "accounts.a.max_deletions", "takes a count"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\n'
     'destinations = [\n  {to = "o", formats = ["json"]},\n  {to = "p", formats = ["json"], csv_bom = true},\n]\n', 7,
     "accounts.a.destinations[1].csv_bom", "csv format, which is not written (formats json:"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\n'
     'destinations = [{to = "sqlite:///x.db", formats = ["json"]}]\n', 5,
     "accounts.a.destinations[0].formats", "writes no files"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\n'
     'destinations = [{to = "sqlite:/x.db"}]\n', 5, "accounts.a.destinations[0].to", "is not a destination URL"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\n'
     'destinations = [{to = "o"}]\nbackup = {to = "b"}\n', 6, "accounts.a.backup", "encrypt_to"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\n'
     'destinations = [{to = "o"}]\nbackup = {to = "b", encrypt_to = ["AGE-SECRET-KEY-1XYZ"]}\n', 6,
     "accounts.a.backup.encrypt_to", "a secret key was given as a backup recipient"),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\n'
     'destinations = [{to = "o"}]\n[accounts.a.backup]\nto = "s3://bk/a"\nencrypt_to = ["%KEY%"]\n'
     'keep_dayly = 3\nregion = "eu-west-3"\nsecret_access_key = "x"\n', 9,
     "accounts.a.backup.keep_dayly", "is not read by the backup destination s3://bk/a (s3 reads: "),
    ('[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\nstate_dir = "s"\n'
     'destinations = [{to = "o"}]\n[accounts.a.backup]\nto = "s3://bk/a"\nencrypt_to = ["%KEY%"]\n'
     'keep_dayly = 3\nregion = "eu-west-3"\nsecret_access_key = "x"\n', 11,
     "accounts.a.backup.secret_access_key", "inline secret"),
    ('[defaults]\nstate_dir = "s"\nschedul = "x"\n[accounts.a]\nsource = "https://h/rest/v3"\ntoken_env = "T"\n'
     'destinations = [{to = "o"}]\n', 3, "defaults.schedul", "did you mean schedule"),
])
def test_refusals(tmp_path, text, line, key, words):
    from pyrage import x25519

    p = write(tmp_path, text.replace("%KEY%", str(x25519.Identity.generate().to_public())))
    with pytest.raises(JobsFileError) as e:
        load(p)
    assert any(x.startswith(f"{p}:{line}: {key}: ") and words in x for x in e.value.problems), e.value.problems


def test_key_positions_survive_toml_s_corners():
    text = ('# comment with [brackets] and "quotes"\n'
            '[ accounts . "odd.name" ]  # a quoted key with a dot\n'
            "a = '''multi\n[not.a.table]\nline'''\n"
            'b = """ say ""hi"" \\""" """\n'
            'c = [\n  1, # one\n  [2, 3],\n  { d = "}" },\n]\n'
            'e.f.g = 1979-05-27 07:32:00Z\n'
            '[[accounts.x.destinations]]\nto = "a"\n[[accounts.x.destinations]]\nto = "b"\n')
    lines = tomlpos.locate(text)
    assert lines[("accounts", "odd.name")] == 2
    assert lines[("accounts", "odd.name", "b")] == 6
    assert lines[("accounts", "odd.name", "c", 2, "d")] == 10
    assert lines[("accounts", "odd.name", "e", "f", "g")] == 12
    assert lines[("accounts", "x", "destinations", 1, "to")] == 16
    assert ("not", "a", "table") not in lines


def test_crontab_lines_and_systemd_units(tmp_path):
    p = write(tmp_path, GOOD.replace('schedule = "@daily"', 'schedule = "*/15 8-18 * * mon-fri"')
              .replace('[accounts.beta]', '[accounts.beta]\nschedule = "0 0 L * *"'))
    (tmp_path / "archive.zip").write_bytes(b"")
    r = CliRunner().invoke(cli, ["jobs", "crontab", str(p)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    cron = [x for x in r.output.splitlines() if not x.startswith("#")]
    assert len(cron) == 2
    assert cron[0].startswith("*/15 8-18 * * mon-fri ") and cron[0].split("  #")[0].endswith(
        f"-q jobs run {p} --account acme --due")
    assert cron[1].startswith("* * * * * ") and "--account beta --due" in cron[1]  # L: cron cannot; --due decides
    r = CliRunner().invoke(cli, ["jobs", "crontab", "--systemd", str(p)], catch_exceptions=False)
    units = r.output
    assert "# --- /etc/systemd/system/exporter-acme.service" in units and "Type=oneshot" in units
    assert f"ExecStart={cron[0].split(' ', 5)[5].split('  #')[0]}" in units
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 08,09,10,11,12,13,14,15,16,17,18:00,15,30,45:00" in units
    assert "OnCalendar=minutely" in units and "Persistent=true" in units
    assert "ACME_TOKEN" in units and "tok-acme" not in units
    analyze = require_tool("systemd-analyze")
    for value in re.findall(r"^OnCalendar=(.*)$", units, re.M):
        res = subprocess.run([analyze, "calendar", value], capture_output=True, text=True)
        assert res.returncode == 0, (value, res.stderr)


def test_schedules_due_and_next():
    import datetime as dt

    from exporter import schedule

    utc = dt.UTC
    last = dt.datetime(2026, 3, 1, 2, 0, 5, tzinfo=utc).astimezone(schedule.local_zone())
    nxt = schedule.next_after("0 2 * * *", last)
    assert nxt > last and (nxt.hour, nxt.minute) == (2, 0) and nxt - last < dt.timedelta(days=1, seconds=1)
    assert schedule.due("0 2 * * *", None, last)  # never ran: due
    assert not schedule.due("0 2 * * *", last, last + dt.timedelta(hours=1))
    assert schedule.due("0 2 * * *", last, nxt)
    assert schedule.expand("@daily") == "0 0 * * *"
    assert schedule.on_calendar("0 0 1,15 * 5") == ["*-*-01,15 00:00:00", "Fri *-*-* 00:00:00"]  # cron's OR
    assert schedule.on_calendar("0 0 L * *") is None and schedule.cron_line("0 0 L * *") == "* * * * *"
