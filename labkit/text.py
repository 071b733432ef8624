"""Text sanitization and normalization before G2P.

(Minimal first version: Unicode NFC, control characters, whitespace runs, paragraph
breaks kept. Stage 01 grows it.)
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from .config import TextConfig


class InputTooLong(ValueError):
    """The input is over the configured cap."""


@dataclass
class Sanitized:
    #: clean text; paragraphs are separated by a blank line ("\n\n")
    text: str
    report: dict = field(default_factory=dict)

    @property
    def paragraphs(self) -> list[str]:
        return [p for p in self.text.split("\n\n") if p.strip()]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def sanitize(text: str, cfg: TextConfig | None = None) -> Sanitized:
    cfg = cfg or TextConfig()
    if len(text) > cfg.max_chars:
        raise InputTooLong(f"input is {len(text):,} characters; the limit is {cfg.max_chars:,}")
    out = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    out = _CONTROL.sub(" ", out)
    paragraphs = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", out)]
    return Sanitized("\n\n".join(p for p in paragraphs if p), {})
