"""Plain wording shared by the engine's messages and the dashboard."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """``1 pattern``, ``1,024 patterns``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def byte_size(count: float) -> str:
    """``840 bytes``, ``131 kB``, ``4.2 MB``, ``12 GB``: two significant figures at most below 100 of a unit."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    return counted(int(count), "byte")
