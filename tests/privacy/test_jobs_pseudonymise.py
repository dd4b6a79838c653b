"""The jobs file's pseudonymisation settings: checked by `exporter jobs check` as `--pseudonymise`
is (the key by reference only), given to the export `jobs run` launches; the same key gives the
same bytes in two runs, another key others, and the person's values are nowhere."""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from exporter.jobsfile import JobsFileError, load
from tests.privacy.conftest import PERSON_VALUES, search_files
from tests.test_jobs_run import SAMPLE, env, jobs, write_jobs

KEY1, KEY2 = "k1-0123456789abcdef0123", "k2-fedcba9876543210fedc"


def aggregates(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".csv", ".jsonl") and ".exporter" not in p.parts}


def test_a_jobs_run_pseudonymises_deterministically_with_its_key(tmp_path):
    (tmp_path / "other.key").write_text(KEY2 + "\n")
    rules = 'pseudonymise = ["users=hmac", "type:geoloc=round:2"]\n'
    p = write_jobs(tmp_path, *(
        f'[accounts.{name}]\nsource = "{SAMPLE}"\n{rules}{key}\ndestinations = [{{ to = "out/{name}" }}]\n'
        for name, key in (("a", 'pseudonymise_key_env = "PSEUDO_KEY"'), ("b", 'pseudonymise_key_env = "PSEUDO_KEY"'),
                          ("c", 'pseudonymise_key_file = "other.key"'))))
    r = jobs("check", p, env_=env(PSEUDO_KEY=KEY1))
    assert r.returncode == 0, r.stdout + r.stderr
    r = jobs("run", p, env_=env(PSEUDO_KEY=KEY1))
    assert r.returncode == 0, r.stdout + r.stderr
    logs = "\n".join(x.read_text() for x in (tmp_path / "state").rglob("*.log"))
    assert "--pseudonymise users=hmac --pseudonymise type:geoloc=round:2 --pseudonymise-key-env PSEUDO_KEY" in logs
    assert KEY1 not in logs and KEY2 not in logs
    a, b, c = (aggregates(tmp_path / "out" / n) for n in "abc")
    assert a and a == b  # the same key, another run: the same bytes
    assert a.keys() == c.keys() and a != c  # another key: other digests
    for name in "abc":
        assert search_files(tmp_path / "out" / name, PERSON_VALUES) == []
    digest = hmac.new(KEY1.encode(), b"akowalski", hashlib.sha256).hexdigest()
    assert any(digest.encode() in data for data in a.values())


@pytest.mark.parametrize("extra, key, words", [
    ('pseudonymise = "users=hmac"\npseudonymise_key = "0123456789abcdef01"\n', "pseudonymise_key", "inline secret"),
    ('pseudonymise = "users=hmac"\n', "pseudonymise", "needs a key: pseudonymise_key_env NAME"),
    ('pseudonymise = "type:photo=hmac"\npseudonymise_key_env = "K"\n', "pseudonymise", "photo"),
    ('pseudonymise_archive = true\n', "pseudonymise_archive", "is for pseudonymise, which this account does not give"),
    ('pseudonymise = "users=hmac"\npseudonymise_key_env = "K"\npseudonymise_key_file = "f"\n',
     "pseudonymise_key_file", "not both"),
])
def test_bad_pseudonymisation_settings_are_one_line_each(tmp_path, extra, key, words):
    p = write_jobs(tmp_path, f'[accounts.a]\nsource = "{SAMPLE}"\n{extra}destinations = [{{ to = "out" }}]\n')
    with pytest.raises(JobsFileError) as e:
        load(p)
    assert any(f": accounts.a.{key}: " in x and words in x for x in e.value.problems), e.value.problems
    assert "0123456789abcdef01" not in "\n".join(e.value.problems)


def test_jobs_check_names_a_short_key_without_showing_it(tmp_path):
    p = write_jobs(tmp_path, f'[accounts.a]\nsource = "{SAMPLE}"\npseudonymise = "users=hmac"\n'
                             'pseudonymise_key_env = "PSEUDO_KEY"\ndestinations = [{ to = "out" }]\n')
    r = jobs("check", p, env_=env(PSEUDO_KEY="short-key-9"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "accounts.a.pseudonymise_key_env: the pseudonymisation key is 11 characters long" in r.stderr
    assert "short-key-9" not in r.stdout + r.stderr
    assert not (tmp_path / "out").exists()
