"""The one cell formatter and table writer."""
from labkit import tables


def test_interval_is_formatted_once_and_blank_when_missing():
    assert tables.interval([0.98312, 1.0391]) == "[0.983, 1.039]"
    assert tables.interval((1.0, 2.0), 2) == "[1.00, 2.00]"
    assert tables.interval(None) == "" and tables.interval([1.0, None]) == ""


def test_markdown_escapes_pipes_and_marks_missing_values():
    out = tables.markdown([{"a": "x|y", "b": None, "c": 0.123456}], digits=3)
    assert out.splitlines()[2] == "| x\\|y | — | 0.123 |"
