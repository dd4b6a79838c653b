"""``exporter forget`` over remote destinations: the sample account (user 104 in every role)
exported as JSON and CSV to a real SFTP server and to moto's S3, then erased: a dry run changes
nothing, the erasure leaves none of the person's values in any file of the remote (aggregates
filtered, people files written again, their own files and media removed), other people's data
stays, a remote without the JSON people files has its CSV or XLSX people files read back and
written again as an export without the person writes them, and a forget SIGKILLed mid-way is
finished by the next one."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter.cli import cli
from tests.privacy.conftest import EDITED, PERSON, PERSON_VALUES, person_texts, search_files
from tests.privacy.test_forget_kill import ROOT, kill, wait_for


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def sftp_to(server, password_env_name, path="/export"):
    return [server.url(path), "-o", f"known_hosts={server.known_hosts}", "--to-password-env", password_env_name]


def s3_to(server):
    opts = server.options()
    return [server.url("export"), *[x for k, v in opts.items() for x in ("-o", f"{k}={v}")]]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def export_then_forget(archive: Path, to: list[str], root: Path, *apply_args: str) -> dict[str, bytes]:
    """Export ``archive`` to the remote ``to`` (whose files are under ``root`` on this machine),
    check that a dry run of ``forget --user PERSON`` changes nothing and that ``--apply`` leaves
    none of the person's texts; the remote's files after."""
    r = invoke("-q", "export", "-s", archive, "--to", *to, "--format", "json,csv")
    assert r.exit_code == 0, r.output
    needles = person_texts(archive)
    assert search_files(root, needles)
    before = tree(root)
    r = invoke("forget", "--to", *to, "--user", PERSON)
    assert r.exit_code == 0 and "would erase 1 user, 1 group membership, 9 submissions" in r.output, r.output
    assert tree(root) == before  # a dry run changes nothing
    r = invoke("forget", "--to", *to, "--user", PERSON, "--apply", *apply_args)
    assert r.exit_code == 0 and "erased 1 user, 1 group membership, 9 submissions" in r.output, r.output
    assert search_files(root, needles) == []
    return tree(root)


def test_forget_over_sftp(roles_archive, sftp_server, password_env, tmp_path):
    to = sftp_to(sftp_server, password_env)
    root = sftp_server.root / "export"
    after = export_then_forget(roles_archive, to, root, "--reference", "T-1")
    assert not any(f"/media/{sid}/" in p for p in after for sid in ("700000",))  # their media are gone
    assert any(b"mdupont" in b for b in after.values())  # others stay
    subs = [json.loads(x) for f in root.glob("forms/1001-*/submissions.jsonl") for x in f.read_text().splitlines()]
    edited = [s for s in subs if s["id"] == EDITED]
    assert edited and edited[0]["meta"]["update_user_name"] is None
    (line,) = (root / ".exporter-erasures.jsonl").read_text("utf-8").splitlines()
    assert json.loads(line)["request"] == {"subject": "user", "only_personal": False, "reference": "T-1"}
    assert not (root / ".exporter-forget.json").exists()
    manifest = json.loads((root / ".exporter-manifest.json").read_text("utf-8"))["files"]
    assert set(manifest) <= set(after) and all(manifest[p]["size"] == len(after[p]) for p in manifest)
    # the same erasure again finds nothing
    r = invoke("forget", "--to", *to, "--user", PERSON)
    assert "would erase nothing" in r.output, r.output


def test_only_personal_over_s3(roles_archive, s3_server, tmp_path):
    to = s3_to(s3_server)
    assert invoke("-q", "export", "-s", roles_archive, "--to", *to, "--format", "json,csv").exit_code == 0
    r = invoke("forget", "--to", *to, "--user", PERSON, "--only-personal", "--apply")
    assert r.exit_code == 0 and "personal values of the user" in r.output, r.output
    out = tmp_path / "s3"
    for key, data in s3_server.objects().items():
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        (out / key).write_bytes(data)
    assert search_files(out, PERSON_VALUES) == []
    users = json.loads((out / "export" / "users.json").read_text("utf-8"))
    assert [u["login"] for u in users if u["id"] == PERSON] == [""]  # the row stays, emptied
    assert (out / "export" / ".exporter-erasures.jsonl").is_file()


def test_forget_over_azure(roles_archive, azurite, tmp_path):
    opts = azurite.options()
    to = [azurite.url("export"), *[x for k, v in opts.items() for x in ("-o", f"{k}={v}")]]
    assert invoke("-q", "export", "-s", roles_archive, "--to", *to, "--format", "json,csv").exit_code == 0
    r = invoke("forget", "--to", *to, "--user", PERSON, "--apply")
    assert r.exit_code == 0 and "erased 1 user, 1 group membership, 9 submissions" in r.output, r.output
    out = tmp_path / "blobs"
    for key, data in azurite.blobs().items():
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        (out / key).write_bytes(data)
    assert search_files(out, person_texts(roles_archive)) == []


@pytest.mark.parametrize("mlsd", [True, False], ids=["mlsd", "nlst"])
def test_forget_over_ftp(roles_archive, ftp_server, password_env, mlsd):
    ftp_server.hooks.no_mlsd = not mlsd
    to = [ftp_server.url("export"), "--to-password-env", password_env]
    root = ftp_server.root / "export"
    after = export_then_forget(roles_archive, to, root)
    assert any(b"mdupont" in b for b in after.values())  # others stay
    assert not any("/media/700000/" in p for p in after)
    manifest = json.loads((root / ".exporter-manifest.json").read_text("utf-8"))["files"]
    assert set(manifest) <= set(after) and all(manifest[p]["size"] == len(after[p]) for p in manifest)
    assert "would erase nothing" in invoke("forget", "--to", *to, "--user", PERSON).output


@pytest.fixture()
def dropbox(tls):
    from tests.connectors.remote.conftest import serve_fake
    from tests.connectors.remote.fake_dropbox import FakeDropbox

    yield from serve_fake(FakeDropbox, tls)


def test_forget_over_dropbox(roles_archive, dropbox, tls, monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_DBX_TOKEN", "good-token")
    dropbox.page_size = 7  # the listing takes several pages
    to = ["dropbox:///export", "-o", "token_env=TEST_DBX_TOKEN", "-o", f"api_host={dropbox.host}",
          "-o", f"content_host={dropbox.host}", "-o", f"ca_certs={tls[0]}"]
    r = invoke("-q", "export", "-s", roles_archive, "--to", *to, "--format", "json,csv")
    assert r.exit_code == 0, r.output

    def copy(out: Path) -> Path:
        for f in dropbox.files.values():
            (out / f.path_display.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (out / f.path_display.lstrip("/")).write_bytes(f.data)
        return out / "export"

    needles = person_texts(roles_archive)
    assert search_files(copy(tmp_path / "before"), needles)
    r = invoke("forget", "--to", *to, "--user", PERSON, "--apply")
    assert r.exit_code == 0 and "erased 1 user, 1 group membership, 9 submissions" in r.output, r.output
    assert dropbox.calls("/2/files/list_folder/continue")
    after = copy(tmp_path / "after")
    assert search_files(after, needles) == []
    assert any(b"mdupont" in p.read_bytes() for p in after.rglob("*") if p.is_file())  # others stay


@pytest.fixture()
def sharepoint(tls):
    from tests.connectors.remote.conftest import serve_fake
    from tests.connectors.remote.fake_sharepoint import FakeSharePoint

    yield from serve_fake(FakeSharePoint, tls)


def test_forget_over_sharepoint(roles_archive, sharepoint, tls, monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_SP_TOKEN", "sp-token")
    to = [f"sharepoint://{sharepoint.host}/sites/Team/Shared%20Documents/export", "-o", "token_env=TEST_SP_TOKEN",
          "-o", f"ca_bundle={tls[0]}"]
    r = invoke("-q", "export", "-s", roles_archive, "--to", *to, "--format", "json,csv")
    assert r.exit_code == 0, r.output

    def copy(out: Path) -> Path:
        for f in sharepoint.files.values():
            (out / f.path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (out / f.path.lstrip("/")).write_bytes(f.data)
        return out / "sites" / "Team" / "Shared Documents" / "export"

    needles = person_texts(roles_archive)
    assert search_files(copy(tmp_path / "before"), needles)
    r = invoke("forget", "--to", *to, "--user", PERSON, "--apply")
    assert r.exit_code == 0 and "erased 1 user, 1 group membership, 9 submissions" in r.output, r.output
    after = copy(tmp_path / "after")
    assert search_files(after, needles) == []
    assert any(b"mdupont" in p.read_bytes() for p in after.rglob("*") if p.is_file())  # others stay


@pytest.mark.parametrize("only_personal", [False, True], ids=["user", "only-personal"])
def test_forget_filters_the_xml_documents_of_a_remote(roles_archive, sftp_server, password_env, only_personal):
    """A remote holding XML only: whose submissions are whose is read from the XML itself; the
    person's submissions (or only their metadata) go, the rest of each document keeps its bytes."""
    import xml.etree.ElementTree as ET

    to = sftp_to(sftp_server, password_env, "/xml")
    assert invoke("-q", "export", "-s", roles_archive, "--to", *to, "--format", "xml").exit_code == 0
    root = sftp_server.root / "xml"
    before = tree(root)
    needles = person_texts(roles_archive, only_personal)
    assert search_files(root, needles)
    r = invoke("forget", "--to", *to, "--user", PERSON, *(["--only-personal"] if only_personal else []), "--apply")
    assert r.exit_code == 0, r.output
    assert search_files(root, needles) == []
    after = tree(root)
    ns = "{urn:exporter:forms:1}"
    for rel in (p for p in before if p.endswith("submissions.xml")):
        old, new = ET.fromstring(before[rel]), ET.fromstring(after[rel])
        assert new.tag == f"{ns}form" and new.attrib == old.attrib  # declaration and namespaces kept
        assert after[rel].startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<form xmlns="urn:exporter:forms:1"')
        kept = {s.get("id"): s for s in new.iter(f"{ns}submission")}
        for sub in old.iter(f"{ns}submission"):
            meta = {m.get("name"): m.text for m in sub.iter(f"{ns}meta")}
            theirs = PERSON in (meta.get("user_id"), meta.get("recipient_id"))
            if theirs and not only_personal:
                assert sub.get("id") not in kept
                continue
            mine = kept[sub.get("id")]
            if PERSON not in meta.values():  # other people's submissions: unchanged element by element
                assert ET.tostring(mine) == ET.tostring(sub)
            else:  # the person's metadata gone, their answers and the rest kept
                left = " ".join(m.text or "" for m in mine.iter(f"{ns}meta"))
                assert "Kowalski" not in left and "MAT-104" not in ET.tostring(mine).decode()
                assert [ET.tostring(e) for e in mine if e.tag not in (f"{ns}meta", f"{ns}extra")] == \
                    [ET.tostring(e) for e in sub if e.tag not in (f"{ns}meta", f"{ns}extra")]
        if only_personal:
            assert len(kept) == len(list(old.iter(f"{ns}submission")))
    assert "would erase nothing" in invoke("forget", "--to", *to, "--user", PERSON,
                                           *(["--only-personal"] if only_personal else [])).output


