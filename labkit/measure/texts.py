"""The benchmark texts every stage times: a phrase, a sentence, the ~120-word paragraph and
the ~1,500-word article (original prose, paragraphs split by blank lines)."""
from __future__ import annotations

from typing import Callable

from labkit.config import DATA_DIR


def article() -> str:
    """The ~1,500-word benchmark article (original prose; paragraphs split by blank lines)."""
    return (DATA_DIR / "article.txt").read_text(encoding="utf-8").strip()


def paragraph() -> str:
    """The ~120-word benchmark paragraph."""
    return (DATA_DIR / "paragraph.txt").read_text(encoding="utf-8").strip()


def phrase() -> str:
    return "Hello! The kettle is on."


TEXTS: dict[str, Callable[[], str]] = {"phrase": phrase, "paragraph": paragraph, "article": article}


def named(name_or_text: str) -> str:
    """A named benchmark text ("phrase", "sentence", "passage": the paragraph's first two
    sentences, "paragraph", "article") or the text itself."""
    if name_or_text == "sentence":
        return paragraph().split(". ")[0] + "."
    if name_or_text == "passage":
        return ". ".join(paragraph().split(". ")[:2]) + "."
    fn = TEXTS.get(name_or_text)
    return fn() if fn else name_or_text


def word_count(s: str) -> int:
    return len(s.split())




def capped(names, max_chars: int) -> dict[str, str]:
    """Named texts, each cut at a paragraph (else sentence) boundary to ``max_chars``,
    so an endpoint with that input limit takes them whole."""
    out = {}
    for name in names:
        text = named(name)
        if len(text) > max_chars:
            kept = ""
            for para in text.split("\n\n"):
                joined = f"{kept}\n\n{para}" if kept else para
                if len(joined) > max_chars:
                    break
                kept = joined
            text = kept or text[:max_chars].rsplit(". ", 1)[0] + "."
        out[name] = text
    return out
