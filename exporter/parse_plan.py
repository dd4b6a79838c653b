"""Per-form parse plans: what parsing a submission of one form definition needs (the converter
of each field, which fields are media or sub-forms, the keys the model reads), worked out once per
form definition and cached, so that ``records.parse_submission`` runs a flat loop."""
from __future__ import annotations

from typing import Any

from .model import BOOLEAN, LAYOUT, MEDIA, META_KEYS, SUBFORM, FieldDef, Form
from .values import CONVERTERS, Converter, as_text

#: the metadata keys as the flat shape serves them (``_`` + key)
FLAT_META_KEYS = tuple("_" + k for k in META_KEYS)


class ParsePlan:
    """What parsing a submission of one form definition needs, worked out once."""

    __slots__ = ("fields", "top", "has_bool", "bools", "known_nested", "known_flat", "names", "row_names")

    def __init__(self, fields: tuple[FieldDef, ...]):
        self.fields = fields  # kept: the cache key is its identity
        # (name, converter (None: the text as is), is_media, name starts with "_", sub-form
        # children or None)
        top: list[tuple[str, Converter | None, bool, bool, tuple[tuple[str, Converter | None, bool], ...] | None]] = []
        has_bool = False
        for f in fields:
            if f.kind == LAYOUT:
                continue
            if f.kind == SUBFORM:
                kids = tuple((c.name, CONVERTERS.get(c.kind), c.kind == MEDIA)
                             for c in f.children if c.has_value)
                has_bool = has_bool or any(c.kind == BOOLEAN for c in f.children if c.has_value)
                top.append((f.name, None, False, f.name.startswith("_"), kids))
                continue
            has_bool = has_bool or f.kind == BOOLEAN
            top.append((f.name, CONVERTERS.get(f.kind), f.kind == MEDIA, f.name.startswith("_"), None))
        self.top = tuple(top)
        self.has_bool = has_bool
        # the served keys the model reads; every other key goes to ``Submission.extra``
        self.names = frozenset(f.name for f in fields)
        self.row_names = tuple((f.name, frozenset(c.name for c in f.children)) for f in fields if f.kind == SUBFORM)
        self.known_nested = frozenset(("id", "form_id", "fields", *META_KEYS))
        self.known_flat = frozenset(("_id", "_form_id", *FLAT_META_KEYS,
                                     *(n for n in self.names if not n.startswith("_"))))
        self.bools: tuple[Any, Any] = (None, None)  # (form options, checkbox_texts) of the last form parsed


_PLANS: dict[int, ParsePlan] = {}


def parse_plan(fields: tuple[FieldDef, ...]) -> ParsePlan:
    plan = _PLANS.get(id(fields))
    if plan is None or plan.fields is not fields:
        plan = ParsePlan(fields)
        if len(_PLANS) >= 256:
            _PLANS.clear()
        _PLANS[id(fields)] = plan
    return plan


def checkbox_texts(form: Form, plan: ParsePlan | None = None) -> tuple[str | None, str | None] | None:
    """What the converters of ``form``'s checkboxes read as true and false (None: no checkbox)."""
    plan = plan or parse_plan(form.fields)
    if not plan.has_bool:
        return None
    options = form.options
    seen, texts = plan.bools
    if seen is options:  # the same form's options as for the previous submission
        return texts
    texts = as_text(options.get("checkbox_output_true_value")), as_text(options.get("checkbox_output_false_value"))
    plan.bools = (options, texts)
    return texts