def _trim(row: list) -> list:
    """A row without its trailing empty cells (a sheet's stated width is no content)."""
    while row and row[-1] is None:
        row.pop()
    return row


def _sheets(path: Path) -> dict[str, list[list]]:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True)
    try:
        return {ws.title: [_trim([c.value for c in row]) for row in ws.iter_rows()] for ws in book.worksheets}
    finally:
        book.close()


@pytest.mark.parametrize("only_personal", [False, True], ids=["user", "only-personal"])
def test_forget_filters_the_workbooks_of_a_remote(roles_archive, sftp_server, password_env, only_personal, tmp_path):
    """The person's rows go from the workbooks (or only their metadata cells), every other row of
    every sheet is unchanged cell by cell (values and types), text stays text; the people workbooks
    are written again by the XLSX writer."""
    from openpyxl import load_workbook

    to = sftp_to(sftp_server, password_env, "/x")
    assert invoke("-q", "export", "-s", roles_archive, "--to", *to, "--format", "json,xlsx").exit_code == 0
    root = sftp_server.root / "x"
    books = sorted(p.relative_to(root).as_posix() for p in root.rglob("submissions.xlsx"))
    before = {rel: _sheets(root / rel) for rel in books}
    needles = person_texts(roles_archive, only_personal)
    assert search_files(root, needles)
    flag = ["--only-personal"] if only_personal else []
    r = invoke("forget", "--to", *to, "--user", PERSON, *flag, "--apply")
    assert r.exit_code == 0, r.output
    assert search_files(root, needles) == []
    erased = 0
    for rel in books:
        old, new = before[rel], _sheets(root / rel)
        assert list(new) == list(old)  # the same sheets, in the same order
        for title, rows in old.items():
            header = rows[0]
            assert new[title][0] == header
            key = next((header.index(k) for k in ("_submission_id", "_id") if k in header), None)
            if key is None:
                assert new[title] == rows
                continue
            main = header[key] == "_id"
            owners = {r[key]: r for r in old[[t for t in old if "_id" in old[t][0]][0]][1:]}
            want = []
            for row in rows[1:]:
                owner = owners.get(row[key]) or row
                theirs = PERSON in (owner[old_header_index(old, "_user_id")], owner[old_header_index(old, "_recipient_id")])
                if theirs and not only_personal:
                    erased += 1
                    continue
                want.append(row)
            got = new[title][1:]
            assert len(got) == len(want)
            for a, b in zip(got, want, strict=True):
                if main and PERSON in b:  # the person's metadata cells emptied, the rest as it was
                    diff = [header[i] for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
                    assert diff and all(h.startswith("_") for h in diff), diff
                else:
                    assert a == b and [type(x) for x in a] == [type(x) for x in b]
        ws = next(iter(load_workbook(root / rel).worksheets))
        assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)  # text never a formula
    assert erased or only_personal
    users = _sheets(root / "users.xlsx")["users"]
    logins = [u[users[0].index("login")] for u in users[1:] if str(u[users[0].index("id")]) == PERSON]
    assert logins == ([None] if only_personal else [])
    assert "would erase nothing" in invoke("forget", "--to", *to, "--user", PERSON, *flag).output


