"""A home folder the libraries can write to, for a server account that has none.

HyperSpy (which kikuchipy imports) makes ``~/.hyperspy`` when imported and fails without it ("PermissionError:
[Errno 13] Permission denied: '/nonexistent/.hyperspy'"), numba caches orix's and kikuchipy's compiled routines in
``~/.cache/numba`` where it cannot write beside them ("cannot cache function 'get_pyramid_single': no locator
available"), and matplotlib keeps its settings in ``~/.config``. A lab's server often runs as an account without a
home it can write to (a service user, a container run under a numbered user), where the engine could not be
imported at all; there ``HOME`` is pointed at a folder of the tool's before any of them is imported.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from ebsd_core.atomic import account_name, check_writable_folder, may_write_in, owner_note
from ebsd_core.errors import InputError
from ebsd_core.paths import FEWSHOT_HOME_VARIABLE, fewshot_home


def _writable(folder: Path | None) -> bool:
    """Whether files can be written in ``folder``, or it can be made (as the libraries make their folders in it)."""
    if folder is None:
        return False
    try:
        check_writable_folder(folder)
    except InputError:
        return False
    return True


def _current_home() -> Path | None:
    try:
        return Path.home()
    except (RuntimeError, KeyError):  # no HOME, and no entry for this user in the password database
        return None


def replacement_home() -> Path | None:
    """The home given where this user's cannot be written to: ``$EBSD_FEWSHOT_HOME/home``, else a folder of this
    user's in the temporary folder; None where neither can be written either."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    candidates = []
    if given := os.environ.get(FEWSHOT_HOME_VARIABLE):
        candidates.append(Path(given) / "home")
    if (temporary := _temporary_folder()) is not None:
        candidates.append(temporary / f"ebsd_fewshot-home-{user}")
    for folder in filter(_writable, candidates):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # taken meanwhile, or a file of that name in the temporary folder
            continue
        return folder
    return None


def ensure_writable_home() -> Path | None:
    """Point ``HOME`` at :func:`replacement_home` where the current one cannot be written to; the new home, or None
    where the current one serves (or no folder can be written at all)."""
    home = _current_home()
    if _writable(home) or (replacement := replacement_home()) is None:
        return None
    os.environ["HOME"] = str(replacement)
    given = os.environ.get(FEWSHOT_HOME_VARIABLE)
    if given and _writable(Path(given)):
        where = "kept where EBSD_FEWSHOT_HOME says"
    elif given:
        where = f"to be kept in {given} (EBSD_FEWSHOT_HOME), which cannot be written to either"
    else:
        where = (
            f"kept under {replacement}, in the temporary folder: set EBSD_FEWSHOT_HOME to a lasting folder to keep them"
        )
    logging.getLogger("ebsd_core").warning(
        "the home folder %s cannot be written to: HyperSpy's settings and the compiled routines' cache go under "
        "%s instead; sessions, jobs and masters are %s",
        home or "(none)",
        replacement,
        where,
    )
    return replacement


def _temporary_folder() -> Path | None:
    """The system's temporary folder, or None where it has none this account can write to."""
    try:
        return Path(tempfile.gettempdir())
    except FileNotFoundError:  # "No usable temporary directory found in [...]"
        return None


def ensure_temporary_folder() -> Path | None:
    """Point ``TMPDIR`` at ``tmp`` in the working folder where the system has no temporary folder this account can
    write to; that folder, or None where the system's serves (or the working folder cannot be written either).

    A container run with a read-only file system and one writable volume for the working folder has none, and the
    engine could not be imported ("FileNotFoundError: No usable temporary directory found in ['/tmp', ...]"), nor
    could dask's workers start."""
    if _temporary_folder() is not None:
        return None
    try:
        folder = fewshot_home() / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home known, and no EBSD_FEWSHOT_HOME
        return None
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # looked for again, now finding TMPDIR
    if _temporary_folder() != folder:
        return None
    logging.getLogger("ebsd_core").warning(
        "no temporary folder can be written to: temporary files go under %s instead", folder
    )
    return folder


def working_folder_problem(folder: Path | None = None) -> str | None:
    """Why sessions, uploads and jobs cannot be kept in ``folder`` (default :func:`ebsd_core.paths.fewshot_home`), in
    a sentence for whoever runs the server; None where they can. The dashboard cannot work without it.

    Every folder in it must be the server's to write in, not only the top: a lab that moved its server from root
    (or a person's account) to a service account, and gave it the working folder without what is in it, had every
    page end in "PermissionError: [Errno 13] Permission denied: '.../jobs/.server.lock'"."""
    folder = folder or fewshot_home()
    try:
        check_writable_folder(folder)
    except InputError as exc:
        return (
            f"This server {exc.reason}, its working folder for sessions, uploads and jobs. Whoever runs it can give "
            f"it write access there, or set {FEWSHOT_HOME_VARIABLE} to a folder it can write to."
        )
    if (barred := _first_unwritable(folder)) is not None:
        kept = " ".join(str(folder / name) for name in SERVER_FOLDERS if (folder / name).exists())
        return (
            f"This server (account {account_name()}) cannot write in {barred}{owner_note(barred)}, in its working "
            f"folder for sessions, uploads and jobs. Whoever runs it can give it what it keeps there (chown -R "
            f"{account_name()} {kept}), or set {FEWSHOT_HOME_VARIABLE} to a folder of its own."
        )
    return None


#: What the dashboard keeps in its working folder, and writes in: jobs' records (:func:`ebsd_core.jobs.jobs_home`),
#: sessions' files, master patterns of users' phases (:func:`ebsd_core.masters.user_master_dir`). Only these are
#: looked through: a lab may keep other things there (its data share, read-only), which are none of the server's.
SERVER_FOLDERS = ("jobs", "sessions", "masters")


def _first_unwritable(folder: Path) -> Path | None:
    """The first folder of :data:`SERVER_FOLDERS` in ``folder``, or in them (or the jobs' lock file, which a server
    opens to write), that this account may not write in, or None. 4,500 folders took 0.06 s."""
    from ebsd_core.jobs import SERVER_LOCK

    unlisted: list[Path] = []

    def note_refused(exc: OSError) -> None:  # not a folder gone meanwhile (a session cleaned up), nor one to be made
        if isinstance(exc, PermissionError):
            unlisted.append(Path(exc.filename))

    for top in SERVER_FOLDERS:
        for root, _, files in os.walk(folder / top, onerror=note_refused):
            if not may_write_in(root):
                return Path(root)
            if SERVER_LOCK in files and not may_write_in(lock := Path(root) / SERVER_LOCK):
                return lock
        if unlisted:
            return unlisted[0]
    return None
