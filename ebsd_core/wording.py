"""Plain wording shared by the engine's messages and the dashboard."""

from __future__ import annotations

import datetime as _dt
import math
import re


def counted(count: int, noun: str) -> str:
    """``1 pattern``, ``1,024 patterns``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def percent(fraction: float) -> str:
    """``94.5%``; a share one decimal would round to all or nothing with two: ``99.95%`` (one point of 2,000
    wrong), ``0.05%``, never ``100.0%`` or ``0.0%`` for less or more than none."""
    text = f"{fraction:.1%}"
    if text == "100.0%" and fraction < 1:
        return f"{math.floor(fraction * 10_000) / 100:.2f}%"
    if text == "0.0%" and fraction > 0:
        return f"{math.ceil(fraction * 10_000) / 100:.2f}%"
    return text


def byte_size(count: float) -> str:
    """``840 bytes``, ``131 kB``, ``4.2 MB``, ``12 GB``: two significant figures at most below 100 of a unit."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    return counted(int(count), "byte")


def since(iso_time: str, now: _dt.datetime | None = None) -> str:
    """``just now``, ``5 minutes ago``, ``3 hours ago``, ``2 days ago`` for an ISO time with a zone
    (``on 2026-12-03`` when it cannot be read or lies ahead)."""
    try:
        then = _dt.datetime.fromisoformat(iso_time)
        seconds = ((now or _dt.datetime.now(_dt.UTC)) - then).total_seconds()
    except (TypeError, ValueError):
        return f"on {iso_time[:10]}" if iso_time else "at an unknown time"
    if seconds < 0:
        return f"on {iso_time[:10]}"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return f"{counted(int(seconds // size), unit)} ago"
    return "just now"


def is_whole_number(text: str) -> bool:
    """Whether ``text`` is ASCII digits alone. ``str.isdigit`` holds for "²", which ``int()`` refuses (a traceback
    where a space group or a count was typed as one), and for other scripts' digits."""
    return text.isascii() and text.isdigit()


def slug(text: str, empty: str) -> str:
    """``text`` as a key or file name of lower-case letters, digits and underscores (``"Scan 2"``: ``scan_2``);
    ``empty`` where none of its characters is one."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or empty