def test_an_xlsx_only_remote_says_whose_submissions_are_whose(roles_archive, sftp_server, password_env):
    to = sftp_to(sftp_server, password_env, "/xo")
    assert invoke("-q", "export", "-s", roles_archive, "--to", *to, "--format", "xlsx").exit_code == 0
    root = sftp_server.root / "xo"
    r = invoke("forget", "--to", *to, "--submission", "700002", "--apply")
    assert r.exit_code == 0 and "1 submission" in r.output, r.output
    ids = [row[0] for f in root.rglob("submissions.xlsx") for rows in _sheets(f).values() for row in rows]
    assert "700001" in ids and "700002" not in ids
    r = invoke("forget", "--to", *to, "--user", PERSON)  # the people workbooks say whose row is whose
    assert r.exit_code == 0 and "would erase 1 user, 1 group membership, 9 submissions" in r.output, r.output


def old_header_index(sheets: dict[str, list[list]], name: str) -> int:
    header = next(rows[0] for rows in sheets.values() if "_id" in rows[0])
    return header.index(name)


def test_a_forget_killed_on_sftp_is_finished_by_the_next(roles_archive, sftp_server, password_env, tmp_path,
                                                         monkeypatch):
    """... and the local scratch folder the killed one left (the remote's files it downloaded: the
    person's values) is removed by the next."""
    import os
    import tempfile

    to = sftp_to(sftp_server, password_env)
    assert invoke("-q", "export", "-s", roles_archive, "--to", *to, "--format", "json,csv").exit_code == 0
    root = sftp_server.root / "export"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # the next forget's temporary folder: the killed one's
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "-q", "forget", "--to", *map(str, to), "--user",
                             PERSON, "--apply"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for((root / ".exporter-forget.json").exists, proc, "the plan on the remote", every=0.001)
    kill(proc)
    r = invoke("forget", "--to", *to, "--user", PERSON, "--apply")
    assert r.exit_code == 0, r.output
    assert search_files(root, person_texts(roles_archive)) == []
    assert len((root / ".exporter-erasures.jsonl").read_text("utf-8").splitlines()) == 1
    assert not (root / ".exporter-forget.json").exists()
    assert list(scratch.glob("exporter-forget-*")) == []


