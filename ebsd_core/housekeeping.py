"""Clean-up of what users leave behind on a hosted server.

Browser sessions have no reliable "ended" signal, so a session's private
folder (uploads, datasets, maps) ages out: it is removed once nothing in it was
touched for ``max_age_hours``. Temporary ``.part`` folders and files that a
killed process left in the model store are removed once they are an hour old
(a live save finishes in seconds).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from ebsd_core.paths import fewshot_home

log = logging.getLogger(__name__)
SESSION_MAX_AGE_HOURS = 24.0
STALE_PART_SECONDS = 3600.0


def _last_touched(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue
    return newest


def cleanup_sessions(home: Path | None = None, max_age_hours: float = SESSION_MAX_AGE_HOURS) -> list[str]:
    """Remove session folders untouched for ``max_age_hours``; returns the removed session ids."""
    sessions = (home or fewshot_home()) / "sessions"
    if not sessions.is_dir():
        return []
    cutoff = time.time() - max_age_hours * 3600
    removed = []
    for folder in sessions.iterdir():
        if folder.is_dir() and _last_touched(folder) < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    if removed:
        log.info("removed %d idle session folder(s)", len(removed))
    return removed


def cleanup_partial_saves(store: Path, max_age_s: float = STALE_PART_SECONDS) -> list[str]:
    """Remove ``.NAME.*.part`` leftovers of saves that a killed process never finished."""
    if not store.is_dir():
        return []
    cutoff = time.time() - max_age_s
    removed = []
    for path in store.glob(".*.part"):
        if path.stat().st_mtime < cutoff:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
