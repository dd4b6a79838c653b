"""``--pseudonymise SPEC``: the syntax, and every bad SPEC refused as a usage error (exit 2, one
line naming the problem) before anything is created."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from exporter.cli import cli
from exporter.errors import ConfigError
from exporter.privacy.spec import parse_spec, split_rules

KEY = "k" * 32


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def test_rules_and_their_forms():
    spec = parse_spec(["field:a\\,b=drop, type:GeoLoc=round:3", "users=hmac", "type:date=round:month"],
                      key_env="K")
    got = [(r.selector, r.target, r.method.label) for r in spec.rules]
    assert got[:2] == [("field", "a,b", "drop"), ("type", "geoloc", "round:N")]
    assert got[2:7] == [("user", g, "hmac") for g in ("login", "names", "email", "phone", "refs")]
    assert got[7] == ("type", "date", "round:month")
    assert spec.rules[1].method.digits == 3 and spec.needs_key
    assert split_rules("field:x=a=hmac,,user:email=drop") == ["field:x=a=hmac", "user:email=drop"]
    assert parse_spec(["field:x=a=hmac"], key_env="K").rules[0].target == "x=a"  # the method follows the last =
    assert parse_spec([]) is None and not parse_spec(["user:email=drop"]).needs_key


@pytest.mark.parametrize("spec,message", [
    ("email=hmac", "unknown selector 'email'; use field:NAME, type:TYPE, users or user:COLUMN"),
    ("field:x", "expected SELECTOR=METHOD"),
    ("field:x=hash", "unknown method 'hash'"),
    ("type:geolocation=drop", "unknown field type 'geolocation' (did you mean geoloc?)"),
    ("type:photo=hmac", "hmac does not fit photo fields (media); they take drop"),
    ("type:text=round:2", "round:N does not fit text fields (text); they take hmac or drop"),
    ("type:geoloc=round:month", "round:month does not fit geoloc fields"),
    ("type:geoloc=round:9", "round takes a number of decimals from 0 to 8"),
    ("type:section=drop", "they take nothing (layout only, no value)"),
    ("users=round:2", "users' columns take hmac or drop"),
    ("user:mail=drop", "unknown user column 'mail' (did you mean email?)"),
    ("field:x=drop,field:x=hmac", "'field:x=drop' and 'field:x=hmac' both choose field x"),
])
def test_bad_rules(spec, message):
    with pytest.raises(ConfigError) as e:
        parse_spec([spec], key_env="K")
    assert message in str(e.value)


def test_keys():
    with pytest.raises(ConfigError, match="needs a key"):
        parse_spec(["users=hmac"])
    with pytest.raises(ConfigError, match="no rule of --pseudonymise uses hmac"):
        parse_spec(["users=drop"], key_env="K")
    with pytest.raises(ConfigError, match="--pseudonymise-archive is for --pseudonymise SPEC"):
        parse_spec([], archive=True)


@pytest.mark.parametrize("args,env,message", [
    (["--pseudonymise", "type:photo=hmac", "--pseudonymise-key-env", "PK"], {"PK": KEY}, "hmac does not fit photo"),
    (["--pseudonymise", "users=hmac"], {}, "needs a key"),
    (["--pseudonymise", "users=hmac", "--pseudonymise-key-env", "PK"], {"PK": None}, "PK (the pseudonymisation key) "
                                                                                    "is not set"),
    (["--pseudonymise", "users=hmac", "--pseudonymise-key-env", "PK"], {"PK": "short"}, "is 5 characters long: give "
                                                                                       "at least 16"),
    (["--pseudonymise-key-env", "PK"], {"PK": KEY}, "is for --pseudonymise SPEC"),
    (["--pseudonymise", "users=drop", "--pseudonymise-archive"], {}, "this run has no archive destination"),
    (["--pseudonymise", "field:commentaire=drop"], {}, "no form of this run has a field 'commentaire' (did you mean "
                                                        "commentaires?)"),
    (["--pseudonymise", "field:photos=hmac", "--pseudonymise-key-env", "PK"], {"PK": KEY},
     "field 'photos' of form 1001 (Inspection de chantier) is a photo field (media); it takes drop"),
])
def test_refused_before_anything_is_created(sample_archive, tmp_path, args, env, message):
    out, db = tmp_path / "out", tmp_path / "x.db"
    r = invoke("export", "-s", sample_archive, "--to", out, "--to", f"sqlite:///{db}", *args, env=env)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not out.exists() and not db.exists()
    assert KEY not in r.output
