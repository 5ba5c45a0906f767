"""Atomic file writes: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import contextlib
import errno
import getpass
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ebsd_core.errors import NOT_A_FILE, InputError
from ebsd_core.paths import broken_link
from ebsd_core.wording import byte_size


def _umask_from_proc() -> int | None:
    """The process's umask as Linux reports it, without changing it (None elsewhere)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return None


def _umask_by_setting_it() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


#: Where the system does not report it: read once at import, because setting the umask to read it is
#: process-wide, and for that moment a file that another thread of the server makes would be writable by all.
_UMASK_AT_IMPORT = _umask_by_setting_it() if _umask_from_proc() is None else None


def _umask() -> int:
    for umask in (_umask_from_proc(), _UMASK_AT_IMPORT):
        if umask is not None:
            return umask
    return _umask_by_setting_it()  # /proc readable at import and not now: not seen


def check_writable_folder(folder: str | Path, target: str | Path | None = None) -> None:
    """Check that ``folder`` exists and files can be written in it, or that it can be made. Creates nothing:
    commands call it before long work; the writers below report the same problems when they meet them.

    Raises
    ------
    InputError
        Naming ``target`` (default: the folder) and the reason, before any long work is done.
    """
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists():
        if link := broken_link(existing):  # a share not mounted: nothing must land beside it, nor fail later
            raise InputError(f"cannot write in {folder} ({existing} is {link})", target or folder)
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write in {folder} ({existing} is a file)", target or folder)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise InputError(f"cannot write in {folder} ({exc.strerror or exc})", target or folder) from None


def may_write_in(path: str | Path) -> bool:
    """Whether this account's permissions let it write ``path``: make, rename and remove files in a folder, or change
    a file. Asks the system rather than trying a write (:func:`check_writable_folder`), for the many folders of a
    tree."""
    wanted = os.W_OK | os.X_OK if Path(path).is_dir() else os.W_OK
    return os.access(path, wanted)


def account_name() -> str:
    """This process's user name, or its number where the system has no name for it (a container's user)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def owner_note(path: Path) -> str:
    """`` (account root's)``: whose ``path`` is, for a sentence on permissions; nothing where the system cannot say."""
    try:
        return f" (account {path.owner()}'s)"
    except (KeyError, OSError, NotImplementedError):
        return ""


def _refuse_all_but_a_file(final: Path) -> None:
    """A write goes to a new file, or replaces a file: never a folder, nor a terminal, pipe or device (found on
    review: ``predict --out /dev/stdout`` run as root renamed its CSV onto /dev/stdout, replacing that link)."""
    if final.is_dir():
        raise InputError("is a folder; give a file name", final)
    if final.exists() and not final.is_file():
        raise InputError(f"{NOT_A_FILE}: give the name of a file to write", final)


def check_writable_file(path: str | Path) -> None:
    """Check that a file can be written at ``path``: a file or none yet, in a folder that can be written."""
    final = Path(path)
    _refuse_all_but_a_file(final)
    check_writable_folder(final.parent, final)


def check_free_space(path: str | Path, needed_bytes: int) -> None:
    """Refuse to start writing ``needed_bytes`` at ``path`` where the disk has less room (a folder not made yet:
    its nearest existing parent's disk)."""
    folder = Path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise InputError(
            f"needs up to {byte_size(needed_bytes)} and {byte_size(free)} are free in {folder}: "
            "free some space, or write it elsewhere",
            path,
        )


#: What a full disk or quota makes writes fail with; h5py and safetensors sometimes give only the words.
OUT_OF_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
OUT_OF_SPACE_WORDS = ("No space left on device", "Disk quota exceeded", "File too large")


@contextlib.contextmanager
def _out_of_space_named_for(target: Path) -> Iterator[None]:
    """Turn a write that ran out of disk into an InputError naming ``target``, not ``.target.xyz.part`` or nothing
    (a failed ``write`` names no file). Other errors pass unchanged: they may concern a file being read."""
    try:
        yield
    except OSError as exc:
        words = next((w for w in OUT_OF_SPACE_WORDS if w in str(exc)), None)
        if exc.errno not in OUT_OF_SPACE_ERRNOS and words is None:
            raise
        reason = words or exc.strerror or str(exc)
        raise InputError(f"could not be written ({reason}): free some space in {target.parent}", target) from None


@contextlib.contextmanager
def _named_for(target: Path) -> Iterator[None]:
    """Turn an OSError of making ``target``'s folder or a file in it into an InputError naming ``target``."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write in {target.parent} ({exc.strerror or exc})", target) from None


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    With ``keep_suffix`` the temporary name ends like ``path`` (for writers that
    choose the format from the extension).

    The temporary file lives in the same folder so the final ``os.replace`` is
    atomic on POSIX file systems. On any exception the temporary file is removed
    and ``path`` is left as it was.
    """
    final = Path(path)
    _refuse_all_but_a_file(final)
    suffix = ".part" + (final.suffix if keep_suffix else "")
    with _named_for(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _out_of_space_named_for(final):
            yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _share_as_umask_allows(folder: Path) -> None:
    """Give ``folder`` and what it holds the modes a plain mkdir and open would: mkdtemp makes the folder 0700 and
    safetensors writes its files 0600, which would keep a shared model store from the lab's other accounts."""
    umask = _umask()
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it onto ``path`` on success.

    ``path`` must not exist yet (callers decide about overwriting first).
    """
    final = Path(path)
    with _named_for(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        with _out_of_space_named_for(final):
            yield tmp
        _share_as_umask_allows(tmp)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
