"""``--pseudonymise SPEC``: which data to pseudonymise, and how.

A SPEC is one or more rules, given as repeated options or separated by commas::

    RULE      = SELECTOR "=" METHOD
    SELECTOR  = "field:" NAME        a field by name, top-level or in a sub-form (every form)
              | "type:" TYPE         every field of a service type (geoloc, signature, date, ...),
                                     sub-form fields included
              | "users"              the users' personal columns: login, names, email, phone, refs
              | "user:" COLUMN       one of them (login, names, email, phone or refs)
    METHOD    = "hmac"               keyed HMAC-SHA256 (hex), the same for the same value and key
              | "drop"               not exported (a field leaves the form; its media too)
              | "round:" DIGITS      geolocation to DIGITS decimals (0 to 8)
              | "round:month"        dates and date-times to the first day of their month

A ``\\`` escapes a comma or a backslash in a field name (``field:a\\,b=drop``); the method
follows the last ``=``. A field named by ``field:`` is pseudonymised whatever its type; ``type:``
rules apply to the fields no ``field:`` rule names. Which methods fit which kind of field:

=======================================  ==================================
kind (service types)                     methods
=======================================  ==================================
text, choice (text, textarea, email,     hmac, drop
phone, barcode, list, select, ...)
number, boolean, time                    hmac (the field becomes text), drop
date, datetime                           hmac (becomes text), round:month, drop
geoloc                                   hmac (becomes text), round:N, drop
media (photo, signature, attached, ...)  drop
subform                                  drop (the whole table and its media)
=======================================  ==================================

Everything here is checked before anything is created (``ConfigError``, a usage error); a
``field:`` rule is checked against the forms' definitions too (``check_forms``).
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.errors import ConfigError
from exporter.model import (
    BOOLEAN,
    CHOICE,
    DATE,
    DATETIME,
    FIELD_TYPES,
    GEOLOC,
    LAYOUT,
    MEDIA,
    NUMBER,
    SUBFORM,
    TEXT,
    TIME,
    FieldDef,
    Form,
    kind_of,
)

from .personal import GROUPS

#: shortest key accepted for hmac (a short key makes the pseudonyms of short values guessable)
MIN_KEY_CHARS = 16
#: most decimals ``round:N`` keeps for a geolocation
MAX_DIGITS = 8

#: the methods (by name) that fit each kind of field
FITS: dict[str, tuple[str, ...]] = {
    TEXT: ("hmac", "drop"), CHOICE: ("hmac", "drop"),
    NUMBER: ("hmac", "drop"), BOOLEAN: ("hmac", "drop"), TIME: ("hmac", "drop"),
    DATE: ("hmac", "round:month", "drop"), DATETIME: ("hmac", "round:month", "drop"),
    GEOLOC: ("hmac", "round:N", "drop"),
    MEDIA: ("drop",), SUBFORM: ("drop",), LAYOUT: (),
}


@dataclass(frozen=True)
class Method:
    name: str  # "hmac", "drop" or "round"
    digits: int | None = None  # round:N
    month: bool = False  # round:month

    @property
    def label(self) -> str:
        """Its name as ``FITS`` lists it."""
        if self.name != "round":
            return self.name
        return "round:month" if self.month else "round:N"

    def fits(self, kind: str) -> bool:
        return self.label in FITS.get(kind, ())


@dataclass(frozen=True)
class Rule:
    selector: str  # "field", "type" or "user"
    target: str  # a field name, a field type (lower case) or a column group
    method: Method
    text: str  # the rule as given, for messages


@dataclass(frozen=True)
class PseudonymiseSpec:
    """What ``--pseudonymise`` asked for. The key is held by reference (an environment variable
    or a file) and read by ``key()``; the spec itself travels to worker processes."""

    rules: tuple[Rule, ...]
    key_env: str | None = None
    key_file: str | None = None
    #: the archive destination is pseudonymised too (by default it keeps the data as served)
    archive: bool = False

    @property
    def needs_key(self) -> bool:
        return any(r.method.name == "hmac" for r in self.rules)

    def key(self) -> bytes | None:
        """The HMAC key (None when no rule uses hmac), read from its variable or file."""
        if not self.needs_key:
            return None
        from exporter.secrets import read_secret

        value = read_secret(env=self.key_env, file=self.key_file, what="pseudonymisation key")
        if len(value) < MIN_KEY_CHARS:
            where = f"${self.key_env}" if self.key_env else str(self.key_file)
            raise ConfigError(f"the pseudonymisation key ({where}) is {len(value)} characters long: give at "
                              f"least {MIN_KEY_CHARS} (e.g. the output of `openssl rand -hex 32`)")
        return value.encode("utf-8")

    def field_rule(self, name: str) -> Rule | None:
        for r in self.rules:
            if r.selector == "field" and r.target == name:
                return r
        return None

    def type_rule(self, field_type: str) -> Rule | None:
        t = (field_type or "").lower()
        for r in self.rules:
            if r.selector == "type" and r.target == t:
                return r
        return None

    def rule_for(self, f: FieldDef) -> Rule | None:
        """The rule that applies to a field: the one naming it, else the one for its type."""
        return self.field_rule(f.name) or self.type_rule(f.type)

    def user_groups(self, method: str) -> tuple[str, ...]:
        """The personal column groups given ``method`` (``hmac`` or ``drop``)."""
        return tuple(r.target for r in self.rules if r.selector == "user" and r.method.name == method)


def split_rules(value: str) -> list[str]:
    """Rules separated by commas; ``\\,`` and ``\\\\`` are a comma and a backslash of a name."""
    out, cur, i = [], [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in ",\\":
            cur.append(value[i + 1])
            i += 2
            continue
        if c == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return [r.strip() for r in out if r.strip()]


def _method(text: str, rule: str) -> Method:
    m = text.strip().lower()
    if m in ("hmac", "drop"):
        return Method(m)
    if m == "round:month":
        return Method("round", month=True)
    if m.startswith("round:"):
        digits = m[len("round:"):]
        if digits.isdigit() and int(digits) <= MAX_DIGITS:
            return Method("round", digits=int(digits))
        raise ConfigError(f"--pseudonymise {rule!r}: round takes a number of decimals from 0 to {MAX_DIGITS} "
                          "(geolocation) or 'month' (dates)")
    raise ConfigError(f"--pseudonymise {rule!r}: unknown method {text!r}; use hmac, drop, round:N or round:month")


def _nearest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def parse_rule(text: str) -> Rule:
    selector, eq, method_text = text.rpartition("=")
    if not eq or not selector.strip():
        raise ConfigError(f"--pseudonymise {text!r}: expected SELECTOR=METHOD (e.g. field:email=hmac, "
                          "type:geoloc=round:3, users=hmac)")
    method = _method(method_text, text)
    sel = selector.strip()
    if sel.lower() == "users":
        return _user_rule("*", method, text)
    head, colon, target = sel.partition(":")
    head = head.strip().lower()
    if not colon or head not in ("field", "type", "user") or not target.strip():
        raise ConfigError(f"--pseudonymise {text!r}: unknown selector {sel!r}; use field:NAME, type:TYPE, users "
                          f"or user:COLUMN")
    if head == "user":
        return _user_rule(target.strip().lower(), method, text)
    if head == "field":
        return Rule("field", target, method, text)  # a name is kept exactly (spaces too)
    ftype = target.strip().lower()
    if ftype not in FIELD_TYPES:
        raise ConfigError(f"--pseudonymise {text!r}: unknown field type {ftype!r}{_nearest(ftype, FIELD_TYPES)}; "
                          f"known: {', '.join(sorted(FIELD_TYPES))}")
    kind = kind_of(ftype)
    if not method.fits(kind):
        raise ConfigError(f"--pseudonymise {text!r}: {method.label} does not fit {ftype} fields ({kind}); "
                          f"they take {_fits_text(kind)}")
    return Rule("type", ftype, method, text)


def _fits_text(kind: str) -> str:
    return " or ".join(FITS.get(kind, ())) or "nothing (layout only, no value)"


def _user_rule(group: str, method: Method, text: str) -> Rule:
    if method.name == "round":
        raise ConfigError(f"--pseudonymise {text!r}: users' columns take hmac or drop")
    if group != "*" and group not in GROUPS:
        raise ConfigError(f"--pseudonymise {text!r}: unknown user column {group!r}{_nearest(group, GROUPS)}; "
                          f"use one of {', '.join(GROUPS)}")
    return Rule("user", group, method, text)


def parse_spec(values: Iterable[str], *, key_env: str | None = None, key_file: str | None = None,
               archive: bool = False) -> PseudonymiseSpec | None:
    """The spec of ``--pseudonymise`` values (None when none is given), checked: a bad rule, two
    rules for the same fields, a missing or needless key are each one ``ConfigError``."""
    rules: list[Rule] = []
    for value in values:
        for text in split_rules(value):
            rule = parse_rule(text)
            if rule.selector == "user" and rule.target == "*":
                rules.extend(Rule("user", g, rule.method, text) for g in GROUPS)
            else:
                rules.append(rule)
    if not rules:
        if key_env or key_file or archive:
            given = "--pseudonymise-key-env" if key_env else "--pseudonymise-key-file" if key_file else \
                "--pseudonymise-archive"
            raise ConfigError(f"{given} is for --pseudonymise SPEC, which this run does not give")
        return None
    seen: dict[tuple[str, str], str] = {}
    for r in rules:
        other = seen.setdefault((r.selector, r.target), r.text)
        if other != r.text:
            raise ConfigError(f"--pseudonymise: {other!r} and {r.text!r} both choose {r.selector} {r.target}")
    if key_env and key_file:
        raise ConfigError("give the pseudonymisation key once: --pseudonymise-key-env or --pseudonymise-key-file")
    spec = PseudonymiseSpec(tuple(rules), key_env=key_env, key_file=key_file, archive=archive)
    if spec.needs_key and not (key_env or key_file):
        raise ConfigError("--pseudonymise ...=hmac needs a key: --pseudonymise-key-env NAME or "
                          "--pseudonymise-key-file PATH (at least 16 characters, e.g. `openssl rand -hex 32`)")
    if not spec.needs_key and (key_env or key_file):
        raise ConfigError("--pseudonymise-key-env/--pseudonymise-key-file: no rule of --pseudonymise uses hmac")
    if key_file and not os.path.exists(os.path.expanduser(key_file)):
        raise ConfigError(f"pseudonymisation key file {key_file} does not exist")
    return spec


def check_form(spec: PseudonymiseSpec, form: Form) -> dict[str, tuple[FieldDef, Rule]]:
    """The rule applied to each field of ``form`` (top-level fields by name, sub-form fields as
    ``sub-form/field``), a ``ConfigError`` when a ``field:`` rule names a field its method does
    not fit."""
    out: dict[str, tuple[FieldDef, Rule]] = {}
    for f in form.fields:
        for key, fd in [(f.name, f), *((f"{f.name}/{c.name}", c) for c in f.children)]:
            rule = spec.rule_for(fd)
            if rule is None or fd.kind == LAYOUT:
                continue
            if not rule.method.fits(fd.kind):
                raise ConfigError(f"--pseudonymise {rule.text!r}: field {fd.name!r} of form {form.id} ({form.name}) "
                                  f"is a {fd.type} field ({fd.kind}); it takes {_fits_text(fd.kind)}")
            out[key] = (fd, rule)
    return out


def check_forms(spec: PseudonymiseSpec, forms: Iterable[Form]) -> None:
    """Every ``field:`` rule against the forms a run exports, before anything is created: a rule
    whose method does not fit its field, or that names no field of any form (a typo would leave
    the data as it is), is a ``ConfigError`` naming the nearest field."""
    names: set[str] = set()
    for form in forms:
        check_form(spec, form)
        for f in form.fields:
            names.add(f.name)
            names.update(c.name for c in f.children)
    for r in spec.rules:
        if r.selector == "field" and r.target not in names:
            raise ConfigError(f"--pseudonymise {r.text!r}: no form of this run has a field {r.target!r}"
                              f"{_nearest(r.target, names)}")
