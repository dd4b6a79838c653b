"""What of a person the exported data holds: written once, read by pseudonymisation and by erasure.

A user's **personal columns** are grouped: ``login``, ``names`` (first and last name), ``email``,
``phone`` and ``refs`` (the ``user_ref1..20`` keys an administrator may fill with an employee
number). Each is held by the user's own record (``User``) and copied into the metadata of the
submissions the user made, edited or received:

=========================  =====================================================  =====================
role (id key)              metadata that names the user                           served reference keys
=========================  =====================================================  =====================
``user_id`` (made it)      ``login``, ``first_name``, ``last_name``, ``user_name``,  ``user_ref<N>``
                           ``email``, ``phone``
``update_user_id``         ``update_user_name``                                   ``update_user_ref<N>``
``recipient_id``           ``recipient_name``                                     ``recipient_user_ref<N>``
=========================  =====================================================  =====================

Served payloads name the metadata keys bare (nested shape, ``GET /data/{id}``) or with a leading
``_`` (flat shape, ``data/advanced``); ``served_key`` gives the name in either.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

#: personal column groups -> the ``User`` fields (and served user keys) that hold them
USER_COLUMNS: dict[str, tuple[str, ...]] = {
    "login": ("login",),
    "names": ("first_name", "last_name"),
    "email": ("email",),
    "phone": ("phone",),
    "refs": (),  # served keys user_ref1..20 (``REF_KEY``)
}
GROUPS = tuple(USER_COLUMNS)

#: served user keys holding references (``refs``)
USER_REF_KEY = re.compile(r"user_ref\d+")

#: the roles a user has in a submission: id metadata key -> (metadata naming the user, prefix of
#: the served reference keys)
ROLES: dict[str, tuple[tuple[str, ...], str]] = {
    "user_id": (("user_name", "first_name", "last_name", "login", "email", "phone"), "user_ref"),
    "update_user_id": (("update_user_name",), "update_user_ref"),
    "recipient_id": (("recipient_name",), "recipient_user_ref"),
}

#: submission metadata per column group (the submitting user's copy; names: every role's name)
_META_BY_GROUP: dict[str, tuple[str, ...]] = {
    "login": ("login",),
    "names": ("first_name", "last_name", "user_name", "update_user_name", "recipient_name"),
    "email": ("email",),
    "phone": ("phone",),
    "refs": (),
}

_REF_PREFIX = re.compile(r"(user_ref|update_user_ref|recipient_user_ref)\d+")


def user_keys(groups: Iterable[str]) -> tuple[str, ...]:
    """The ``User`` fields of these column groups."""
    return tuple(k for g in groups for k in USER_COLUMNS[g])


def meta_keys(groups: Iterable[str]) -> tuple[str, ...]:
    """The submission metadata keys of these column groups."""
    return tuple(k for g in groups for k in _META_BY_GROUP[g])


def is_user_ref(key: str) -> bool:
    """A served user key holding a reference (``user_ref3``)."""
    return USER_REF_KEY.fullmatch(key) is not None


def is_submission_ref(key: str, prefix: str | None = None) -> bool:
    """A submission metadata key holding a user reference (any role's, or the role of ``prefix``),
    named as in the nested shape (``update_user_ref2``)."""
    m = _REF_PREFIX.fullmatch(key)
    return m is not None and (prefix is None or m.group(1) == prefix)


def served_key(key: str, flat: bool) -> str:
    """A metadata key as a payload of that shape names it."""
    return "_" + key if flat else key


def roles_of(meta: dict, user_id: str) -> list[str]:
    """The roles (``ROLES`` keys) ``user_id`` has in a submission's metadata."""
    return [role for role in ROLES if meta.get(role) is not None and str(meta.get(role)) == user_id]
