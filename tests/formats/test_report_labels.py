"""Report labels: ``report_lang=auto`` (the default) takes the form's language when the service
tells it, else English; counts agree with their number in each language."""
from __future__ import annotations

import json

import docx
import pytest
from click.testing import CliRunner
from exporter.formats.base import OutputDir
from exporter.formats.docx_writer import DocxWriter
from exporter.formats.labels import LABELS, counted, file_size, form_language, text_language
from exporter.formats.pdf_writer import PdfWriter
from exporter.formats.report import ReportOptions
from pypdf import PdfReader

from exporter.cli import cli
from exporter.errors import ConfigError
from exporter.model import Account
from exporter.records import parse_form
from tests.formats.conftest import RAW_FORM, build_dataset, run_writer
from tests.formats.report_fixtures import extra_records


def _docx_text(root, out, stem: str) -> list[str]:
    path = root / next(p for p in out.published if p.stem == stem and p.suffix == ".docx")
    doc = docx.Document(path)
    cells = [c.text for t in doc.tables for r in t.rows for c in r.cells]
    return [p.text for p in doc.paragraphs] + cells


@pytest.mark.parametrize(("lang", "n", "text"), [
    ("en", 0, "0 rows"), ("en", 1, "1 row"), ("en", 2, "2 rows"),
    ("fr", 0, "0 ligne"), ("fr", 1, "1 ligne"), ("fr", 2, "2 lignes"), ("fr", 12, "12 lignes"),
])
def test_counts_agree_with_their_number(lang, n, text):
    assert counted(n, "rows", LABELS[lang]) == text


def test_auto_is_the_default_and_reads_the_forms_language():
    assert ReportOptions.from_options({}).lang == "auto"
    french = parse_form(RAW_FORM)  # checkbox output "Oui"/"Non"
    assert form_language(french, None) == "fr"
    english = parse_form({**RAW_FORM, "options": {"checkbox_output_true_value": "Yes",
                                                  "checkbox_output_false_value": "No"}})
    assert form_language(english, None) == "en"
    silent = parse_form({**RAW_FORM, "options": {}})
    assert form_language(silent, None) is None
    assert form_language(silent, Account(source="x", raw={"language": "fr_FR"})) == "fr"
    assert form_language(parse_form({**RAW_FORM, "options": {}, "lang": "en-GB"}), None) == "en"
    assert form_language(parse_form({**RAW_FORM, "options": {}, "locale": "de_DE"}), None) is None  # no labels
    opts = ReportOptions.from_options({})
    assert opts.labels(french)["yes"] == "Oui" and opts.labels(silent)["yes"] == "Yes"
    assert ReportOptions.from_options({"report_lang": "en"}).labels(french)["yes"] == "Yes"


def test_french_form_gets_french_labels_and_plurals_by_default(tmp_path):
    out, _ = run_writer(DocxWriter, tmp_path, {}, build_dataset().records())
    one = _docx_text(tmp_path, out, "1003")  # one sub-form row
    assert "Lines (1 ligne)" in one and "Never filled (0 ligne)" in one
    assert "Numéro" in one and "Oui" in _docx_text(tmp_path, out, "1001")
    assert "Lines (2 lignes)" in _docx_text(tmp_path, out, "1001")
    assert not any("rows" in t for t in one)


def test_pdf_follows_the_same_rule(tmp_path):
    out, _ = run_writer(PdfWriter, tmp_path, {}, build_dataset().records())
    path = tmp_path / next(p for p in out.published if p.stem == "1003")
    text = "\n".join(p.extract_text() for p in PdfReader(path).pages)
    assert "Lines (1 ligne)" in text and "Id de la saisie" in text


def test_form_that_tells_nothing_gets_english_with_plurals(tmp_path):
    out, _ = run_writer(DocxWriter, tmp_path, {}, extra_records())
    text = _docx_text(tmp_path, out, "s-1")
    assert "Wide table (2 rows)" in text and "Submission id" in text
    out2, _ = run_writer(DocxWriter, tmp_path / "en", {"report_lang": "en"}, build_dataset().records())
    assert "Lines (1 row)" in _docx_text(tmp_path / "en", out2, "1003")


def test_unknown_language_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="expected auto, en or fr"):
        PdfWriter(OutputDir(tmp_path), {"report_lang": "de"})


def test_a_form_that_only_speaks_through_its_captions(sample_archive):
    """The demo's "Bon de livraison" has checkbox output 1/0: its words tell it is French."""
    delivery = parse_form(json.loads((sample_archive / "forms" / "1002" / "form.json").read_text("utf-8")))
    assert delivery.options["checkbox_output_true_value"] == "1"
    assert form_language(delivery, None) == "fr"
    assert text_language(["Adresse de livraison", "Livré le", "Signature du client"]) == "fr"
    assert text_language(["Name of the site", "Date of the visit", "Your comments"]) == "en"
    assert text_language(["Name", "Photos", "Status"]) is None  # unclear: English by default
    assert text_language(["Réunion", "Détails", "Long text", "Voice memo", "Site photos", "Wide table",
                          "Column 1", "Column 2", "Notes", "Label"]) is None  # mostly English


def test_demo_report_reads_french(sample_archive, tmp_path):
    r = CliRunner().invoke(cli, ["export", "-s", str(sample_archive), "--form", "1002", "--to", str(tmp_path),
                                 "--format", "docx"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = docx.Document(next(tmp_path.rglob("800000.docx")))
    paras = [p.text for p in doc.paragraphs]
    assert "Produits livrés (1 ligne)" in paras
    kv = {r.cells[0].text: r.cells[1].text for t in doc.tables for r in t.rows if len(r.cells) == 2}
    assert kv["Livraison complète"] in ("Oui", "Non") and "Id de la saisie" in kv


@pytest.mark.parametrize(("lang", "size", "text"), [
    ("en", 0, "0 bytes"), ("en", 1, "1 byte"), ("en", 999, "999 bytes"), ("en", 2700, "2.7 kB"),
    ("fr", 0, "0 octet"), ("fr", 1, "1 octet"), ("fr", 2, "2 octets"), ("fr", 2700, "2,7 ko"),
])
def test_media_sizes_agree_with_their_number(lang, size, text):
    assert file_size(size, LABELS[lang]) == text
