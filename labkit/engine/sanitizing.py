"""What every sanitization rule works with: the text with the input span each character
came from (:class:`MappedText`), one sanitize call's counts and records of what was left
out (:class:`RuleRun`), and the full stop a line read as a sentence of its own gets
(:func:`terminate`). The rules are in labkit.engine.characters, labkit.engine.readers and
labkit.engine.verbalize; labkit.engine.text runs them.
"""
from __future__ import annotations

import difflib
import re
from array import array

from labkit.config import TextConfig


#: items listed in report["removed"]; the count is always complete
MAX_RECORDS = 100
_RUN_OF_NON_SPACE = re.compile(r"\S+")
_TERMINAL = set(".!?…:;")
_CLOSERS = set("\"')”’»")


class MappedText:
    """The text being sanitized, each character with the span [start, end) of the input
    it came from. A replacement's characters map to what they replaced; where a word of
    the replacement is also a word of the replaced text ("**bold**" -> "bold", a URL's
    host name), that word maps to itself."""

    __slots__ = ("s", "a", "b")

    def __init__(self, s: str, a: array, b: array):
        self.s, self.a, self.b = s, a, b

    @classmethod
    def of(cls, s: str) -> "MappedText":
        return cls(s, array("l", range(len(s))), array("l", range(1, len(s) + 1)))

    @classmethod
    def literal(cls, s: str, at: int) -> "MappedText":
        """``s`` inserted at input position ``at`` (covers no input)."""
        return cls(s, array("l", [at]) * len(s), array("l", [at]) * len(s))

    def __len__(self) -> int:
        return len(self.s)

    def __getitem__(self, k: slice) -> "MappedText":
        return MappedText(self.s[k], self.a[k], self.b[k])

    def __add__(self, other: "MappedText") -> "MappedText":
        return MappedText(self.s + other.s, self.a + other.a, self.b + other.b)

    def end(self) -> int:
        return self.b[-1] if self.s else 0

    def span(self, i: int, j: int) -> tuple[int, int]:
        if j > i:
            return min(self.a[i:j]), max(self.b[i:j])
        at = self.a[i] if i < len(self.s) else (self.b[-1] if self.s else 0)
        return at, at

    def _mapped(self, r: str, i: int, j: int) -> tuple[array, array]:
        lo, hi = self.span(i, j)
        a, b = array("l", [lo]) * len(r), array("l", [hi]) * len(r)
        if j > i:
            old, cursor = self.s[i:j], 0
            for w in _RUN_OF_NON_SPACE.finditer(r):
                k = old.find(w.group(), cursor)
                if k >= 0:
                    n = len(w.group())
                    a[w.start():w.end()] = self.a[i + k:i + k + n]
                    b[w.start():w.end()] = self.b[i + k:i + k + n]
                    cursor = k + n
        return a, b

    def sub(self, pattern, repl, here=None) -> tuple["MappedText", int]:
        """``pattern.subn(repl, text)`` with the map carried; ``here(span)`` is told the
        input span of each match before its replacement is made."""
        s = self.s
        out_s: list[str] = []
        out_a, out_b = array("l"), array("l")
        pos = n = 0
        changed = False
        fixed = repl if isinstance(repl, str) and "\\" not in repl else None
        for m in pattern.finditer(s):
            i, j = m.span()
            if here is not None:
                here(self.span(i, j))
            r = fixed if fixed is not None else repl(m) if callable(repl) else m.expand(repl)
            n += 1
            if r == s[i:j]:
                continue
            changed = True
            out_s.append(s[pos:i])
            out_a.extend(self.a[pos:i])
            out_b.extend(self.b[pos:i])
            ra, rb = self._mapped(r, i, j)
            out_s.append(r)
            out_a.extend(ra)
            out_b.extend(rb)
            pos = j
        if here is not None:
            here(None)
        if not changed:
            return self, n
        out_s.append(s[pos:])
        out_a.extend(self.a[pos:])
        out_b.extend(self.b[pos:])
        return MappedText("".join(out_s), out_a, out_b), n

    def split(self, pattern: re.Pattern) -> list["MappedText"]:
        out, pos = [], 0
        for m in pattern.finditer(self.s):
            out.append(self[pos:m.start()])
            pos = m.end()
        out.append(self[pos:])
        return out

    def strip(self) -> "MappedText":
        i = len(self.s) - len(self.s.lstrip())
        j = len(self.s.rstrip())
        return self[i:max(i, j)]

    @staticmethod
    def join(sep: str, parts: list["MappedText"]) -> "MappedText":
        if not parts:
            return MappedText.of("")
        out = parts[0]
        for p in parts[1:]:
            out = out + MappedText.literal(sep, out.end()) + p
        return out

    def rewritten(self, new: str) -> "MappedText":
        """The text replaced by ``new`` as a whole (difflib's alignment carries the map)."""
        out = MappedText("", array("l"), array("l"))
        sm = difflib.SequenceMatcher(None, self.s, new, autojunk=False)
        for op, i1, i2, j1, j2 in sm.get_opcodes():
            if op == "equal":
                out = out + self[i1:i2]
            elif j2 > j1:
                lo, hi = self.span(i1, i2)
                out = out + MappedText(new[j1:j2], array("l", [lo]) * (j2 - j1),
                                       array("l", [hi]) * (j2 - j1))
        return out


class RuleRun:
    """One sanitize() call: its settings and language, counts per rule, records of what
    was left out."""

    def __init__(self, cfg: TextConfig, lang: str | None = None):
        self.cfg = cfg
        #: the language the text is read in (None: English)
        self.lang = lang
        self.counts: dict[str, int] = {}
        self.removed: list[dict] = []
        self.removed_total = 0
        #: the input span of the match being replaced (what a removal points at)
        self.here: tuple[int, int] | None = None

    def count(self, rule: str, n: int) -> None:
        if n:
            self.counts[rule] = self.counts.get(rule, 0) + n

    def remove(self, rule: str, text: str, span: tuple[int, int] | None = None, **extra) -> None:
        self.removed_total += 1
        span = span or self.here
        if len(self.removed) < MAX_RECORDS:
            where = {"input_start": span[0], "input_end": span[1]} if span else {}
            self.removed.append({"rule": rule, "text": text[:80], **where, **extra})

    def _at(self, span: tuple[int, int] | None) -> None:
        self.here = span

    def sub(self, rule: str, pattern: re.Pattern, repl, text: MappedText) -> MappedText:
        out, n = text.sub(pattern, repl, self._at)
        self.count(rule, n)
        return out


def terminate(s: str) -> str:
    """A line read as a sentence of its own ends with a full stop."""
    s = s.rstrip()
    core = s.rstrip("".join(_CLOSERS))
    if not s or (core and core[-1] in _TERMINAL):
        return s
    return s + "."


def terminated(t: MappedText) -> MappedText:
    """``t`` with the full stop :func:`terminate` gives it (mapped to its end)."""
    done = terminate(t.s)
    return t + MappedText.literal(done[len(t.s):], t.end()) if done != t.s else t
