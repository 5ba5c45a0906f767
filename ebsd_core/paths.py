"""Where the tool keeps its files (working folder, model store), and user-given paths confined to the data root."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from ebsd_core.errors import InputError

#: The environment variable that moves :func:`fewshot_home`.
FEWSHOT_HOME_VARIABLE = "EBSD_FEWSHOT_HOME"


def fewshot_home() -> Path:
    """Per-user working folder: ``$EBSD_FEWSHOT_HOME`` or ``~/.ebsd_fewshot`` (jobs, sessions, user masters)."""
    return Path(os.environ.get(FEWSHOT_HOME_VARIABLE, Path.home() / ".ebsd_fewshot"))


#: The environment variable that moves :func:`default_store`.
MODEL_STORE_VARIABLE = "EBSD_MODEL_STORE"


def default_store() -> Path:
    """``$EBSD_MODEL_STORE`` or the project's ``models/`` folder."""
    return Path(os.environ.get(MODEL_STORE_VARIABLE, Path(__file__).resolve().parents[1] / "models"))


#: Why a page refuses a file or folder named in bytes that are not UTF-8: the browser and Streamlit take text alone.
NOT_UTF8 = "not UTF-8 text (as names copied from old Windows shares can be)"


def printable_path(path: str | Path) -> str:
    """``path`` as text that any text file or page can hold: a name that is not UTF-8 (copied from an old Windows
    share, say ``caf\xe9``) has its undecodable bytes shown as U+FFFD, as ``ls`` shows them, where writing it as
    Python holds it ("surrogates not allowed") failed a whole CSV."""
    return os.fsencode(str(path)).decode("utf-8", "replace")


def untextual_folder_problem(folder: Path, role: str, variable: str) -> str | None:
    """Why the dashboard cannot use ``folder`` (its ``role``, set by ``variable``) where its path is not UTF-8 text,
    in a sentence for whoever runs the server; None where it is. Every page held the path in a cache key or a line
    of text, and ended in "surrogates not allowed"."""
    if printable_path(folder) == str(folder):
        return None
    return (
        f"The {role} {printable_path(folder)} ({variable}) has a path that is {NOT_UTF8}, which the pages cannot "
        f"show: whoever runs the server can rename it (convmv does so) or set {variable} to another folder. The "
        "command line works there as it is."
    )


def is_hidden(name: str) -> bool:
    """A hidden file (``.name``), never a pattern or a scan: among them the ``._name.png`` that macOS writes beside
    every file it copies onto a USB drive (its metadata, not an image)."""
    return name.startswith(".")


#: The environment variable naming the server's folder that users may pick scans from by path.
DATA_ROOT_VARIABLE = "EBSD_DATA_ROOT"


def data_root_problem(root: Path) -> str | None:
    """Why nothing can be picked under the data root (a typo in ``EBSD_DATA_ROOT``, a share not mounted), in a
    sentence for whoever runs the server; None where it can be listed. Every path typed would otherwise be told "no
    such file or folder under the data root", as if the user had mistyped it."""
    if problem := untextual_folder_problem(root, "data root", DATA_ROOT_VARIABLE):
        return problem
    try:
        if not root.exists():
            why = "does not exist (not mounted, or mistyped?)"
        elif not root.is_dir():
            why = "is not a folder"
        else:
            with os.scandir(root):
                return None
    except PermissionError:
        why = "cannot be read by the account this runs as (permission denied)"
    return f"The data root {root} ({DATA_ROOT_VARIABLE}) {why}: whoever runs the server can fix it, or upload instead."


def resolve_under_root(root: str | Path, relative: str) -> Path:
    """Resolve ``relative`` inside ``root``; refuse anything that escapes it.

    Absolute paths, ``..`` components, URL-encoded tricks and symbolic links
    that point out of the root are all refused with a clear message.
    """
    root = Path(root).resolve()
    text = urllib.parse.unquote(str(relative)).strip()
    if not text:
        raise InputError("empty path")
    if "\x00" in text:
        raise InputError(f"{relative!r}: path contains a NUL character")
    candidate = Path(text)
    if candidate.is_absolute() or text.startswith(("~", "\\\\")):
        raise InputError(f"{relative!r}: give a path relative to the data root, not an absolute one")
    if ".." in candidate.parts:
        raise InputError(f"{relative!r}: '..' is not allowed in paths")
    resolved = (root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise InputError(f"{relative!r}: points outside the data root (through a link?)")
    try:
        exists = resolved.exists()
    except PermissionError:  # in a folder this account may not read
        raise InputError(f"{relative!r}: this account may not read the folder it is in (permission denied)") from None
    if not exists:
        raise InputError(f"{relative!r}: no such file or folder under the data root")
    if printable_path(resolved) != str(resolved):  # the pages' caches and the browser take UTF-8 text alone
        raise InputError(
            f"'{printable_path(relative)}': its name is {NOT_UTF8}: rename it to read it here (convmv does so for a "
            "whole tree); the command line reads it as it is"
        )
    return resolved


def broken_link(path: Path) -> str | None:
    """``a link to TARGET, which does not exist`` where ``path`` is a link that leads nowhere (a share not mounted, a
    folder moved), else None."""
    if path.is_symlink() and not path.exists():
        return f"a link to {os.readlink(path)}, which does not exist"
    return None
