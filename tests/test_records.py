import datetime as dt
from decimal import Decimal

import pytest

from exporter.errors import BadAnswerError
from exporter.model import GeoPoint, parse_list_item
from exporter.records import flatten_submission, parse_form, parse_submission

FORM = {
    "id": "7", "name": "T", "options": {"checkbox_output_true_value": "Oui", "checkbox_output_false_value": "Non"},
    "fields": {
        "s": {"type": "section"}, "t": {"type": "text", "caption": "Texte"}, "n": {"type": "number"},
        "d": {"type": "date"}, "h": {"type": "time"}, "dt": {"type": "datetime"}, "c": {"type": "checkbox"},
        "g": {"type": "geoloc"}, "p": {"type": "photo"}, "weird": {"type": "brand_new_type"},
        "sf": {"type": "subform", "fields": {"a": {"type": "text"}, "ph": {"type": "photo"}, "q": {"type": "number"}}},
    },
}
NESTED = {
    "id": "55", "record_number": "3", "form_id": "7", "user_id": "1", "create_time": "2026-01-02 03:04:05",
    "update_time": "2026-01-03 00:00:00",
    "fields": {
        "t": {"value": "héllo"}, "n": {"value": "12,5"}, "d": {"value": "2026-02-03"}, "h": {"value": "07:30"},
        "dt": {"value": "2026-02-03 07:30"}, "c": {"value": "Oui"}, "g": {"value": "50.1,3.2"},
        "p": {"value": "a.jpg, b c.jpg"}, "weird": {"value": "kept"},
        "sf": {"value": [{"a": {"value": "r0"}, "ph": {"value": "r.jpg"}, "q": {"value": "not a number"}},
                         {"a": {"value": "r1"}, "ph": {"value": ""}, "q": {"value": "2"}}]},
    },
}


def test_nested_submission_typed_from_definition():
    form = parse_form(FORM)
    assert [f.name for f in form.value_fields()] == ["t", "n", "d", "h", "dt", "c", "g", "p", "weird"]
    sub = parse_submission(form, NESTED)
    v = sub.values
    assert v["t"] == "héllo" and v["n"] == Decimal("12.5") and v["d"] == dt.date(2026, 2, 3)
    assert v["h"] == dt.time(7, 30) and v["dt"] == dt.datetime(2026, 2, 3, 7, 30) and v["c"] is True
    assert v["g"] == GeoPoint(50.1, 3.2) and v["p"] == ("a.jpg", "b c.jpg") and v["weird"] == "kept"
    assert sub.text["n"] == "12,5"  # the served text is kept
    rows = sub.subforms["sf"]
    assert rows[0].values["q"] is None and rows[0].text["q"] == "not a number"  # nothing lost
    assert [(m.field, m.name, m.subform, m.row) for m in sub.media] == [
        ("p", "a.jpg", None, None), ("p", "b c.jpg", None, None), ("ph", "r.jpg", "sf", 0)]
    assert sub.update_time == "2026-01-03 00:00:00"


def test_flat_shape_gives_the_same_values():
    form = parse_form(FORM)
    nested = parse_submission(form, NESTED)
    flat = parse_submission(form, flatten_submission(NESTED))
    assert flat.id == nested.id and flat.values == nested.values and flat.meta == nested.meta
    assert [r.values for r in flat.subforms["sf"]] == [r.values for r in nested.subforms["sf"]]


@pytest.mark.parametrize("bad", [[], "x", {"fields": {}}, {"id": "1", "fields": []}])
def test_malformed_submission_is_a_clear_error(bad):
    with pytest.raises(BadAnswerError):
        parse_submission(parse_form(FORM), bad)


def test_list_item_parsing_keeps_raw_line():
    item = parse_list_item("Électricité:ELEC\\Câblage:ELEC-CAB|extra", 3)
    assert item.line == "Électricité:ELEC\\Câblage:ELEC-CAB|extra"
    assert item.levels[0][0].label == "Électricité" and item.levels[0][0].code == "ELEC"
    assert item.levels[1][1].label == "extra" and item.levels[1][1].code is None


def test_typed_value_agrees_with_the_submission_parser():
    from exporter.values import typed_value

    form = parse_form(FORM)
    sub = parse_submission(form, NESTED)
    for f in form.value_fields():
        cell = NESTED["fields"][f.name]
        assert typed_value(f, cell["value"], form.options, cell) == sub.values[f.name], f.name


def test_checkbox_texts_follow_each_forms_options_also_with_shared_fields():
    """The true/false texts are remembered per form definition's options: a form sharing its field
    definitions with another (same tuple, other options) still types with its own."""
    import dataclasses

    form = parse_form(FORM)
    other = dataclasses.replace(form, options={"checkbox_output_true_value": "Non",
                                               "checkbox_output_false_value": "Oui"})
    assert other.fields is form.fields
    sub = {"id": "1", "fields": {"c": {"value": "Oui"}}}
    assert parse_submission(form, sub).values["c"] is True
    assert parse_submission(other, sub).values["c"] is False
    assert parse_submission(form, sub).values["c"] is True