def test_files_filtered_on_a_remote_are_those_an_export_without_them_makes(roles_archive, sftp_server,
                                                                            password_env):
    a, b = sftp_to(sftp_server, password_env, "/a"), sftp_to(sftp_server, password_env, "/b")
    assert invoke("-q", "export", "-s", roles_archive, "--to", *a, "--format", "json,csv,xml").exit_code == 0
    assert invoke("forget", "--to", *a, "--submission", "700002", "--apply").exit_code == 0
    f = roles_archive / "forms" / "1001" / "submissions.jsonl"  # the same account without it
    f.write_text("".join(line + "\n" for line in f.read_text("utf-8").splitlines()
                         if json.loads(line)["id"] != "700002"), "utf-8")
    assert invoke("-q", "export", "-s", roles_archive, "--to", *b, "--format", "json,csv,xml").exit_code == 0
    ta, tb = tree(sftp_server.root / "a"), tree(sftp_server.root / "b")
    # (media left aside: the archive's media index still names the submission taken out by hand)
    data = {p for p in tb if not p.startswith(".exporter") and "/media/" not in p}
    assert data == {p for p in ta if not p.startswith(".exporter") and "/media/" not in p}
    assert all(ta[p] == tb[p] for p in data), [p for p in data if ta[p] != tb[p]]
    assert not any("/media/700002/" in p for p in ta)
    assert any(p.endswith("submissions.xml") for p in data)  # the XML documents too, byte for byte


