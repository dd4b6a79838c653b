"""A record's payload as served, kept either decoded or as the JSON document it came from
(``Submission.raw``: see ``ServedPayload``)."""
from __future__ import annotations

from typing import Any, overload


class ServedPayload:
    """``Submission.raw``: the record as served, given either decoded (a dict) or as the JSON
    document it was decoded from (bytes, as an archive holds it), then decoded again only when
    read (and kept). A replay into SQL never reads it: each submission then holds one bytes object
    instead of the payload's dozens of dicts and lists, which the cycle collector would walk
    again and again while a batch is alive."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = f"_{name}_served"

    @overload
    def __get__(self, obj: None, objtype: Any = None) -> ServedPayload: ...

    @overload
    def __get__(self, obj: object, objtype: Any = None) -> dict: ...

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:  # read on the class: the descriptor (the field's default, see __set__)
            return self
        held = getattr(obj, self._attr)
        if isinstance(held, bytes):
            from .fastjson import loads

            held = loads(held)
            object.__setattr__(obj, self._attr, held)
        return held

    def __set__(self, obj: Any, value: dict | bytes | ServedPayload) -> None:
        # the default (no payload given) is this descriptor itself: an empty payload of its own.
        # Set as an attribute, not through ``obj.__dict__``: reading that makes the instance a
        # dict of its own, one more object per record for the cycle collector
        object.__setattr__(obj, self._attr, {} if value is self else value)
