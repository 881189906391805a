"""Sizes and durations as scenario files and options write them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.vocab.units import human_bytes, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (1024, 1024),
        (0, 0),
        ("1024", 1024),
        ("10B", 10),
        ("5MB", 5_000_000),
        ("5mb", 5_000_000),
        ("5M", 5_000_000),
        ("2kB", 2000),
        ("512KiB", 512 * 1024),
        ("3MiB", 3 * 1024**2),
        ("1GiB", 1024**3),
        ("1.5 GB", 1_500_000_000),
        (" 0.5KiB ", 512),
        ("2TB", 2 * 1000**4),
    ],
)
def test_parse_size_reads_decimal_and_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("junk", "says"),
    [
        ("", "expected a number"),
        ("MB", "expected a number"),
        ("-5MB", "expected a number"),
        ("5 apples", "unknown unit 'apples'"),
        ("5XB", "unknown unit 'XB'"),
        ("1,5MB", "expected a number"),
        ("5 M B", "expected a number"),
        (-1, "must not be negative"),
        (True, "expected a number of bytes"),
        (1.5, "expected a number of bytes"),
        (None, "expected a number of bytes"),
    ],
)
def test_parse_size_rejects_junk_with_a_message_quoting_it(junk, says):
    with pytest.raises(ValueError, match="invalid size") as caught:
        parse_size(junk)
    assert says in str(caught.value)
    assert repr(junk) in str(caught.value)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["KiB", "MiB", "kB", "MB"]))
def test_parse_size_multiplies_whole_numbers_exactly(number, unit):
    multiplier = {"KiB": 1024, "MiB": 1024**2, "kB": 1000, "MB": 1000**2}[unit]
    assert parse_size(f"{number}{unit}") == number * multiplier


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), (1.5, 1.5), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), (" 3 ", 3.0)],
)
def test_parse_duration_reads_numbers_and_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("junk", ["", "soon", "-1s", "1 day", True, None, [1]])
def test_parse_duration_rejects_junk_quoting_it(junk):
    with pytest.raises(ValueError, match="expected a duration") as caught:
        parse_duration(junk)
    assert repr(junk) in str(caught.value)


@pytest.mark.parametrize(("size", "text"), [(12, "12 B"), (2_000, "2 kB"), (3_000_000, "3.0 MB")])
def test_human_bytes(size, text):
    assert human_bytes(size) == text
