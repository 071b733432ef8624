"""The sanitization rules that read markup and machine text aloud, each rule's patterns
beside it: Markdown and HTML (``markdown``), URLs (``urls``), e-mail addresses
(``emails``) and code (``code``: file:line, paths, dotted names, snake_case, camelCase).

Each rule takes the call's :class:`~labkit.engine.sanitizing.RuleRun` and the text and
returns the text (unchanged where its switch, ``text.markdown``, ``text.urls`` or
``text.code``, is off); labkit.engine.text runs them in the order of its ``RULES``.
"""
from __future__ import annotations

import re
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from labkit.engine.sanitizing import MappedText, RuleRun, terminate


def _dotted(s: str) -> str:
    return " dot ".join(p for p in s.split(".") if p)


# -- markdown ----------------------------------------------------------------------------
_MD_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.M | re.S)
_MD_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_MD_SETEXT = re.compile(r"^(.+)\n[ \t]*(?:=+|-+)[ \t]*$", re.M)
_MD_RULE = re.compile(r"^[ \t]*([-*_=])(?:[ \t]*\1){2,}[ \t]*$", re.M)
_MD_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.M)
_MD_BULLET = re.compile(r"^[ \t]*(?:[-*+•‣◦▪]|\d{1,3}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?(.*)$", re.M)
_MD_TABLE_SEP = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*(?::?-{3,}:?)?[ \t]*$", re.M)
_MD_TABLE_ROW = re.compile(r"^[ \t]*\|(.*)\|[ \t]*$", re.M)
_MD_REFDEF = re.compile(r"^[ \t]{0,3}\[[^\]\n]+\]:[ \t]*\S+.*$", re.M)
_MD_IMAGE = re.compile(r"!\[([^\]\n]*)\]\((?:[^()\s]|\([^()]*\))*(?:\s+\"[^\"]*\")?\)")
_MD_LINK = re.compile(r"\[([^\]\n]+)\](?:\((?:[^()\s]|\([^()]*\))*(?:\s+\"[^\"]*\")?\)|\[[^\]\n]*\])")
# what is left of "[word](/...": inline pronunciation not well-formed (unclosed, spaces in
# it): its word is read, the rest is left out (and reported), never read as "slash ..."
_MD_BROKEN_INLINE = re.compile(r"\[([^\[\]\n]+)\]\((?:/[^()\n]*?/\)|/[^\s()]*\)?)")
_MD_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)>")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>\n]*)?/?>")
_HTML_ENTITY = re.compile(r"&(amp|lt|gt|quot|apos|nbsp|#\d+|#x[0-9a-fA-F]+);")
_MD_STRONG = re.compile(r"(\*\*|__|~~)(?=\S)(.+?)(?<=\S)\1")
_MD_EM = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])"
                    r"|(?<![\w_])_(?=[^\s_])([^_\n]+?)(?<=\S)_(?![\w_])")
_MD_CODE = re.compile(r"(`+)([^`\n]+?)\1")


def _md_fence(m: re.Match) -> str:
    lines = [terminate(line.strip()) for line in m.group(2).splitlines() if line.strip()]
    return "\n\n" + "\n".join(lines) + "\n\n"


def _md_heading(m: re.Match) -> str:
    return "\n\n" + terminate(m.group(1).strip()) + "\n\n"


def _md_table_row(m: re.Match) -> str:
    cells = [c.strip() for c in m.group(1).split("|") if c.strip()]
    return terminate(", ".join(cells)) if cells else ""


def _html_entity(m: re.Match) -> str:
    name = m.group(1)
    fixed = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": " "}
    if name in fixed:
        return fixed[name]
    try:
        return chr(int(name[2:], 16) if name[1] in "xX" else int(name[1:]))
    except (ValueError, OverflowError):
        return " "


def markdown(run: RuleRun, t: MappedText) -> MappedText:
    if not run.cfg.markdown:
        return t
    t = run.sub("markdown", _MD_FENCE, _md_fence, t)
    t = run.sub("markdown", _HTML_ENTITY, _html_entity, t)
    t = run.sub("markdown", _MD_HEADING, _md_heading, t)
    t = run.sub("markdown", _MD_TABLE_SEP, "", t)
    t = run.sub("markdown", _MD_TABLE_ROW, _md_table_row, t)
    t = run.sub("markdown", _MD_SETEXT, _md_heading, t)
    t = run.sub("markdown", _MD_RULE, "\n\n", t)
    t = run.sub("markdown", _MD_QUOTE, "", t)
    t = run.sub("markdown", _MD_BULLET, lambda m: terminate(m.group(1)), t)
    t = run.sub("markdown", _MD_REFDEF, "", t)
    t = run.sub("markdown", _MD_IMAGE, lambda m: m.group(1), t)
    t = run.sub("markdown", _MD_LINK, lambda m: m.group(1), t)
    t = run.sub("markdown", _MD_BROKEN_INLINE, lambda m: run.remove(
        "markdown", m.group()[len(m.group(1)) + 2:], why="inline pronunciation not well-formed: "
        "its word is read") or m.group(1), t)
    t = run.sub("markdown", _MD_AUTOLINK, lambda m: m.group(1), t)
    t = run.sub("markdown", _HTML_TAG, " ", t)
    t = run.sub("markdown", _MD_STRONG, lambda m: m.group(2), t)
    t = run.sub("markdown", _MD_EM, lambda m: m.group(1) or m.group(2), t)
    t = run.sub("markdown", _MD_CODE, lambda m: m.group(2), t)
    return t


# -- urls --------------------------------------------------------------------------------
_URL = re.compile(r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]+", re.I)


