"""Where each key of a TOML document is written: ``key path -> line number``.

``tomllib`` gives values but no positions, and a setting refused after parsing (an unknown key, an
inline secret, a bad cron expression) must be reported at its line. ``locate`` walks the text with
TOML's own lexical rules (strings of the four kinds, comments, inline tables, arrays spread over
lines, dotted and quoted keys, ``[table]`` and ``[[array of tables]]`` headers) and records the line
where each key, table and array element starts. Values are not converted: ``tomllib`` has parsed
the same text already. A path is a tuple of keys (str) and array indexes (int), as the parsed
document is reached: ``("accounts", "acme", "destinations", 0, "to")``.

``Problems`` collects what is wrong with a parsed document, each problem one line
``FILE:LINE: KEY: message`` at the line of the key it is about.

``headers`` lists the ``[table]`` headers in order (with their lines), so a table declared twice
(a TOML error, which ``tomllib`` reports without saying which table) is named with both lines.
"""
from __future__ import annotations

import os
import re
import tomllib
from bisect import bisect_right
from typing import Any

from .options import nearest

Path = tuple  # of str | int

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_WS = " \t"
_SCALAR = re.compile(r"[^,\]}#\r\n]*")


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.i = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[Path, int] = {}
        self.headers: list[tuple[Path, int]] = []
        self.array_counts: dict[Path, int] = {}

    # -- positions ----------------------------------------------------------------------------
    def line(self, at: int | None = None) -> int:
        return bisect_right(self.newlines, (self.i if at is None else at) - 1) + 1

    def mark(self, path: Path, at: int | None = None) -> None:
        self.lines.setdefault(path, self.line(at))

    # -- lexing ------------------------------------------------------------------------------
    def peek(self, n: int = 1) -> str:
        return self.text[self.i:self.i + n]

    def skip_ws(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in _WS:
            self.i += 1

    def skip_ws_comments_newlines(self) -> None:
        while self.i < len(self.text):
            c = self.text[self.i]
            if c in _WS or c in "\r\n":
                self.i += 1
            elif c == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.i)
        self.i = len(self.text) if end < 0 else end

    def string(self) -> str:
        """A string at ``i`` (any of the four kinds); returns its value (keys need it)."""
        start = self.i
        for quote in ('"""', "'''"):
            if self.peek(3) == quote:
                end = self.i + 3
                while True:
                    end = self.text.index(quote, end)
                    if quote == '"""' and _escaped(self.text, end):
                        end += 1
                        continue
                    break
                while self.text[end + 3:end + 4] == quote[0]:  # up to two quotes may close the content
                    end += 1
                self.i = end + 3
                return tomllib.loads("v = " + self.text[start:self.i])["v"]
        quote = self.text[self.i]
        end = self.i + 1
        while True:
            end = self.text.index(quote, end)
            if quote == '"' and _escaped(self.text, end):
                end += 1
                continue
            break
        self.i = end + 1
        return tomllib.loads("v = " + self.text[start:self.i])["v"]

    def key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self.skip_ws()
            if self.peek() in ('"', "'"):
                parts.append(self.string())
            else:
                m = _BARE.match(self.text, self.i)
                if not m:
                    raise ValueError(f"no key at line {self.line()}")
                parts.append(m.group())
                self.i = m.end()
            self.skip_ws()
            if self.peek() != ".":
                return tuple(parts)
            self.i += 1

    # -- structure ---------------------------------------------------------------------------
    def value(self, path: Path) -> None:
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.i += 1
            n = 0
            while True:
                self.skip_ws_comments_newlines()
                if self.peek() == "]":
                    self.i += 1
                    return
                self.mark(path + (n,))
                self.value(path + (n,))
                n += 1
                self.skip_ws_comments_newlines()
                if self.peek() == ",":
                    self.i += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip_ws_comments_newlines()
                if self.peek() == "}":
                    self.i += 1
                    return
                self.keyval(path)
                self.skip_ws_comments_newlines()
                if self.peek() == ",":
                    self.i += 1
        else:  # number, boolean, date or time: up to the next delimiter
            m = _SCALAR.match(self.text, self.i)
            assert m is not None  # the pattern matches the empty string: it always matches
            self.i = m.end()

    def keyval(self, table: Path) -> None:
        at = self.i
        key = self.key()
        for n in range(1, len(key) + 1):
            self.mark(table + key[:n], at)
        self.skip_ws()
        if self.peek() != "=":
            raise ValueError(f"no '=' at line {self.line()}")
        self.i += 1
        self.skip_ws()
        self.value(table + key)

    def document(self) -> None:
        table: Path = ()
        while True:
            self.skip_ws_comments_newlines()
            if self.i >= len(self.text):
                return
            at = self.i
            if self.peek(2) == "[[":
                self.i += 2
                name = self.key()
                self.i += 2  # "]]"
                n = self.array_counts.get(name, 0)
                self.array_counts[name] = n + 1
                table = name + (n,)
                for k in range(1, len(name) + 1):
                    self.mark(name[:k], at)
                self.mark(table, at)
            elif self.peek() == "[":
                self.i += 1
                name = self.key()
                self.i += 1  # "]"
                table = name
                self.headers.append((name, self.line(at)))
                for k in range(1, len(name) + 1):
                    self.mark(name[:k], at)
            else:
                self.keyval(table)


