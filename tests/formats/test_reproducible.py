"""Same data exported twice gives byte-identical files, in every format (``formats.stable``):
no wall-clock time in ZIP entries, Office core properties, PDF dates and IDs, or image names."""
from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from exporter.formats.docx_writer import DocxWriter
from exporter.formats.pdf_writer import PdfWriter
from exporter.formats.stable import EPOCH, newest
from exporter.formats.xlsx_writer import XlsxWriter

from exporter.cli import cli
from tests.formats.conftest import build_dataset, run_writer
from tests.formats.report_fixtures import image_dataset

FORMATS = ("json", "csv", "xlsx", "xml", "docx", "pdf")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _differ(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def test_exporting_the_same_archive_twice_gives_identical_files(sample_archive, tmp_path):
    outs = []
    for i in (1, 2):
        if i == 2:
            time.sleep(1.1)  # another wall-clock second: any time taken from the clock shows
        out = tmp_path / f"out{i}"
        r = CliRunner().invoke(cli, ["export", "-s", str(sample_archive), "--to", str(out), "--format",
                                     ",".join(FORMATS)], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        outs.append(_files(out))
    a, b = outs
    kinds = {Path(k).suffix for k in a}
    assert {".json", ".jsonl", ".csv", ".xlsx", ".xml", ".docx", ".pdf"} <= kinds
    assert _differ(a, b) == []


@pytest.mark.parametrize(("cls", "options"), [(DocxWriter, {"docx_single": True}),
                                              (PdfWriter, {"pdf_single": True})])
def test_single_documents_are_identical_across_runs(tmp_path, cls, options):
    runs = []
    for i in (1, 2):
        if i == 2:
            time.sleep(1.1)
        ds = image_dataset()
        ds.submissions = [s for s in ds.submissions if s.id != "1002"]  # its 40,000 characters: slow
        run_writer(cls, tmp_path / str(i), options, ds.records())
        runs.append(_files(tmp_path / str(i)))
    assert runs[0] and _differ(*runs) == []


def test_file_times_come_from_the_data(tmp_path):
    ds = image_dataset()
    run_writer(DocxWriter, tmp_path, {}, ds.records())
    sub = ds.submissions[0]
    path = next(tmp_path.rglob(f"{sub.id}.docx"))
    with zipfile.ZipFile(path) as z:
        assert {i.date_time for i in z.infolist()} == {newest(sub.update_time).timetuple()[:6]}
        core = z.read("docProps/core.xml").decode()
    assert f"<dcterms:modified xsi:type=\"dcterms:W3CDTF\">{newest(sub.update_time):%Y-%m-%dT%H:%M:%S}Z" in core
    assert newest(None, "not a time") == EPOCH


def test_exporting_the_same_account_twice_from_the_web_service_gives_identical_files(sample_archive, tmp_path):
    # the main road: a live export carries no wall clock either (no exported_at in XML or reports)
    from exporter.testing.fake_server import FakeKizeoServer

    outs = []
    with FakeKizeoServer(str(sample_archive), "tok-repro") as srv:
        for i in (1, 2):
            if i == 2:
                time.sleep(1.1)
            out = tmp_path / f"live{i}"
            r = CliRunner().invoke(cli, ["export", "-s", srv.base_url, "--token-env", "KZ_REPRO", "--to", str(out),
                                         "--format", ",".join(FORMATS), "-o", "docx_single=true"],
                                   env={"KZ_REPRO": "tok-repro"}, catch_exceptions=False)
            assert r.exit_code == 0, r.output
            outs.append({k: v for k, v in _files(out).items() if not k.startswith(".exporter")})
    a, b = outs
    assert any(k.endswith(".xml") for k in a) and any(k.endswith(".docx") for k in a)
    assert _differ(a, b) == []


@pytest.mark.parametrize("cls", [DocxWriter, XlsxWriter])
def test_a_time_past_what_a_zip_can_date_still_writes_the_file(tmp_path, cls):
    # a placeholder update time ("9999-12-31"): ZIP entries can be dated up to 2107 only
    ds = build_dataset()
    ds.submissions[0].meta["update_time"] = "9999-12-31 23:59:59"
    run_writer(cls, tmp_path, {}, ds.records())
    sid = ds.submissions[0].id
    paths = [p for p in tmp_path.rglob(f"*.{cls.key}") if p.name in (f"{sid}.docx", "submissions.xlsx")]
    years = set()
    for path in paths:
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None
            years.add(max(i.date_time for i in z.infolist())[0])
    assert 2107 in years  # the latest date a ZIP entry can carry