def _url_reader(run: RuleRun) -> Callable[[re.Match], str]:
    def read(m: re.Match) -> str:
        url = m.group()
        tail = ""
        while url and url[-1] in ".,;:!?)'\"":
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break
            tail = url[-1] + tail
            url = url[:-1]
        parts = urlsplit(url if "://" in url else "http://" + url)
        host = (parts.hostname or "").removeprefix("www.")
        spoken = [_dotted(host)] if host else []
        for seg in parts.path.split("/"):
            words = " ".join(w for w in re.split(r"[-_.+%=~]+", seg) if w)
            if not words:
                continue
            if len(words) > 24 or (re.search(r"\d", words) and re.search(r"[a-z]", words, re.I)
                                   and len(words) > 12):
                run.remove("urls", seg, why="identifier in a URL path left out")
                continue
            spoken.append(words)
        said = " slash ".join(spoken)
        query = _spoken_query(run, parts.query) if parts.query else ""
        if query:
            said += ", query " + query + ","
        if parts.fragment:
            words = " ".join(w for w in re.split(r"[-_.+%=~/]+", parts.fragment) if w)
            if words and len(words) <= 24 and not re.search(r"\d", words):
                said += ", section " + words + ","
            else:
                run.remove("urls", "#" + parts.fragment, why="URL fragment left out")
        return said + tail
    return read


#: URL query parameters read aloud at most; the rest (and unreadable ones) are reported
MAX_QUERY_PARAMS = 3


def _spoken_query(run: RuleRun, query: str) -> str:
    said = []
    for k, (key, value) in enumerate(parse_qsl(query, keep_blank_values=True)):
        words = [" ".join(w for w in re.split(r"[-_.+%=~]+", x) if w) for x in (key, value)]
        readable = all(len(w) <= 24 and not (re.search(r"\d", w) and re.search(r"[a-z]", w, re.I)
                                              and len(w) > 12) for w in words)
        if k >= MAX_QUERY_PARAMS or not readable or not words[0]:
            run.remove("urls", f"{key}={value}", why="URL query parameter left out"
                       + (f" (only the first {MAX_QUERY_PARAMS} are read)" if readable else ""))
            continue
        said.append(words[0] + (f" equals {words[1]}" if words[1] else ""))
    return ", ".join(said)


def urls(run: RuleRun, t: MappedText) -> MappedText:
    if not run.cfg.urls:
        return t
    return run.sub("urls", _URL, _url_reader(run), t)


# -- emails ------------------------------------------------------------------------------
# quantifiers are bounded (a local part, a label, a path segment are short), so that no
# pattern backtracks quadratically over a long run of word characters
_EMAIL = re.compile(r"\b(?:mailto:)?([\w+-][\w.+-]{0,63})@([\w-]{1,63}(?:\.[\w-]{1,63}){1,8})\b")


def _email(m: re.Match) -> str:
    return _dotted(m.group(1)) + " at " + _dotted(m.group(2))


def emails(run: RuleRun, t: MappedText) -> MappedText:
    if not run.cfg.urls:
        return t
    return run.sub("emails", _EMAIL, _email, t)


# -- code --------------------------------------------------------------------------------
_FILE_LINE = re.compile(r"(?<![\w/])((?:[\w.~-]{0,64}/){0,16}[\w-]{1,64}\.[A-Za-z][A-Za-z0-9]{0,5})"
                        r":(\d+)(?::(\d+))?\b")
_PATH = re.compile(r"(?<![\w/])(?:~|\.{1,2})?/?(?:[\w.-]{1,64}/){2,32}[\w.-]{0,64}?[A-Za-z][\w.-]{0,64}/?"
                   r"|(?<![\w/])(?:~|\.{1,2})?/[\w.-]{0,64}?[A-Za-z][\w.-]{0,64}/[\w./-]*")
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[a-z_]\w*)+\b")
_UNDERSCORE = re.compile(r"_+")
_CAMEL = re.compile(r"\b[A-Za-z]*[a-z][A-Z][A-Za-z]*\b")
_CAMEL_SPLIT = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z]{2})(?=[A-Z][a-z]{2,})")
_CALL_PARENS = re.compile(r"(?<=\w)\(\)")


def _file_line(m: re.Match) -> str:
    out = f"{m.group(1).replace('/', ' slash ')}, line {m.group(2)}"
    return out + (f", column {m.group(3)}" if m.group(3) else "")


def _path(m: re.Match) -> str:
    s = m.group()
    lead = "slash " if s.startswith("/") else ""
    if s.startswith("~"):
        lead = "home slash "
    segs = [p for p in s.strip("~").split("/") if p and p not in (".", "..")]
    return lead + " slash ".join(segs)


def _underscore(m: re.Match) -> str:
    s, a, b = m.string, m.start(), m.end()
    inner = a > 0 and b < len(s) and s[a - 1].isalnum() and s[b].isalnum()
    return " " if inner else ""


def _camel(m: re.Match) -> str:
    w = m.group()
    first = re.match(r"[A-Z]?[a-z]*", w).group()
    if w[0].islower() or len(first) >= 3:
        return _CAMEL_SPLIT.sub(" ", w)
    return w


def code(run: RuleRun, t: MappedText) -> MappedText:
    if not run.cfg.code:
        return t
    t = run.sub("code", _FILE_LINE, _file_line, t)
    t = run.sub("code", _PATH, _path, t)
    t = run.sub("code", _CALL_PARENS, "", t)
    t = run.sub("code", _DOTTED, lambda m: _dotted(m.group())
                if any(len(p) > 1 for p in m.group().split(".")) else m.group(), t)
    t = run.sub("code", _UNDERSCORE, _underscore, t)
    t = run.sub("code", _CAMEL, _camel, t)
    return t
