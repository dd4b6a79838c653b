"""A person taken out of canonical records (``exporter.model``), for destinations that write
their files again from stored records (the files destination's store): what each erasure means,
written once (see ``exporter.privacy.personal`` for the columns)."""
from __future__ import annotations

import dataclasses

from exporter.model import Group, Submission, User

from . import personal


def blank_user(user: User) -> tuple[User, int]:
    """The user with every personal column emptied (``--only-personal``), and how many values
    went. Its served payload (``raw``, which the JSON users file shows) loses them too."""
    keys = personal.user_keys(personal.GROUPS)
    n = sum(1 for k in keys if getattr(user, k)) + sum(1 for k in user.extra if personal.is_user_ref(k))
    raw = {k: (None if k in keys else v) for k, v in user.raw.items() if not personal.is_user_ref(k)}
    extra = {k: v for k, v in user.extra.items() if not personal.is_user_ref(k)}
    out = dataclasses.replace(user, raw=raw, extra=extra)
    for k in keys:
        setattr(out, k, "")
    return out, n


def without_member(group: Group, user_id: str) -> tuple[Group, int]:
    """The group without ``user_id`` among its members and leaders, and how many memberships went."""
    n = sum(1 for u in (*group.users, *group.leaders) if u == user_id)
    if not n:
        return group, 0
    raw = dict(group.raw)
    for key in ("users", "leaders"):
        if isinstance(raw.get(key), list):
            raw[key] = [x for x in raw[key] if str(x.get("id") if isinstance(x, dict) else x) != user_id]
    return dataclasses.replace(group, users=tuple(u for u in group.users if u != user_id),
                               leaders=tuple(u for u in group.leaders if u != user_id), raw=raw), n


def blank_roles(sub: Submission, roles: list[str]) -> tuple[Submission, int]:
    """The submission without the metadata that names the user in ``roles`` (``personal.ROLES``)
    and their references in ``extra``, and how many values went."""
    meta, extra, n = dict(sub.meta), dict(sub.extra), 0
    for role in roles:
        keys, prefix = personal.ROLES[role]
        for k in keys:
            if meta.get(k) not in (None, ""):
                meta[k] = None
                n += 1
        for k in [k for k in extra if personal.is_submission_ref(k, prefix)]:
            del extra[k]
            n += 1
    return dataclasses.replace(sub, meta=meta, extra=extra, raw={}), n