def _escaped(text: str, at: int) -> bool:
    """Whether the quote at ``at`` is escaped (an odd number of backslashes before it)."""
    n = 0
    while at - n - 1 >= 0 and text[at - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def locate(text: str) -> dict[Path, int]:
    """``{key path: line}`` for every key, table and array element of a valid TOML ``text``."""
    s = _Scanner(text)
    s.document()
    return s.lines


def headers(text: str) -> list[tuple[Path, int]]:
    """The ``[table]`` headers of ``text`` in order, with their lines; [] when the text cannot be
    walked (it is reported as tomllib reports it)."""
    s = _Scanner(text)
    try:
        s.document()
    except (ValueError, IndexError, tomllib.TOMLDecodeError):
        return s.headers
    return s.headers


def line_of(lines: dict[Path, int], path: Path) -> int:
    """The line of ``path``, or of its nearest ancestor that has one (1 when none has)."""
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return 1


def key_text(key: Path) -> str:
    """A key path as written in TOML: ``accounts.acme.destinations[0].to``."""
    out = ""
    for k in key:
        if isinstance(k, int):
            out += f"[{k}]"
        else:
            out += ("." if out else "") + (k if _BARE.fullmatch(k) else f'"{k}"')
    return out


class Problems:
    """Problems of a TOML document, each ``FILE:LINE: KEY: message``; the value checks return the
    value (normalised) or None after recording why it is refused."""

    def __init__(self, path: str | os.PathLike, lines: dict[Path, int]):
        self.path, self.lines = path, lines
        self.problems: list[str] = []

    def bad(self, key: Path, message: str) -> None:
        self.problems.append(f"{self.path}:{line_of(self.lines, key)}: {key_text(key)}: {message}")

    def text(self, key: Path, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self._refuse(key, "a non-empty string", value)
            return None
        return value.strip()

    def integer(self, key: Path, value: Any, low: int = 0) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self._refuse(key, f"a whole number >= {low}", value)
            return None
        return value

    def number(self, key: Path, value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            self._refuse(key, "a number > 0", value)
            return None
        return value

    def flag(self, key: Path, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        self._refuse(key, "true or false", value)
        return None

    def strings(self, key: Path, value: Any) -> tuple[str, ...] | None:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            self._refuse(key, "a list of strings", value)
            return None
        return tuple(v.strip() for v in value)

    def table(self, key: Path, value: Any) -> dict | None:
        if isinstance(value, dict):
            return value
        self._refuse(key, "a table", value)
        return None

    def unknown(self, table: dict, key: Path, known: set[str], extra: str = "") -> None:
        """Every key of ``table`` not in ``known``, the nearest known one suggested."""
        for k in table:
            if k not in known:
                self.bad(key + (k,), f"unknown key{nearest(k, known)}{extra}; valid: {', '.join(sorted(known))}")

    def _refuse(self, key: Path, expected: str, value: Any) -> None:
        self.bad(key, f"expected {expected}, not {value!r}")