def _without_the_person(archive: Path, out: Path, only_personal: bool) -> Path:
    """The account's users and groups as they are without the person (or without their personal
    columns): what an export of the people files then writes."""
    shutil.copytree(archive, out)
    users = []
    for line in (out / "users.jsonl").read_text("utf-8").splitlines():
        u = json.loads(line)
        if u["id"] == PERSON:
            if not only_personal:
                continue
            u = {k: None if k in ("login", "first_name", "last_name", "email", "phone") else v
                 for k, v in u.items() if not k.startswith("user_ref")}
        users.append(u)
    groups = [json.loads(line) for line in (out / "groups.jsonl").read_text("utf-8").splitlines()]
    for g in groups if not only_personal else []:
        g["users"], g["leaders"] = [x for x in g["users"] if x != PERSON], [x for x in g["leaders"] if x != PERSON]
    for name, docs in (("users.jsonl", users), ("groups.jsonl", groups)):
        (out / name).write_text("".join(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n"
                                        for d in docs), "utf-8")
    return out


@pytest.mark.parametrize("only_personal", [False, True], ids=["user", "only-personal"])
@pytest.mark.parametrize("kind,fmt", [("sftp", "csv"), ("s3", "xlsx"), ("sftp", "csv;")],
                         ids=["sftp-csv", "s3-xlsx", "sftp-csv-semicolon"])
def test_people_files_without_json_are_read_back(roles_archive, request, tmp_path, kind, fmt, only_personal):
    """A remote exported without the json format: its people CSV files (or workbooks) are read
    back and written again without the person, as an export without them writes them (CSV byte
    for byte, with the delimiter and BOM they had; workbooks cell by cell)."""
    if kind == "sftp":
        server = request.getfixturevalue("sftp_server")
        env = request.getfixturevalue("password_env")

        def to(path: str) -> list:
            return sftp_to(server, env, "/" + path)

        def root(path: str) -> Path:
            return server.root / path
    else:
        server = request.getfixturevalue("s3_server")

        def to(path: str) -> list:
            return [server.url(path), *[x for k, v in server.options().items() for x in ("-o", f"{k}={v}")]]

        def root(path: str) -> Path:
            out = tmp_path / f"s3-{path}"
            shutil.rmtree(out, ignore_errors=True)
            for key, data in server.objects().items():
                (out / key).parent.mkdir(parents=True, exist_ok=True)
                (out / key).write_bytes(data)
            return out / path

    options = ["--format", "csv", "-o", "csv_delimiter=;", "-o", "csv_bom=true"] if fmt == "csv;" else ["--format", fmt]
    assert invoke("-q", "export", "-s", roles_archive, "--to", *to("a"), *options).exit_code == 0
    needles = person_texts(roles_archive, only_personal)
    assert search_files(root("a"), needles)
    flag = ["--only-personal"] if only_personal else []
    r = invoke("forget", "--to", *to("a"), "--user", PERSON, *flag)  # -o as the export had is not needed
    assert r.exit_code == 0 and ("personal values of the user" if only_personal else "1 user, 1 group membership") \
        in r.output, r.output
    assert invoke("forget", "--to", *to("a"), "--user", PERSON, *flag, "--apply").exit_code == 0
    a = root("a")
    assert search_files(a, needles) == []
    assert search_files(a, ["mdupont", "Jean Martin"]) != []  # others stay
    without = _without_the_person(roles_archive, tmp_path / "without", only_personal)
    assert invoke("-q", "export", "-s", without, "--to", *to("b"), *options).exit_code == 0
    b = root("b")
    if fmt.startswith("csv"):
        for name in ("users.csv", "groups.csv", "group_members.csv"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert (a / "users.csv").read_bytes().startswith(b"\xef\xbb\xbfid;" if fmt == "csv;" else b"id,")
    else:
        for name in ("users.xlsx", "groups.xlsx"):
            assert _sheets(a / name) == _sheets(b / name), name
    assert "would erase nothing" in invoke("forget", "--to", *to("a"), "--user", PERSON, *flag).output


def test_a_killed_exports_upload_of_a_people_file_goes_too(roles_archive, sftp_server, password_env):
    """An export killed while uploading ``users.json`` left ``users.json.<8 hex>.partial`` on the
    remote: every user, the person too; --apply removes it."""
    import shutil

    to = sftp_to(sftp_server, password_env, "/k")
    assert invoke("-q", "export", "-s", roles_archive, "--to", *to, "--format", "json,csv").exit_code == 0
    root = sftp_server.root / "k"
    for name in ("users.json", "users.csv"):
        shutil.copy(root / name, root / f"{name}.0badf00d.partial")
    assert invoke("forget", "--to", *to, "--user", PERSON, "--apply").exit_code == 0
    assert search_files(root, person_texts(roles_archive)) == []
    assert not list(root.glob("*.partial"))
