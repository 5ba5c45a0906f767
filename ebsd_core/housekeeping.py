"""Clean-up of what users leave behind on a hosted server.

Browser sessions have no reliable "ended" signal, so a session's private
folder (uploads, datasets, maps) ages out: it is removed once nothing in it was
touched for ``max_age_hours``. Temporary ``.part`` folders and files that a
killed process left in the model store are removed once they are an hour old
(a live save finishes in seconds). The models that a removed session's demos
trained go with it, out of the store's listing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from ebsd_core.errors import InputError, StoreError, os_error_text
from ebsd_core.jobs import DONE, jobs_home
from ebsd_core.paths import fewshot_home
from ebsd_core.store import delete_model

log = logging.getLogger(__name__)
SESSION_MAX_AGE_HOURS = 24.0
#: The environment variable that sets how long an idle session's folder is kept, in hours.
SESSION_KEEP_VARIABLE = "EBSD_SESSION_KEEP_HOURS"
#: In ``sessions/``: an empty file per session removed for idleness, named by its id, dated by its removal; a link
#: bookmarked before then finds it, to say what became of its work.
REMOVED_SESSIONS = ".removed"
REMOVED_KEPT_DAYS = 90  # how long such a file is kept
STALE_PART_SECONDS = 3600.0


def session_keep_hours() -> float:
    """How long an idle session's folder is kept: ``$EBSD_SESSION_KEEP_HOURS``, else 24 hours (a value that is not a
    positive number is said in the server's log and not used)."""
    value = os.environ.get(SESSION_KEEP_VARIABLE, "").strip()
    if not value:
        return SESSION_MAX_AGE_HOURS
    try:
        hours = float(value)
    except ValueError:
        hours = 0.0
    if not 0 < hours < math.inf:  # nan too
        log.warning(
            "%s=%s is not a number of hours: idle sessions are kept %g hours",
            SESSION_KEEP_VARIABLE,
            value,
            SESSION_MAX_AGE_HOURS,
        )
        return SESSION_MAX_AGE_HOURS
    return hours


def session_removed_at(session: str, home: Path | None = None) -> float | None:
    """When the folder of ``session`` was removed for idleness (Unix seconds); None where it was not, or long ago."""
    try:
        return ((home or fewshot_home()) / "sessions" / REMOVED_SESSIONS / session).stat().st_mtime
    except (OSError, ValueError):
        return None


def _record_removed(sessions: Path, removed: list[str]) -> None:
    """Note each removed session for :func:`session_removed_at`; forget notes older than :data:`REMOVED_KEPT_DAYS`."""
    notes = sessions / REMOVED_SESSIONS
    try:
        notes.mkdir(exist_ok=True)
        for session in removed:
            (notes / session).touch()
        cutoff = time.time() - REMOVED_KEPT_DAYS * 86400
        for note in notes.iterdir():
            if note.stat().st_mtime < cutoff:
                note.unlink()
    except OSError as exc:  # only what a returning link is told depends on it
        log.warning("could not note the removed sessions in %s: %s", notes, os_error_text(exc))


def _last_touched(folder: Path) -> float:
    try:
        newest = folder.stat().st_mtime
    except OSError:  # removed meanwhile by another server process: nothing to do
        return time.time()
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue
    return newest


def cleanup_sessions(
    home: Path | None = None, max_age_hours: float | None = None, working: Iterable[str] = ()
) -> list[str]:
    """Remove session folders untouched for ``max_age_hours`` (default: :func:`session_keep_hours`); returns the
    removed session ids, each noted for :func:`session_removed_at`.

    The sessions in ``working`` (those with a job queued or running) stay, however long ago their user looked: a
    phase map of a large scan can run for longer than a day on a CPU, reading the scan uploaded to the session's
    folder and writing its map there at the end."""
    sessions = (home or fewshot_home()) / "sessions"
    if not sessions.is_dir():
        return []
    cutoff = time.time() - (session_keep_hours() if max_age_hours is None else max_age_hours) * 3600
    working = set(working)
    removed = []
    for folder in sessions.iterdir():
        if folder.name == REMOVED_SESSIONS:
            continue
        if folder.is_dir() and folder.name not in working and _last_touched(folder) < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            if folder.exists():  # files of another account's in it: its jobs and models stay with it
                log.warning("could not remove the idle session folder %s", folder)
                continue
            removed.append(folder.name)
    if removed:
        log.info("removed %d idle session folder(s)", len(removed))
        _record_removed(sessions, removed)
    return removed


def cleanup_partial_saves(store: Path, max_age_s: float = STALE_PART_SECONDS) -> list[str]:
    """Remove ``.NAME.*.part`` leftovers of saves that a killed process never finished."""
    if not store.is_dir():
        return []
    cutoff = time.time() - max_age_s
    removed = []
    for path in store.glob(".*.part"):
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        except FileNotFoundError:  # removed meanwhile by another server process
            continue
        except OSError as exc:  # a store the server may read but not write: every page would fail on it
            log.warning("could not remove %s, left by a save that never finished: %s", path, os_error_text(exc))
            continue
        removed.append(path.name)
    return removed


def retire_demo_models(sessions: Iterable[str], home: Path | None = None, store: Path | None = None) -> list[str]:
    """Move the models that the demos of these removed sessions trained out of the store's listing.

    Every click on a demo trains and saves a model for whoever clicked (``demo-<job>``, ``demo-map-...-<job>``);
    on a server a class uses, they would fill everyone's model pickers. With their session gone nobody is
    looking at them, and one click makes such a model again. They move to the store's ``.deleted/`` folder
    (:func:`ebsd_core.store.delete_model`), never erased. Returns the names moved."""
    owners = set(sessions)
    jobs = jobs_home() if home is None else home / "jobs"
    if not owners or not jobs.is_dir():
        return []
    retired = []
    for path in jobs.glob("*.json"):
        try:
            state = json.loads(path.read_text())
            name = str(state.get("result", {}).get("model_name") or "")
        except (OSError, ValueError, AttributeError):
            continue
        demo_model = name.startswith("demo-") and name.endswith(f"-{state.get('id')}")
        if state.get("owner") in owners and state.get("status") == DONE and demo_model:
            try:
                delete_model(name, store)
            except StoreError:  # deleted already, or never saved
                continue
            except (InputError, OSError) as exc:  # a store the server cannot write to
                log.warning("could not move the demo model %s out of the store's listing: %s", name, exc)
                continue
            retired.append(name)
    if retired:
        log.info("moved %d demo model(s) of removed sessions to .deleted/", len(retired))
    return retired
