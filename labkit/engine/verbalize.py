"""English verbalization: the sanitization rules that write numbers and their kin out as
English words, each rule's patterns beside it: ISO dates, clock times, versions, units
and rates, and digit runs too long to read as one number.

These rules write English: for another language they are off (:data:`ENGLISH_RULES`),
and its own G2P reads the originals. Each rule takes the call's
:class:`~labkit.engine.sanitizing.RuleRun` and the text and returns the text;
labkit.engine.text runs them in the order of its ``RULES``.
"""
from __future__ import annotations

import calendar
import re
from typing import Callable

from num2words import num2words

from labkit.engine.sanitizing import MappedText, RuleRun


#: rules that write English words: off for other languages (espeak reads the originals)
ENGLISH_RULES = ("dates", "times", "versions", "units", "numbers")


def _num(n: int) -> str:
    return num2words(n)


# -- dates -------------------------------------------------------------------------------
_ISO_DATE = re.compile(r"(?<![\w.:/-])(\d{4})-(\d{2})-(\d{2})"
                       r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"
                       r"(?![\w:/-]|\.\d)")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def _iso_date(m: re.Match) -> str:
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(max(year, 1), month)[1]):
        return m.group()
    out = f"{_MONTHS[month - 1]} {num2words(day, to='ordinal')}, {num2words(year, to='year')}"
    if m.group(4) is not None:
        h, mi = int(m.group(4)), int(m.group(5))
        if h > 23 or mi > 59:
            return m.group()
        out += " at " + _clock(h, mi, int(m.group(6)) if m.group(6) else None, None)
        zone = m.group(7)
        if zone == "Z":
            out += " UTC"
        elif zone:
            minutes = int(zone[-2:])
            out += (f" UTC {'plus' if zone[0] == '+' else 'minus'} {_num(int(zone[1:3]))}"
                    + (f" {_num(minutes)}" if minutes else ""))
    return out


def dates(run: RuleRun, t: MappedText) -> MappedText:
    return run.sub("dates", _ISO_DATE, _iso_date, t)


# -- times -------------------------------------------------------------------------------
_TIME = re.compile(r"(?<![\w.:/])([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?"
                   r"(?:\s?([AaPp])\.?[Mm]\b\.?)?(?![\w:/]|\.\d)")


def _clock(h: int, mi: int, sec: int | None, ampm: str | None) -> str:
    if mi == 0:
        words = f"{_num(h)} " + ("o'clock" if ampm or h <= 12 else "hundred")
    elif mi < 10:
        words = f"{_num(h)} oh {_num(mi)}"
    else:
        words = f"{_num(h)} {_num(mi)}"
    if sec:
        words += f" and {_num(sec)} second{'s' if sec != 1 else ''}"
    if ampm:
        words = words.replace(" o'clock", "") + f" {ampm.upper()}M"
    return words


def _time(m: re.Match) -> str:
    said = _clock(int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None,
                  m.group(4))
    after = m.string[m.end():m.end() + 2]
    if m.group().endswith(".") and (not after.strip() or after[1:2].isupper()):
        said += "."  # "p.m." ended the sentence too
    return said


def times(run: RuleRun, t: MappedText) -> MappedText:
    return run.sub("times", _TIME, _time, t)


# -- versions ----------------------------------------------------------------------------
_VERSION = re.compile(r"(?<![\w.])[vV](\d{1,4}(?:\.\d{1,4}){0,3})(?![\w]|\.\d)")
_DOTTED_VERSION = re.compile(r"(?<![\w.])(\d{1,3}\.\d{1,3}\.\d{1,3})(?![\w]|\.\d)")


def _point(version: str) -> str:
    return " point ".join(_num(int(p)) for p in version.split("."))


def versions(run: RuleRun, t: MappedText) -> MappedText:
    t = run.sub("versions", _VERSION, lambda m: "version " + _point(m.group(1)), t)
    return run.sub("versions", _DOTTED_VERSION, lambda m: _point(m.group(1)), t)


# -- units -------------------------------------------------------------------------------
_PER_UNITS = {"s": "second", "sec": "second", "secs": "second", "second": "second",
              "ms": "millisecond", "min": "minute", "minute": "minute", "h": "hour",
              "hr": "hour", "hour": "hour", "d": "day", "day": "day", "wk": "week",
              "week": "week", "mo": "month", "month": "month", "yr": "year", "year": "year"}
_UNITS = {"ms": "milliseconds", "µs": "microseconds", "us": "microseconds",
          "ns": "nanoseconds", "kB": "kilobytes", "KB": "kilobytes", "MB": "megabytes",
          "GB": "gigabytes", "TB": "terabytes", "KiB": "kibibytes", "MiB": "mebibytes",
          "GiB": "gibibytes", "Hz": "hertz", "kHz": "kilohertz", "MHz": "megahertz",
          "GHz": "gigahertz", "km": "kilometers", "kg": "kilograms", "mg": "milligrams",
          "cm": "centimeters", "mm": "millimeters", "kW": "kilowatts", "kWh": "kilowatt hours",
          "Mbps": "megabits per second", "Gbps": "gigabits per second",
          "fps": "frames per second", "req": "requests", "reqs": "requests"}
_PER = re.compile(r"(?<![\w/])([A-Za-zµ]+|\d+(?:\.\d+)?)\s?/\s?(" + "|".join(
    sorted(_PER_UNITS, key=len, reverse=True)) + r")(?![\w/])")
_UNIT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?(" + "|".join(
    sorted(map(re.escape, _UNITS), key=len, reverse=True)) + r")(?![\w/])")


def _per(m: re.Match) -> str:
    what, unit = m.group(1), _PER_UNITS[m.group(2)]
    what = _UNITS.get(what, what)
    return f"{what} per {unit}"


def _unit(m: re.Match) -> str:
    number, unit = m.group(1), _UNITS[m.group(2)]
    if number == "1" and unit.endswith("s") and " " not in unit:
        unit = unit[:-1]
    return f"{number} {unit}"


def units(run: RuleRun, t: MappedText) -> MappedText:
    t = run.sub("units", _PER, _per, t)
    return run.sub("units", _UNIT, _unit, t)


# -- numbers -----------------------------------------------------------------------------
#: digits read out of a longer run than text.max_number_digits; the rest is reported
LONG_NUMBER_SPOKEN = 24


def _long_number(run: RuleRun) -> Callable[[re.Match], str]:
    def repl(m: re.Match) -> str:
        digits = m.group()
        head, rest = digits[:LONG_NUMBER_SPOKEN], len(digits) - LONG_NUMBER_SPOKEN
        if rest <= 0:
            return " ".join(digits)
        run.remove("numbers", digits, why=f"{len(digits)} digits: the first "
                   f"{LONG_NUMBER_SPOKEN} read one by one, the other {rest} left out")
        return " ".join(head) + f", and {rest} more digits,"
    return repl


def numbers(run: RuleRun, t: MappedText) -> MappedText:
    return run.sub("numbers", re.compile(r"\d{%d,}" % (run.cfg.max_number_digits + 1)),
                   _long_number(run), t)
