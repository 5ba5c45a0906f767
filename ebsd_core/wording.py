"""Plain wording shared by the engine's messages and the dashboard."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """``1 pattern``, ``1,024 patterns``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
