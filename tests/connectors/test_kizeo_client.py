"""KizeoClient against the fake service over real HTTP (no mocks of requests)."""
from __future__ import annotations

import email.utils
import hashlib
import logging
import ssl
import time

import pytest
import requests
from exporter.connectors.kizeo import (
    EnvToken,
    FileToken,
    KizeoClient,
    LoginToken,
    StaticToken,
    build_web_source,
)

from exporter.errors import (
    AuthError,
    BadAnswerError,
    ConfigError,
    NotFoundError,
    RateLimitError,
    SourceError,
    TransientSourceError,
)
from exporter.retry import parse_retry_after
from exporter.testing.fake_server import FakeKizeoServer, Faults
from tests.connectors.conftest_kizeo import (
    MEDIA_BYTES,
    TOKEN,
    make_client,
    self_signed_cert,
    serve,
)

pytestmark = pytest.mark.network


class Sleeps(list):
    """A sleep hook that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# ---- basic calls ----------------------------------------------------------------------------


def test_lists_users_groups_lists_and_forms(fake):
    c = make_client(fake)
    assert [f["id"] for f in c.list_forms()] == ["42", "43", "44"]
    assert c.get_form("42")["name"] == "Visite été"
    assert [u["login"] for u in c.users()] == ["zoe", "bob"]
    assert [g["name"] for g in c.groups()] == ["Siège", "Équipe A"]
    assert [u["id"] for u in c.group_users("1")] == ["7"]
    assert [u["id"] for u in c.group_leaders("2")] == []
    assert [li["id"] for li in c.lists()] == ["900"]
    assert c.get_list("900")["items"][2] == "Niveaux:N\\Haut:H"
    ids = [r["id"] for r in c.list_data_ids("42")]
    assert ids == ["1", "2", "3", "4", "5"]
    d = c.get_data("42", "1")
    assert d["fields"]["lignes"]["value"][0]["article"]["value"] == "Vis"
    c.close()


def test_groups_accepted_at_top_level_too(rich_archive):
    with serve(rich_archive, groups_at_top=True) as srv:
        assert [g["id"] for g in make_client(srv).groups()] == ["1", "2"]


def test_token_sent_raw_in_authorization_header(fake):
    # the fake compares the whole header with the token: a "Bearer " prefix would be refused
    s = requests.Session()
    ok = s.get(fake.base_url + "/forms", headers={"Authorization": TOKEN}, timeout=5)
    bearer = s.get(fake.base_url + "/forms", headers={"Authorization": "Bearer " + TOKEN}, timeout=5)
    assert ok.status_code == 200 and bearer.status_code == 401
    make_client(fake).list_forms()
    s.close()


@pytest.mark.parametrize("name", ["photo été 1.jpg", "b 100% fini.jpg"])
def test_stream_media_is_chunked_and_typed(fake, name):
    c = make_client(fake)
    sid = "1" if name.startswith("photo") else "2"
    chunks, ctype = c.stream_media("42", sid, name, chunk_size=4096)
    parts = list(chunks)
    assert ctype == "image/jpeg"
    assert b"".join(parts) == MEDIA_BYTES[name]
    assert max(len(p) for p in parts) <= 4096 and (len(parts) > 1 or len(MEDIA_BYTES[name]) <= 4096)


def test_advanced_filters_order_and_formats(fake):
    c = make_client(fake)
    rows = c.advanced("42", [{"field": "_update_time", "operator": ">=", "type": "simple", "val": "2026-03-04 00:00:00"}],
                      [{"col": "_update_time", "type": "desc"}], "basic")
    # "4" was never edited: its update time is empty, so this filter does not see it
    assert [r["_id"] for r in rows] == ["5", "2"]
    assert isinstance(rows[0]["lignes"], list)
    simple = c.advanced("42", [{"field": "_id", "operator": "=", "type": "simple", "val": "1"}], format="simple")
    assert "lignes" not in simple[0] and simple[0]["titre"] == "Premier"  # simple: no tables
    like = c.advanced("42", [{"field": "titre", "operator": "like", "type": "simple", "val": "%ème%"}])
    assert [r["_id"] for r in like] == ["2"]
    notlike = c.advanced("42", [{"field": "titre", "operator": "notlike", "type": "simple", "val": "m"}])
    assert [r["_id"] for r in notlike] == ["3"]  # case-sensitive: "Manquant" has no lower-case m
    either = c.advanced("42", [{"type": "OR", "components": [
        {"field": "_id", "operator": "=", "type": "simple", "val": "1"},
        {"type": "AND", "components": [
            {"field": "note", "operator": ">", "type": "simple", "val": "3"},
            {"field": "note", "operator": "<=", "type": "simple", "val": "5.5"},
            {"field": "_id", "operator": "!=", "type": "simple", "val": "5"}]}]}],
        [{"col": "note", "type": "asc"}])
    assert [r["_id"] for r in either] == ["1", "3", "4"]


def test_unread_and_mark_read(fake):
    c = make_client(fake)
    first = c.unread("42", "erp", 2)
    assert [r["_id"] for r in first] == ["1", "2"]
    c.mark_read("42", "erp", ["1", "2"])
    assert [r["_id"] for r in c.unread("42", "erp", 10)] == ["3", "4", "5"]
    assert [r["_id"] for r in c.unread("42", "other", 1)] == ["1"]  # markers are per action
    assert fake.marked == [("42", "erp", ["1", "2"])]


# ---- errors -----------------------------------------------------------------------------------


def test_401_is_auth_error_with_server_message(fake):
    c = make_client(fake, token="wrong-token-value")
    with pytest.raises(AuthError) as ei:
        c.list_forms()
    assert "Invalid or expired token" in str(ei.value) and "401" in str(ei.value)
    assert fake.request_count("/forms") == 1  # terminal: not retried


def test_unknown_ids_are_not_found(fake):
    c = make_client(fake)
    with pytest.raises(NotFoundError, match="unknown form id 999"):
        c.get_form("999")
    with pytest.raises(NotFoundError, match="unknown data id 77"):
        c.get_data("42", "77")
    with pytest.raises(NotFoundError, match="404"):
        c.stream_media("42", "3", "absent.jpg")
    with pytest.raises(NotFoundError):
        c.get_list("nope/../x")


def test_malformed_json_is_bad_answer_naming_the_path(rich_archive, caplog):
    caplog.set_level(logging.DEBUG)
    with serve(rich_archive, Faults(malformed_paths=("/forms/42",))) as srv:
        c = make_client(srv)
        with pytest.raises(BadAnswerError) as ei:
            c.get_form("42")
        assert "GET /forms/42" in str(ei.value) and "not valid JSON" in str(ei.value)
        assert TOKEN not in str(ei.value) and TOKEN not in caplog.text
        assert c.list_forms()  # other paths are fine


def test_status_error_envelope_carries_the_message(rich_archive):
    with serve(rich_archive, Faults(fail_paths={"/forms/43": 400})) as srv, \
            pytest.raises(SourceError, match="injected failure 400"):
        make_client(srv).get_form("43")


# ---- retries ----------------------------------------------------------------------------------


def test_429_retry_after_seconds_is_honoured(rich_archive):
    sleeps = Sleeps()
    with serve(rich_archive, Faults(rate_limit_every=2, retry_after=7)) as srv:
        c = make_client(srv, sleep=sleeps, max_backoff=60)
        c.list_forms()  # request 1
        assert c.get_form("42")["id"] == "42"  # request 2 -> 429, request 3 -> ok
    assert sleeps == [7.0]
    assert srv.request_count("/forms/42") == 2


def test_429_retry_after_really_waits(rich_archive):
    with serve(rich_archive, Faults(rate_limit_every=1_000_000, retry_after=0.4)) as srv:
        srv._count = 999_999  # the next request is the 1,000,000th: rate limited
        c = make_client(srv, max_backoff=5)
        t0 = time.monotonic()
        assert c.get_form("43")["id"] == "43"
        assert time.monotonic() - t0 >= 0.4


def test_retry_after_http_date():
    now = time.time()
    when = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(when, now=lambda: now) <= 31
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None


def test_429_with_http_date_retry_after(rich_archive):
    sleeps = Sleeps()
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    with serve(rich_archive, Faults(rate_limit_every=1, retry_after=when)) as srv:
        c = make_client(srv, sleep=sleeps, max_backoff=60, attempts=2)
        with pytest.raises(RateLimitError) as ei:
            c.list_forms()
    assert 15 <= ei.value.retry_after <= 21
    assert len(sleeps) == 1 and 15 <= sleeps[0] <= 21


def test_503_and_dropped_connections_recover(rich_archive):
    sleeps = Sleeps()
    with serve(rich_archive, Faults(fail_503_every=3, drop_every=4)) as srv:
        c = make_client(srv, sleep=sleeps)
        for _ in range(4):
            assert [f["id"] for f in c.list_forms()] == ["42", "43", "44"]
            assert c.get_data("42", "2")["id"] == "2"
        chunks, _ = c.stream_media("42", "2", "b 100% fini.jpg")
        assert hashlib.sha256(b"".join(chunks)).hexdigest() == hashlib.sha256(MEDIA_BYTES["b 100% fini.jpg"]).hexdigest()
    assert len(sleeps) >= 3  # faults did happen and were retried with backoff
    assert all(0 <= s <= 0.05 for s in sleeps)


def test_persistent_503_gives_up_with_a_transient_error(rich_archive):
    with serve(rich_archive, Faults(fail_503_every=1, max_in_a_row=0)) as srv:
        c = make_client(srv, sleep=Sleeps(), attempts=3)
        with pytest.raises(TransientSourceError, match="503"):
            c.list_forms()
        assert srv.request_count("/forms") == 3


def test_scheduled_faults_hit_one_request_at_most_max_in_a_row_times(rich_archive):
    # every request is scheduled to fail, but one path is faulted at most 3 times in a row: the
    # 4th attempt is answered, and the next request to that path can be faulted again
    with serve(rich_archive, Faults(fail_503_every=1)) as srv:
        c = make_client(srv, sleep=Sleeps(), attempts=4)
        assert [f["id"] for f in c.list_forms()] == ["42", "43", "44"]
        assert srv.request_count("/forms") == 4
        with pytest.raises(TransientSourceError, match="503"):
            make_client(srv, sleep=Sleeps(), attempts=3).list_forms()
        assert srv.request_count("/forms") == 7


def test_connection_refused_is_transient():
    c = KizeoClient(StaticToken(TOKEN), base_url="http://127.0.0.1:9/rest/v3", attempts=2, sleep=Sleeps(),
                    connect_timeout=1)
    with pytest.raises(TransientSourceError, match="connection refused by 127.0.0.1:9"):
        c.list_forms()


# ---- secrets ----------------------------------------------------------------------------------


def test_token_never_in_repr_log_or_errors(rich_archive, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    errors = []
    with serve(rich_archive, Faults(rate_limit_every=3, retry_after=0, fail_503_every=5, drop_every=7)) as srv:
        c = make_client(srv)
        for fid in ("42", "43", "44", "999"):
            try:
                c.get_form(fid)
                for row in c.list_data_ids(fid):
                    c.get_data(fid, row["id"])
            except SourceError as e:
                errors.append(str(e))
        bad = make_client(srv, token=TOKEN[::-1])
        try:
            bad.users()
        except AuthError as e:
            errors.append(str(e))
        texts = [repr(c), repr(c.tokens), repr(bad), repr(srv), caplog.text, *errors]
    assert errors and any("401" in e for e in errors)
    for t in texts:
        assert TOKEN not in t and TOKEN[::-1] not in t
    assert "***" in repr(c)
    assert "Retry" not in caplog.text or "retry" in caplog.text  # the retries were logged


def test_env_and_file_tokens(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("KZ_T", raising=False)
    with pytest.raises(ConfigError, match="KZ_T is not set"):
        KizeoClient(EnvToken("KZ_T"), base_url=fake.base_url).list_forms()
    monkeypatch.setenv("KZ_T", TOKEN)
    assert KizeoClient(EnvToken("KZ_T"), base_url=fake.base_url).list_forms()
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    assert KizeoClient(FileToken(f), base_url=fake.base_url).list_forms()
    with pytest.raises(ConfigError, match="cannot read the token file"):
        KizeoClient(FileToken(tmp_path / "nope"), base_url=fake.base_url).list_forms()
    with pytest.raises(ConfigError, match="TokenProvider"):
        KizeoClient(TOKEN, base_url=fake.base_url)  # a bare string is refused


def test_build_web_source_token_options(fake, monkeypatch):
    monkeypatch.setenv("KIZEO_TOKEN", TOKEN)
    src = build_web_source(fake.base_url)
    assert isinstance(src.client.tokens, EnvToken) and src.client.tokens.name == "KIZEO_TOKEN"
    assert TOKEN not in src.description and fake.base_url in src.description
    src.close()
    with pytest.raises(ConfigError, match="only one"):
        build_web_source(fake.base_url, token_env="A", login_env="B")
    with pytest.raises(ConfigError, match="credentials"):
        build_web_source("https://user:pw@forms.kizeo.com/rest/v3", token_env="KIZEO_TOKEN")


# ---- legacy login ---------------------------------------------------------------------------------


@pytest.fixture
def login_env(monkeypatch):
    monkeypatch.setenv("KZ_USER", "zoe")
    monkeypatch.setenv("KZ_PASSWORD", "pa ss-wörd")
    monkeypatch.setenv("KZ_COMPANY", "ACME")


def test_login_token_renews_on_401_and_before_expiry(rich_archive, login_env, caplog):
    caplog.set_level(logging.DEBUG)
    now = [1000.0]
    with serve(rich_archive, login=("zoe", "pa ss-wörd", "ACME"), token_ttl=0.3) as srv:
        provider = LoginToken("KZ_USER", "KZ_PASSWORD", "KZ_COMPANY", renew_after=3600, clock=lambda: now[0])
        c = KizeoClient(provider, base_url=srv.base_url)
        assert c.list_forms()
        assert provider.logins == 1 and srv.request_count("/login") == 1
        time.sleep(0.4)  # the service-side token expired: 401, one renewal, success
        assert c.users()
        assert provider.logins == 2 and srv.request_count("/login") == 2
        assert srv.request_count("/users") == 2
        first = len(srv.requests)
        now[0] += 3600  # proactive renewal: a new login before the request, no 401
        assert c.groups()
        assert provider.logins == 3
        assert [p for _, p in srv.requests[first:]] == ["/login", "/groups"]
    for secret in ("pa ss-wörd", *provider.secrets()):
        assert secret not in caplog.text and secret not in repr(provider) and secret not in repr(c)


def test_login_refused_is_auth_error(rich_archive, login_env):
    with serve(rich_archive, login=("zoe", "other", "ACME")) as srv:
        c = KizeoClient(LoginToken("KZ_USER", "KZ_PASSWORD", "KZ_COMPANY"), base_url=srv.base_url)
        with pytest.raises(AuthError, match="wrong user, password or company"):
            c.list_forms()
        assert srv.request_count("/forms") == 0


def test_login_missing_variable_is_config_error(fake, monkeypatch):
    monkeypatch.delenv("KZ2_USER", raising=False)
    with pytest.raises(ConfigError, match="KZ2_USER"):
        KizeoClient(LoginToken("KZ2_USER", "KZ2_PASSWORD", "KZ2_COMPANY"), base_url=fake.base_url).list_forms()


# ---- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def test_tls_verified_by_default(rich_archive, cert):
    with serve(rich_archive, tls=cert) as srv:
        assert srv.base_url.startswith("https://127.0.0.1:")
        c = KizeoClient(StaticToken(TOKEN), base_url=srv.base_url, attempts=2, sleep=Sleeps())
        with pytest.raises(SourceError) as ei:
            c.list_forms()
        assert not isinstance(ei.value, TransientSourceError)  # not retried as a network blip
        assert "certificate verify failed" in str(ei.value).lower() or "self-signed" in str(ei.value).lower()
        assert "TLS" in str(ei.value)
        # the same server is trusted once its certificate is given as the CA bundle
        ok = KizeoClient(StaticToken(TOKEN), base_url=srv.base_url, ca_bundle=str(cert[0]))
        assert [f["id"] for f in ok.list_forms()] == ["42", "43", "44"]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verification_off_only_on_request(rich_archive, cert, caplog):
    with serve(rich_archive, tls=cert) as srv:
        c = KizeoClient(StaticToken(TOKEN), base_url=srv.base_url, verify=False)
        assert "verification is OFF" in caplog.text
        assert c.list_forms()


def test_tls_minimum_version_is_1_2(fake):
    c = make_client(fake)
    ctx = c._adapter.ssl_context
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with pytest.raises(ConfigError, match="CA bundle"):
        KizeoClient(StaticToken(TOKEN), base_url=fake.base_url, ca_bundle="/nonexistent/ca.pem")


def test_fake_rejects_unknown_routes(fake):
    with pytest.raises(NotFoundError, match="no such route"):
        make_client(fake)._json("GET", "/nothing/here")


def test_fake_server_context_manager_releases_port(rich_archive):
    srv = FakeKizeoServer(str(rich_archive), TOKEN)
    url = srv.start()
    assert make_client(srv).list_forms()
    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(TransientSourceError):
        KizeoClient(StaticToken(TOKEN), base_url=url, attempts=1).list_forms()


# ---- issue 16: what the vendor documents ------------------------------------------------------


def test_fake_unread_answers_simple_by_default_as_the_vendor_documents(fake):
    # "With simple the query returns only the first level of the data (the tables are not returned)"
    s = requests.Session()
    url = fake.base_url + "/forms/42/data/unread/raw/10"
    plain = s.get(url, headers={"Authorization": TOKEN}, timeout=5).json()["data"]
    basic = s.get(url + "?format=basic", headers={"Authorization": TOKEN}, timeout=5).json()["data"]
    s.close()
    assert "lignes" not in plain[0] and plain[0]["titre"] == "Premier"
    assert [r["article"] for r in basic[0]["lignes"]] == ["Vis", "Écrou"]


def test_unread_asks_for_every_level_so_sub_form_rows_come_back(fake):
    rows = make_client(fake).unread("42", "erp", 10)
    first = next(r for r in rows if r["_id"] == "1")
    assert [(r["article"], r["qte"]) for r in first["lignes"]] == [("Vis", "3"), ("Écrou", "2,5")]


def test_lists_are_read_complete_without_their_filters(rich_archive):
    with serve(rich_archive, list_filters={"900": "Haut"}) as srv:
        c = make_client(srv)
        assert c.get_list("900")["items"] == ["Bas:B", "Haut:H|couleur:rouge", "Niveaux:N\\Haut:H"]
        assert srv.request_count("/lists/900/complete") == 1
        with pytest.raises(NotFoundError):
            c.get_list("999")


def test_lists_fall_back_to_the_filtered_route_when_complete_is_absent(rich_archive, caplog):
    with serve(rich_archive, list_filters={"900": "Haut"}, complete_route=False) as srv:
        c = make_client(srv)
        assert c.get_list("900")["items"] == ["Haut:H|couleur:rouge", "Niveaux:N\\Haut:H"]
        assert c.get_list("900")["items"] == ["Haut:H|couleur:rouge", "Niveaux:N\\Haut:H"]
        # the absent route is asked once, then remembered
        assert srv.request_count("/lists/900/complete") == 1 and srv.request_count("/lists/900") == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "/complete" in warnings[0].getMessage()
    assert "filters" in warnings[0].getMessage()


def test_proxy_from_the_environment_still_applies(fake, monkeypatch):
    # the environment is read once, when the client is made: a proxy set there carries every request
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{fake.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    c = KizeoClient(StaticToken(TOKEN), base_url="http://kizeo.invalid/rest/v3", backoff=0.01)
    assert [f["id"] for f in c.list_forms()] == ["42", "43", "44"]
    c.close()
    monkeypatch.setenv("NO_PROXY", "kizeo.invalid")
    c = KizeoClient(StaticToken(TOKEN), base_url="http://kizeo.invalid/rest/v3", backoff=0.01, attempts=1)
    with pytest.raises(SourceError, match="DNS name not found"):
        c.list_forms()
    c.close()


def test_answers_decode_exactly_whatever_their_charset():
    """UTF-8 answers are decoded from their bytes (``exporter.fastjson``): big integers exact,
    text intact; an answer that declares another charset is decoded by requests in that charset."""
    import http.server
    import threading

    answers = {
        "/rest/v3/forms": ("utf-8", '{"status":"ok","forms":[{"id":"1","name":"Visite été ✓","n":123456789012345678901234}]}'),
        "/rest/v3/users": ("iso-8859-1", '{"status":"ok","data":{"users":[{"id":"7","login":"élodie"}]}}'),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - http.server's name
            charset, text = answers[self.path]
            body = text.encode(charset)
            self.send_response(200)
            self.send_header("Content-Type", f"application/json; charset={charset}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        c = KizeoClient(StaticToken(TOKEN), base_url=f"http://127.0.0.1:{httpd.server_address[1]}/rest/v3")
        assert c.list_forms() == [{"id": "1", "name": "Visite été ✓", "n": 123456789012345678901234}]
        assert c.users() == [{"id": "7", "login": "élodie"}]
        c.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
