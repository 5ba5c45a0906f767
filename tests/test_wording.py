"""Plain wording shared by messages and pages."""

import datetime as dt

from ebsd_core.wording import byte_size, counted, is_whole_number, percent, since, slug


def test_counts_and_sizes():
    assert counted(1, "pattern") == "1 pattern" and counted(1024, "pattern") == "1,024 patterns"
    assert byte_size(840) == "840 bytes" and byte_size(4.2e6) == "4.2 MB" and byte_size(12e9) == "12 GB"


def test_a_share_just_short_of_all_or_above_none_is_not_rounded_to_it():
    """A map with one point wrong of 2,000 was "100.0%" right beside a red point on its difference map."""
    assert percent(0.945) == "94.5%" and percent(1.0) == "100.0%" and percent(0.0) == "0.0%"
    assert percent(1999 / 2000) == "99.95%" and percent(1 - 1e-6) == "99.99%"
    assert percent(1 / 3000) == "0.04%" and percent(1e-6) == "0.01%"


def test_since_says_how_long_ago_in_the_largest_whole_unit():
    now = dt.datetime(2026, 12, 3, 18, 0, tzinfo=dt.UTC)
    assert since("2026-12-03T17:59:30+00:00", now) == "just now"
    assert since("2026-12-03T17:55:00+00:00", now) == "5 minutes ago"
    assert since("2026-12-03T17:00:00+00:00", now) == "1 hour ago"
    assert since("2026-12-01T12:00:00+00:00", now) == "2 days ago"
    assert since("2026-12-04T00:00:00+00:00", now) == "on 2026-12-04"  # a clock ahead of this one
    assert since("not a time", now) == "on not a time" and since("", now) == "at an unknown time"


def test_whole_numbers_are_ascii_digits_alone():
    """ "²".isdigit() holds and int() refuses it: typed as a space group (`--classes ²`) it ended in a traceback."""
    assert is_whole_number("225") and is_whole_number("0")
    assert not any(is_whole_number(text) for text in ("²", "²²⁵", "٢٢٥", "", "-1", "5.5", " 5"))


def test_slug_keeps_letters_digits_and_underscores():
    assert slug("Scan 2", "scan") == "scan_2" and slug("My CIF_phase (v2)", "x") == "my_cif_phase_v2"
    assert slug("µ…", "cif_phase") == "cif_phase"
