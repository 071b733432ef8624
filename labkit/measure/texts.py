"""The benchmark texts every stage times: a phrase, a sentence, the ~120-word paragraph and
the ~1,500-word article (original prose, paragraphs split by blank lines), and the
opening-length sweep's texts (:data:`OPENINGS`)."""
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


#: messy paragraphs (Markdown, links, code, numbers, lists); stage 01 times the text path on
#: them, since real selected text looks like this, not like clean prose
MESSY = [
    "## Why latency matters\n\nWhen you select a paragraph on a web page and press a key, "
    "you expect to hear it at once. A delay of 300 ms feels instant; 2 seconds feels broken. "
    "This article walks through the **three** places where time goes: text preparation, "
    "the neural network, and playback.",
    "Text preparation looks cheap, but real text is messy. Web pages carry non-breaking "
    "spaces, zero-width joiners and [links](https://example.com/docs/intro) in the middle "
    "of sentences; PDFs hyphenate words across lines; terminals print colour codes.",
    "- Normalize Unicode first.\n- Remove control characters.\n- Keep paragraph breaks, "
    "because a listener needs the pause.\n- Read numbers like 1,250 or 3.5% the way a "
    "person would.",
    "The model itself, Kokoro with 82 million parameters, turns phonemes into audio. It "
    "accepts at most 510 tokens at a time, so long text is cut into pieces. The first piece "
    "should be short: the sooner it is ready, the sooner you hear something, and the rest "
    "is synthesized while the first one plays.",
    "In code, the call looks like `engine.synthesize_phonemes(ph, voice, speed)`; the file "
    "labkit/runtime.py:120 holds it. Measured on a laptop, a 20-word sentence takes about "
    "0.4 seconds, while a full page takes several seconds, which is why streaming matters.",
    "Finally, playback. Audio at 24 kHz arrives in chunks; each chunk is cross-faded with "
    "the next so that you do not hear clicks. If the next chunk is late, you hear a gap, "
    "and gaps are worse than a slightly later start.",
]


def messy_article(words: int = 1500) -> str:
    """About ``words`` words of messy text with no paragraph twice (a repeated paragraph
    would be a free G2P cache hit for the pipeline): the benchmark article's paragraphs with
    the messy ones interleaved, one after each of the first article paragraphs."""
    plain = article().split("\n\n")
    order = [p for k in range(max(len(plain), len(MESSY)))
             for p in (plain[k:k + 1] + MESSY[k:k + 1])]
    out, count = [], 0
    for para in order:
        if count >= words:
            break
        out.append(para)
        count += len(para.split())
    return "\n\n".join(out)


def messy_sentence() -> str:
    return MESSY[3].split(". ")[0] + "."


def messy_paragraph() -> str:
    return MESSY[3] + " " + MESSY[5]


#: the opening-length sweep (stage 05): short texts whose first sentence has exactly this many
#: words (as labkit.engine.chunking counts them), original prose written for it, each going on
#: with two shorter sentences so a stream has more than its first piece to say
OPENINGS: dict[int, str] = {
    5: ("The storm reached town early. Shops along the main street closed their shutters "
        "before noon, and the buses ran half empty. By evening the wind had dropped, and "
        "people came out to look at the branches it had left on the pavements."),
    15: ("When the new library opened on the hill, nobody expected it to fill up fast. "
         "Within a month the reading room had a waiting list, and the café downstairs ran out "
         "of cups twice. The council is now talking about a second floor."),
    30: ("Every spring the river behind the old paper mill rises over its banks, floods the "
         "lower meadow for a week, and leaves a layer of dark soil that farmers prize. "
         "Nobody remembers a year without it. The mill itself has been closed since the "
         "seventies."),
    50: ("Before the railway came through that autumn, the village was a quiet place of farms "
         "where the baker knew every customer by name, the school had one teacher for all the "
         "children, and the only road to the town washed out whenever the rain lasted more "
         "than a few days. Then the trains started running. Within a decade the population "
         "had doubled."),
}


def opening(words: int) -> str:
    """The sweep text whose opening sentence has ``words`` words (:data:`OPENINGS`)."""
    if words not in OPENINGS:
        raise KeyError(f"no opening-{words} text; the sweep has openings of "
                       f"{', '.join(map(str, OPENINGS))} words")
    return OPENINGS[words]


TEXTS: dict[str, Callable[[], str]] = {"phrase": phrase, "paragraph": paragraph, "article": article,
                                       "messy-sentence": messy_sentence,
                                       "messy-paragraph": messy_paragraph,
                                       "messy-article": messy_article,
                                       **{f"opening-{n}": (lambda n=n: OPENINGS[n]) for n in OPENINGS}}


def named(name_or_text: str) -> str:
    """A named benchmark text ("phrase", "sentence", "passage": the paragraph's first two
    sentences, "paragraph", "article", "messy-sentence", "messy-paragraph",
    "messy-article", "opening-5" ... "opening-50": :data:`OPENINGS`) or the text itself."""
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
