"""NORDIF acquisitions: a scan is a folder, not one file.

NORDIF writes a scan's patterns to ``Pattern.dat`` (raw bytes, no header) and its scan and pattern sizes to
``Setting.txt`` beside it; kikuchipy reads both, and the static background from ``Background acquisition
pattern.bmp`` when it lies there too. The other images of the folder (calibration patterns, the area image)
are not patterns of the scan. This module finds the scan of such a folder and says what each uploaded file
is to it, so that neither a folder nor a set of uploads is read as its background and calibration images.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path, PurePosixPath

import numpy as np

from ebsd_core.errors import InputError
from ebsd_core.paths import is_hidden

SCAN_SUFFIX = ".dat"
SETTING_FILE = "Setting.txt"
BACKGROUND_FILE = "Background acquisition pattern.bmp"
#: Saved beside Pattern.dat under exactly these names, which is where kikuchipy looks for them.
COMPANION_FILES = (SETTING_FILE, BACKGROUND_FILE)
MISSING_SETTING = (
    f"a NORDIF scan is read with the {SETTING_FILE} written beside it at acquisition (it holds the scan and "
    f"pattern sizes), and there is none in its folder: put {SETTING_FILE} beside it, or upload both together"
)


def is_scan_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == SCAN_SUFFIX and not is_hidden(Path(path).name)


def has_setting(scan: Path) -> bool:
    """Whether kikuchipy will find the scan's Setting.txt (beside it, under this exact name)."""
    return (scan.parent / SETTING_FILE).is_file()


def scan_in_folder(folder: Path) -> Path | None:
    """The scan of a NORDIF acquisition folder (its ``.dat`` file beside ``Setting.txt``), or None when the folder
    is not one.

    Raises
    ------
    InputError
        When the folder holds several ``.dat`` files and none is ``Pattern.dat``.
    """
    if not (folder / SETTING_FILE).is_file():
        return None
    scans = sorted(p for p in folder.iterdir() if p.is_file() and is_scan_file(p))
    if not scans:
        return None
    named = [p for p in scans if p.name.lower() == "pattern.dat"]
    if named or len(scans) == 1:
        return (named or scans)[0]
    raise InputError(
        f"a NORDIF acquisition folder with {len(scans)} .dat files ({', '.join(p.name for p in scans[:3])}) and "
        "no Pattern.dat: give the one to read",
        folder,
    )


def check_size(scan: Path, data_shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse a scan whose Setting.txt gives another size than Pattern.dat has (raw patterns, no header): read
    as given, it would be cut short or read as garbage.

    Raises
    ------
    InputError
        Naming both sizes.
    """
    expected = int(np.prod(data_shape)) * itemsize
    actual = scan.stat().st_size
    if actual != expected:
        *nav, rows, cols = data_shape
        raise InputError(
            f"its {SETTING_FILE} gives {' x '.join(map(str, nav)) or 1} patterns of {cols}x{rows} px ({expected:,} "
            f"bytes) and the file holds {actual:,} bytes: a {SETTING_FILE} written for another scan, or an "
            "incomplete scan",
            scan,
        )


def holds_acquisition(member_names: list[str]) -> bool:
    """Whether a zip of these members holds a NORDIF scan with its Setting.txt (read from files only, never from a
    zip)."""
    names = [PurePosixPath(name.replace("\\", "/")).name for name in member_names]
    return SETTING_FILE in names and any(is_scan_file(name) for name in names)


def companion_name(name: str) -> str | None:
    """The name under which an uploaded file must lie beside a NORDIF scan, or None when it is none of its
    companions (``setting.txt`` or a path ending in it is still the scan's Setting.txt)."""
    base = Path(name.replace("\\", "/")).name.lower()
    return next((companion for companion in COMPANION_FILES if companion.lower() == base), None)


def is_side_image(name: str) -> bool:
    """One of the BMP images NORDIF writes beside a scan other than its static background: calibration patterns
    (``Calibration (294,532).bmp``, recorded to fit the projection centre), their background, the area image.
    None is a point of the scan."""
    return name.lower().endswith(".bmp") and companion_name(name) != BACKGROUND_FILE


def upload_roles(names: list[str]) -> dict[str, str]:
    """What each uploaded file is when a NORDIF scan is among them: ``"companion"`` (saved beside it under
    NORDIF's name), ``"side image"`` (not read: :func:`is_side_image`) or ``"file"`` (read as any upload).
    Without a ``.dat`` upload, every file is a ``"file"``: a lone Setting.txt is then refused as an unsupported
    file, naming it.

    Raises
    ------
    InputError
        When the files are of several NORDIF scans: each scan's files carry the same names, so which Setting.txt
        belongs to which scan is lost in an upload.
    """
    scans = [name for name in names if is_scan_file(name)]
    settings = [name for name in names if companion_name(name) == SETTING_FILE]
    if len(scans) > 1 or len(settings) > 1:
        raise InputError(
            f"several NORDIF scans at once ({', '.join(scans or settings)}): their files share names, so upload one "
            "scan with its Setting.txt at a time, or give the scans' folders on the server (Server path) or to the "
            "command line"
        )
    with_scan = bool(scans)
    roles = {}
    for name in names:
        if with_scan and companion_name(name):
            roles[name] = "companion"
        elif with_scan and is_side_image(name):
            roles[name] = "side image"
        else:
            roles[name] = "file"
    return roles


def remove_companions(folder: Path, keep: Collection[str] = ()) -> None:
    """Remove the companion files an earlier upload left in ``folder``, except those named in ``keep`` (uploaded
    now): a scan uploaded without them must not be read with another scan's Setting.txt or background."""
    for name in set(COMPANION_FILES) - set(keep):
        (folder / name).unlink(missing_ok=True)
