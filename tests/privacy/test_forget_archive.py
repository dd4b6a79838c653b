"""``exporter forget`` over account archive destinations (``archive://``, a zip or a folder): a dry
run counts and changes nothing; --apply writes the archive again without the person (or only their
personal columns, or the submissions asked for), verified and swapped in, so that a search of every
file (zip members unzipped) finds none of their values; files holding nothing of the request keep
their bytes; one audit line beside the archive; an archive that does not verify is refused before
anything changes; a forget SIGKILLed at any point leaves a whole archive, and the next completes."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from exporter.connectors.archive.reader import ArchiveReader

from exporter.api import verify
from exporter.cli import cli
from tests.privacy.conftest import EDITED, PERSON, PERSON_VALUES, RECIPIENT_OF, person_texts, search_files
from tests.privacy.test_forget_kill import forget_process, kill, wait_for


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def written(source: Path, target: Path) -> str:
    """The account exported to the archive destination ``target``; its URL."""
    url = f"archive://{target}"
    r = invoke("-q", "export", "-s", source, "--to", url)
    assert r.exit_code == 0, r.output
    return url


def snapshot(target: Path) -> dict[str, bytes]:
    """Every file of the archive (a zip's members unzipped)."""
    if target.is_file():
        with zipfile.ZipFile(target) as z:
            return {n: z.read(n) for n in z.namelist()}
    return {p.relative_to(target).as_posix(): p.read_bytes() for p in sorted(target.rglob("*")) if p.is_file()}


def submissions(target: Path) -> dict[str, dict]:
    reader = ArchiveReader(target)
    try:
        return {str(s["id"]): s for f in reader.forms_index() for s in reader.submissions_raw(str(f["id"]))}
    finally:
        reader.close()


@pytest.mark.parametrize("name", ["acme.zip", "acme"], ids=["zip", "folder"])
def test_forget_a_user_from_an_archive(roles_archive, tmp_path, name):
    target = tmp_path / "dest" / name
    url = written(roles_archive, target)
    needles = person_texts(roles_archive)
    assert len(search_files(target.parent, needles)) > 5
    before = snapshot(target)

    r = invoke("forget", "--to", url, "--user", PERSON)
    assert r.exit_code == 0 and "would erase 1 user, 1 group membership, 9 submissions" in r.output, r.output
    assert snapshot(target) == before and sorted(p.name for p in target.parent.iterdir()) == [name]

    r = invoke("forget", "--to", url, "--user", PERSON, "--apply", "--reference", "T-9")
    assert r.exit_code == 0 and "erased 1 user, 1 group membership, 9 submissions" in r.output, r.output
    assert target.is_file() == name.endswith(".zip")  # still a zip, or still a folder
    assert search_files(target.parent, needles) == []  # every file, a zip's members unzipped
    assert verify(target).ok
    after = snapshot(target)
    subs = submissions(target)
    assert len(subs) == 41 and RECIPIENT_OF not in subs
    assert subs[EDITED]["user_id"] == "102" and subs[EDITED]["update_user_name"] is None
    assert "update_user_ref1" not in subs[EDITED]
    assert any(b"mdupont" in data for data in after.values())  # the others stay
    # what held nothing of the person keeps its bytes (the manifest aside)
    same = [p for p in before if p in after and p != "manifest.json" and before[p] == after[p]]
    assert "lists.jsonl" in same and "forms.jsonl" in same and any(p.endswith("/form.json") for p in same)
    theirs = _theirs(roles_archive)
    media = {p for p in before if "/media/" in p}
    assert {p for p in media if any(f"/media/{s}/" in p for s in theirs)}.isdisjoint(after)  # theirs go
    assert {p for p in media if not any(f"/media/{s}/" in p for s in theirs)} <= set(after)  # the others' stay
    (line,) = (target.parent / f"{name}.erasures.jsonl").read_text("utf-8").splitlines()
    entry = json.loads(line)
    assert entry["request"] == {"subject": "user", "only_personal": False, "reference": "T-9"}
    assert entry["erased"]["submissions"] == 9 and entry["destination"] == f"archive {target}"
    assert not any(v in line for v in PERSON_VALUES)
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([name, f"{name}.erasures.jsonl"])

    r = invoke("forget", "--to", url, "--user", PERSON, "--apply")  # again: nothing left to erase
    assert r.exit_code == 0 and "erased nothing" in r.output, r.output
    assert snapshot(target) == after


def _theirs(archive: Path) -> set[str]:
    return {str(s["id"]) for s in submissions(archive).values() if PERSON in (s.get("user_id"), s.get("recipient_id"))}


def test_only_personal_columns_of_an_archive(roles_archive, tmp_path):
    target = tmp_path / "dest" / "acme.zip"
    url = written(roles_archive, target)
    r = invoke("forget", "--to", url, "--user", PERSON, "--only-personal", "--apply")
    assert r.exit_code == 0 and "personal values of the user" in r.output, r.output
    assert search_files(target.parent, PERSON_VALUES) == []
    subs = submissions(target)
    assert len(subs) == 50 and subs[RECIPIENT_OF]["recipient_id"] == PERSON  # rows and ids stay
    answers = [t for t in person_texts(roles_archive) if t not in PERSON_VALUES]
    assert search_files(target.parent, answers[:3]) != []  # their answers too
    reader = ArchiveReader(target)
    try:
        (user,) = [u for u in reader.users_raw() if u["id"] == PERSON]
    finally:
        reader.close()
    assert user["login"] is None and not any(k.startswith("user_ref") for k in user)


def test_submissions_by_id_from_an_archive(roles_archive, tmp_path):
    target = tmp_path / "dest" / "acme"
    url = written(roles_archive, target)
    r = invoke("forget", "--to", url, "--submission", "700002", "--submission", "800001", "--apply")
    assert r.exit_code == 0 and "erased 2 submissions" in r.output, r.output
    assert set(submissions(roles_archive)) - set(submissions(target)) == {"700002", "800001"}
    assert verify(target).counts["submissions"] == 48
    assert not list(target.glob("forms/*/media/700002")) and not list(target.glob("forms/*/media/800001"))
    assert list(target.glob("forms/*/media/700003"))


def test_an_archive_that_does_not_verify_is_refused_first(roles_archive, tmp_path):
    target = tmp_path / "dest" / "acme"
    url = written(roles_archive, target)
    (target / "lists.jsonl").write_bytes((target / "lists.jsonl").read_bytes() + b"\n")
    before = snapshot(target)
    r = invoke("forget", "--to", url, "--user", PERSON, "--apply")
    assert r.exit_code != 0 and "does not verify" in r.output and "Traceback" not in r.output, r.output
    assert snapshot(target) == before and sorted(p.name for p in target.parent.iterdir()) == ["acme"]


@pytest.mark.parametrize("name", ["acme.zip", "acme"], ids=["zip", "folder"])
@pytest.mark.parametrize("when", ["job", "new"], ids=["job-written", "new-archive-written"])
def test_an_archive_forget_killed_is_finished_by_the_next(roles_archive, tmp_path, name, when):
    """Killed once its job is written (the new archive being written), or once the new archive
    exists (verified or not, swapped or not): a whole archive is there (or, between a folder's two
    renames, beside it under the job's names), and the next forget completes."""
    target = tmp_path / "dest" / name
    url = written(roles_archive, target)
    folder = target.parent
    proc = forget_process("--to", url)

    def reached() -> bool:
        names = [p.name for p in folder.iterdir()]
        if when == "job":
            return f".{name}.forget.json" in names
        return any(n.endswith(".new") for n in names)

    wait_for(reached, proc, f"the {when}", every=0.001)
    kill(proc)
    assert (folder / f".{name}.forget.json").is_file()
    left = [p for p in folder.iterdir() if p.name != f".{name}.forget.json" and not p.name.endswith(".partial")]
    assert any(verify(p).ok for p in left)  # the old archive or the new, whole

    r = invoke("forget", "--to", url, "--user", PERSON, "--apply")
    assert r.exit_code == 0, r.output
    assert verify(target).ok and len(submissions(target)) == 41
    assert search_files(folder, person_texts(roles_archive)) == []
    assert sorted(p.name for p in folder.iterdir()) == sorted([name, f"{name}.erasures.jsonl"])  # no debris
    lines = (folder / f"{name}.erasures.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(x)["erased"]["submissions"] for x in lines] == [9]


def stopped_between_renames(roles_archive: Path, tmp_path: Path) -> tuple[Path, str, dict]:
    """A folder archive whose forget was killed between its two renames (its job verified the new
    archive, the old one renamed aside): the target, its URL, the job."""
    import os

    from exporter.connectors.archive.eraser import manifest_digest
    from exporter.connectors.archive.sink import ArchiveSink

    from exporter.privacy.archive_erase import rewrite_archive
    from exporter.privacy.forget import Request, audit_line, new_erasure_id

    target = tmp_path / "dest" / "acme"
    url = written(roles_archive, target)
    request = Request(user_id=PERSON)
    eraser = ArchiveSink(target).eraser()
    job = {"request": request.as_doc(), "counts": eraser.plan(request), "zip": False, "old": manifest_digest(target)}
    job["line"] = audit_line(new_erasure_id(), eraser.name, request, job["counts"])
    new, old = eraser._names(job)
    rewrite_archive(target, new, request, zip_output=False)
    eraser._save({**job, "new": manifest_digest(new)})
    os.rename(target, old)  # killed here
    return target, url, job


def test_a_folder_left_between_its_two_renames_is_finished(roles_archive, tmp_path):
    """The one moment a folder archive is not under its name: its job verified the new one, the
    old one was renamed aside, and the forget was killed before the new one took its place. A dry
    run counts what is beside it; the next --apply puts it in place."""
    target, url, job = stopped_between_renames(roles_archive, tmp_path)

    r = invoke("forget", "--to", url, "--user", PERSON)
    assert r.exit_code == 0 and "would erase nothing" in r.output, r.output
    assert not target.exists()  # a dry run changes nothing
    r = invoke("forget", "--to", url, "--user", PERSON, "--apply")
    assert r.exit_code == 0, r.output
    assert verify(target).ok and len(submissions(target)) == 41
    assert sorted(p.name for p in target.parent.iterdir()) == ["acme", "acme.erasures.jsonl"]
    (line,) = (target.parent / "acme.erasures.jsonl").read_text("utf-8").splitlines()
    assert line == job["line"]


def test_a_zip_holding_the_archive_under_a_top_folder(roles_archive, tmp_path):
    """A zip made of the archive's folder (``zip -r``): read as the same archive, written again at
    its root."""
    folder = tmp_path / "acme"
    written(roles_archive, folder)
    target = tmp_path / "dest" / "acme.zip"
    target.parent.mkdir()
    with zipfile.ZipFile(target, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, "acme/" + p.relative_to(folder).as_posix())
    r = invoke("forget", "--to", f"archive://{target}", "--user", PERSON, "--apply")
    assert r.exit_code == 0 and "9 submissions" in r.output, r.output
    assert verify(target).ok and len(submissions(target)) == 41
    with zipfile.ZipFile(target) as z:
        assert "manifest.json" in z.namelist()
    assert search_files(target.parent, person_texts(roles_archive)) == []


def test_an_export_after_a_folder_left_between_its_renames(roles_archive, tmp_path):
    """Killed between a folder's two renames, then an export wrote the archive again: the old copy
    set aside (the person's data) is stale; the next --apply erases the new export and removes it,
    instead of failing on the name it holds at every run."""
    target, url, _job = stopped_between_renames(roles_archive, tmp_path)
    written(roles_archive, target)  # then an export, the person still in the service

    r = invoke("forget", "--to", url, "--user", PERSON, "--apply")
    assert r.exit_code == 0, r.output
    assert verify(target).ok and len(submissions(target)) == 41
    assert search_files(target.parent, person_texts(roles_archive)) == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["acme", "acme.erasures.jsonl"]


@pytest.mark.parametrize("name", ["acme.zip", "acme"], ids=["zip", "folder"])
def test_what_a_killed_export_left_beside_the_archive_goes_too(roles_archive, tmp_path, name):
    """An export killed while writing leaves its temporary copy (``.<name>.*.partial``; a folder's
    replaced one under ``.<name>.*.old``) beside the archive: the person's data, which --apply
    removes with the rest."""
    import shutil

    target = tmp_path / "dest" / name
    url = written(roles_archive, target)
    (target.parent / f".{name}.zip.k1ll3d_x.partial").write_bytes(b"another archive's, being written")
    for debris in (f".{name}.k1ll3d_x.partial", f".{name}.0ld_0ld0.old"):
        if target.is_dir():
            shutil.copytree(target, target.parent / debris)
        else:
            shutil.copy(target, target.parent / debris)
    r = invoke("forget", "--to", url, "--user", PERSON, "--apply")
    assert r.exit_code == 0, r.output
    assert search_files(target.parent, person_texts(roles_archive)) == []
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([name, f"{name}.erasures.jsonl",
                                                                       f".{name}.zip.k1ll3d_x.partial"])


def test_an_archive_behind_a_symbolic_link_is_erased_where_it_is(roles_archive, tmp_path):
    """The link was replaced by the new archive and the archive it pointed to, the person in it,
    stayed as it was."""
    import os

    real = tmp_path / "real" / "acme.zip"
    written(roles_archive, real)
    link = tmp_path / "dest" / "acme.zip"
    link.parent.mkdir()
    os.symlink(real, link)
    r = invoke("forget", "--to", f"archive://{link}", "--user", PERSON, "--apply")
    assert r.exit_code == 0 and "9 submissions" in r.output, r.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert verify(real).ok and len(submissions(real)) == 41
    assert search_files(real.parent, person_texts(roles_archive)) == []


@pytest.mark.parametrize("name, mode", [("acme.zip", 0o600), ("acme", 0o750)], ids=["zip", "folder"])
def test_the_archive_keeps_its_permissions(roles_archive, tmp_path, name, mode):
    """A zip its owner made 0600 (it holds people) was written again with the umask's 0644."""
    import os

    target = tmp_path / "dest" / name
    url = written(roles_archive, target)
    os.chmod(target, mode)
    r = invoke("forget", "--to", url, "--user", PERSON, "--apply")
    assert r.exit_code == 0 and "9 submissions" in r.output, r.output
    assert os.stat(target).st_mode & 0o777 == mode
