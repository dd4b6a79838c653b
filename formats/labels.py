"""The words of a report (labels) in each language we have, and how ``report_lang=auto`` finds a
form's language."""
from __future__ import annotations

import re

from exporter.model import Account, Form

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "lang": "en", "yes": "Yes", "no": "No", "submission": "Submission", "form": "Form", "id": "Submission id",
        "record": "Record", "rows_one": "row", "rows_other": "rows", "no_rows": "No rows.", "row": "Row",
        "missing": "not exported", "unreadable": "image could not be read",
        "too_large": "image too large to embed", "bytes_one": "byte", "bytes_other": "bytes",
        "kB": "kB", "MB": "MB", "decimal_point": ".",
        "contents": "Contents", "page": "page", "submissions": "Submissions", "source": "Source",
        "exported_at": "Exported at", "timezone": "Times are local to", "note": "Note",
        "see_note": "see note", "no_submissions": "No submissions.", "part": "part",
        "record_number": "Record number", "user_id": "User id", "create_time": "Created",
        "update_time": "Updated", "answer_time": "Answered", "update_answer_time": "Answer updated",
        "start_time": "Started", "end_time": "Ended", "update_user_id": "Updated by (id)",
        "direction": "Direction", "recipient_id": "Recipient id", "form_unique_id": "Form unique id",
        "origin_answer": "Origin", "user_name": "User", "first_name": "First name",
        "last_name": "Last name", "login": "Login", "email": "Email", "phone": "Phone",
        "update_user_name": "Updated by", "recipient_name": "Recipient", "history": "History",
    },
    "fr": {
        "lang": "fr", "yes": "Oui", "no": "Non", "submission": "Saisie", "form": "Formulaire", "id": "Id de la saisie",
        "record": "Saisie", "rows_one": "ligne", "rows_other": "lignes", "no_rows": "Aucune ligne.", "row": "Ligne",
        "missing": "non exporté", "unreadable": "image illisible",
        "too_large": "image trop grande pour être insérée", "bytes_one": "octet", "bytes_other": "octets", "kB": "ko", "MB": "Mo",
        "decimal_point": ",",
        "contents": "Sommaire", "page": "page", "submissions": "Saisies", "source": "Source",
        "exported_at": "Exporté le", "timezone": "Heures locales de", "note": "Note",
        "see_note": "voir note", "no_submissions": "Aucune saisie.", "part": "partie",
        "record_number": "Numéro", "user_id": "Id utilisateur", "create_time": "Créée le",
        "update_time": "Modifiée le", "answer_time": "Répondue le",
        "update_answer_time": "Réponse modifiée le", "start_time": "Début", "end_time": "Fin",
        "update_user_id": "Modifiée par (id)", "direction": "Direction", "recipient_id": "Id destinataire",
        "form_unique_id": "Id unique", "origin_answer": "Origine", "user_name": "Utilisateur",
        "first_name": "Prénom", "last_name": "Nom", "login": "Identifiant", "email": "E-mail",
        "phone": "Téléphone", "update_user_name": "Modifiée par", "recipient_name": "Destinataire",
        "history": "Historique",
    },
}

#: which counts take the singular: English "1 row" (0 rows); French "0 ligne", "1 ligne" (2 lignes)
_SINGULAR = {"en": lambda n: n == 1, "fr": lambda n: abs(n) < 2}
#: the words of a checkbox's served output, by label language (how ``auto`` recognises a form's language)
_YES_NO_WORDS = {lang: {labels["yes"].casefold(), labels["no"].casefold()} for lang, labels in LABELS.items()}
_LANG_KEYS = ("lang", "language", "locale")


def counted(n: int, key: str, labels: dict[str, str]) -> str:
    """``1 row``, ``2 rows``; ``1 ligne``, ``2 lignes``: ``labels[key + "_one"|"_other"]``."""
    one = _SINGULAR[labels["lang"]](n)
    return f"{n} {labels[key + ('_one' if one else '_other')]}"


_LANG_NAMES = {"english": "en", "anglais": "en", "french": "fr", "français": "fr", "francais": "fr"}


def _lang_code(value) -> str | None:
    """``fr``, ``fr_FR``, ``fr-FR``, ``French``, ``français`` -> ``fr`` (when we have its labels)."""
    text = str(value or "").strip().casefold().replace("-", "_")
    if text[:2] in LABELS and (len(text) == 2 or text[2] == "_"):
        return text[:2]
    return _LANG_NAMES.get(text)


def form_language(form: Form, account: Account | None) -> str | None:
    """The language a form is written in, in this order: a language or locale key in the form,
    its options or the account (the service documents none: looked for, never required); the
    words the form outputs for a checkbox (``options.checkbox_output_true_value`` /
    ``false_value``, e.g. "Oui"/"Non"); the words of its name and captions (``text_language``).
    None when nothing tells."""
    for where in (form.raw, form.options, account.raw if account is not None else {}):
        for key in _LANG_KEYS:
            code = _lang_code((where or {}).get(key))
            if code:
                return code
    words = {str(form.options.get(k) or "").strip().casefold()
             for k in ("checkbox_output_true_value", "checkbox_output_false_value")} - {""}
    for lang, known in _YES_NO_WORDS.items():
        if words and words <= known:
            return lang
    return text_language([form.name, form.class_ or "", *_captions(form.fields)])


def _captions(fields) -> list[str]:
    out = []
    for f in fields:
        out.append(f.caption or "")
        out.extend(_captions(f.children))
    return out


#: words only French uses among the languages we have labels for (with "de", "la": a form in
#: another Romance language may read as French; it would otherwise get English)
_FR_WORDS = frozenset("de du des la le les et au aux pour par sur un une avec dans sans ou n°".split())
_EN_WORDS = frozenset("the of and to for with on by from in at or your is an no. number name".split())
_FR_LETTERS = re.compile("[éèêëàâçùûîïôœ]")
_WORD = re.compile(r"[^\W\d_]+['’]?|n°", re.IGNORECASE)


def text_language(texts: list[str]) -> str | None:
    """``fr`` or ``en`` when the words of ``texts`` clearly are: a quarter of them French
    (a function word, an accented letter, ``l'``/``d'``) and more French than English words, or
    the other way round. None when unclear."""
    words = [w.casefold() for t in texts for w in _WORD.findall(t)]
    if not words:
        return None
    fr = sum(1 for w in words if w in _FR_WORDS or _FR_LETTERS.search(w) or w[-1:] in "'’")
    en = sum(1 for w in words if w in _EN_WORDS)
    if fr >= 2 and fr * 4 >= len(words) and fr > en:
        return "fr"
    if en >= 2 and en * 4 >= len(words) and en > fr:
        return "en"
    return None



def file_size(size: int | None, labels: dict[str, str]) -> str:
    """``1 byte``, ``28 bytes``, ``2.7 kB``, ``1.2 MB`` (in the labels' language: ``0 octet``, ``2,7 ko``)."""
    if size is None:
        return ""
    if size < 1000:
        return counted(size, "bytes", labels)
    value, unit = (size / 1e3, labels["kB"]) if size < 1e6 else (size / 1e6, labels["MB"])
    return f"{value:.1f}".replace(".", labels["decimal_point"]) + f" {unit}"

