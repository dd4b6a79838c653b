"""The built-in file formats as the registry sees them (entry point group ``exporter.formats``):
key, description, writer class (imported when used) and the options each writer reads. Shared by
the two report formats: the ``report_*`` options."""
from __future__ import annotations

from exporter.options import Option
from exporter.registry import Format

from .labels import LABELS

REPORT_OPTIONS = (
    Option("report_max_submissions", "int", 0, "single mode: a new volume every N submissions (0: never)", min=0),
    Option("report_image_max_px", "int", 1600, "longest side of embedded images; 0 keeps the original size", min=0),
    Option("report_lang", "text", "auto", "report labels: the form's language when it tells it (auto), or one "
           "language", choices=("auto", *LABELS)),
    Option("report_page_size", "text", "A4", "page size", choices=("A4", "letter")),
)

JSON = Format("json", "exporter.formats.json_writer:JsonWriter",
              "JSON Lines per form (submissions.jsonl), a pretty JSON per submission, form definitions, users, "
              "groups and external lists as JSON",
              (Option("json_per_submission", "bool", True, "also write submissions/<id>.json"),), order=10)
CSV = Format("csv", "exporter.formats.csv_writer:CsvWriter",
             "CSV (RFC 4180, UTF-8): one table per form and per sub-form, users, groups, group members, "
             "external lists",
             (Option("csv_delimiter", "text", ",", "field separator", choices=(",", ";")),
              Option("csv_bom", "bool", False, "write a UTF-8 BOM (helps Excel on Windows)"),
              Option("csv_formula_guard", "bool", True, "text cells starting with = + - @ (or their full-width "
                     "forms), tab or CR, after any leading spaces, get a leading ' (formula injection), "
                     "except phone numbers and signed numbers")), order=20)
XLSX = Format("xlsx", "exporter.formats.xlsx_writer:XlsxWriter",
              "XLSX workbooks: one per form (a sheet per sub-form) with real numbers, dates and booleans, links to "
              "media; users, groups and each external list", order=30)
XML = Format("xml", "exporter.formats.xml_writer:XmlWriter",
             "XML: one streamed document per form, valid against the published exporter-forms.xsd", order=40)
DOCX = Format("docx", "exporter.formats.docx_writer:DocxWriter",
              "Word report per submission (docx_single: one document per form)",
              (Option("docx_single", "bool", False, "one document per form instead of one per submission"), *REPORT_OPTIONS),
              order=50)
PDF = Format("pdf", "exporter.formats.pdf_writer:PdfWriter",
             "PDF report per submission (pdf_single: one PDF per form with a table of contents)",
             (Option("pdf_single", "bool", False, "one document per form instead of one per submission"), *REPORT_OPTIONS),
             order=60)
