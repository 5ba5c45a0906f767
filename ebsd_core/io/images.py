"""Pattern images: single files, folders with one sub-folder per class, and zips of those."""

from __future__ import annotations

import shutil
import tempfile
import warnings
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ebsd_core.errors import InputError, PhaseError
from ebsd_core.phases import parse_space_group

IMAGE_EXTENSIONS = {".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg"}
MAX_IMAGE_PIXELS = 64_000_000  # a 8000x8000 pattern; larger declared sizes are refused as bombs
MAX_ZIP_BYTES = 4 * 1024**3
MAX_ZIP_FILES = 200_000
MAX_ZIP_RATIO = 200  # uncompressed/compressed size of one member
# what zipfile and zlib raise for damaged archives (bad headers, CRC, truncated or unsupported data)
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, NotImplementedError, ValueError)


def read_image(path: str | Path) -> np.ndarray:
    """One pattern image as a 2-D array: uint8 or uint16 as recorded, float32 for float or 32-bit images
    (RGB/RGBA converted to 8-bit grey)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise InputError(f"image of {img.width}x{img.height} pixels is larger than allowed", path)
                img.load()
                array = _to_grey(img)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError("image declares an implausibly large size (decompression bomb refused)", path) from None
    except Exception as exc:  # PIL raises many types for corrupt files
        raise InputError(f"cannot read this image ({exc.__class__.__name__}: {exc})", path) from None
    if array.ndim != 2 or min(array.shape) < 8:
        raise InputError(f"image has shape {array.shape}; a pattern needs at least 8x8 pixels", path)
    return array


def _to_grey(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img).astype(np.uint16)  # native byte order
    if img.mode in ("I", "F"):
        return np.asarray(img, dtype=np.float32)
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8)


def _resize(array: np.ndarray, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    from skimage.transform import resize

    resized = resize(array.astype(np.float32), shape, preserve_range=True, anti_aliasing=True)
    if np.issubdtype(dtype, np.integer):
        resized = np.clip(np.rint(resized), np.iinfo(dtype).min, np.iinfo(dtype).max)
    return resized.astype(dtype)


def _first_names(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def read_images(paths: list[Path], warn: list[str], source: Path) -> tuple[np.ndarray, list[Path]]:
    """Read the images of a folder into (N, rows, cols) and return the paths that were read.

    An image that cannot be read is left out with a warning naming it, so that one damaged file does not stop a
    folder of thousands; a folder where none can be read is an error. Odd sizes are resized to the most common one
    (with a warning).
    """
    arrays, kept, failed = [], [], []
    for path in paths:
        try:
            arrays.append(read_image(path))
            kept.append(path)
        except InputError as exc:
            failed.append(exc)
    first = f"{Path(failed[0].path).relative_to(source)}: {failed[0].reason}" if failed else ""
    if not arrays:
        raise InputError(f"none of its {len(paths)} image(s) can be read; the first, {first}", source)
    if failed:
        names = _first_names([Path(exc.path).name for exc in failed])
        warn.append(f"{len(failed)} image(s) could not be read and were left out ({names}); the first, {first}")
    shapes = Counter(a.shape for a in arrays)
    target = shapes.most_common(1)[0][0]
    # stored as recorded (8-bit patterns take a quarter of the memory of float32); mixed kinds as float32
    dtypes = {a.dtype for a in arrays}
    dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)
    odd = [p.name for p, a in zip(kept, arrays) if a.shape != target]
    if odd:
        warn.append(f"{len(odd)} image(s) resized to {target[1]}x{target[0]} (e.g. {odd[0]})")
    return np.stack([a.astype(dtype) if a.shape == target else _resize(a, target, dtype) for a in arrays]), kept


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def class_from_folder_name(name: str) -> int:
    """``"Fm-3m"``, ``"225"``, ``"225_ni"`` or ``"Fm-3m ni"`` -> 225."""
    for token in [name, *name.replace("-", " - ").split()[:1], *name.replace("_", " ").split()]:
        try:
            return parse_space_group(token)
        except PhaseError:
            continue
    raise PhaseError(f"class folder {name!r} does not name a space group; name it like 'Fm-3m', '225' or '225_ni'")


def read_image_folder(folder: str | Path, labelled: bool | None = None):
    """Read a folder of images: class sub-folders (labelled) or images directly (unlabelled).

    With ``labelled=None``, a folder holding images directly and sub-folders that do not name a space group
    (``thumbnails/``, ``raw/``) is read as its direct images, with a warning; ``labelled=True`` insists on class
    folders.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", folder)
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    direct = list_images(folder)
    warn: list[str] = []
    if subfolders and labelled is None and direct and not all(_names_space_group(sub.name) for sub in subfolders):
        names = _first_names([sub.name for sub in subfolders])
        warn.append(f"sub-folder(s) not read, as they do not all name a space group: {names}")
        subfolders = []
    if subfolders and (labelled is not False):
        return _read_class_folders(folder, subfolders, direct, warn)
    if not direct:
        raise InputError("no images (PNG/TIFF/BMP/JPEG) and no class sub-folders", folder)
    patterns, kept = read_images(direct, warn, folder)
    return patterns, None, None, [p.name for p in kept], warn


def _names_space_group(name: str) -> bool:
    try:
        class_from_folder_name(name)
    except PhaseError:
        return False
    return True


def _read_class_folders(folder: Path, subfolders: list[Path], direct: list[Path], warn: list[str]):
    if direct:
        warn.append(f"{len(direct)} image(s) beside the class folders were not read (e.g. {direct[0].name})")
    paths, labels, classes = [], [], []
    for sub in subfolders:
        images = list_images(sub)
        if not images:
            warn.append(f"class folder {sub.name!r} holds no images and was skipped")
            continue
        try:
            sg = class_from_folder_name(sub.name)
        except PhaseError as exc:
            raise InputError(str(exc), sub) from None
        if sg not in classes:
            classes.append(sg)
        paths += images
        labels += [sg] * len(images)
    if not paths:
        raise InputError("no images (PNG/TIFF/BMP/JPEG) in any class sub-folder", folder)
    patterns, kept = read_images(paths, warn, folder)
    label_of = dict(zip(paths, labels))
    classes.sort()
    label_index = np.array([classes.index(label_of[p]) for p in kept])
    return patterns, label_index, classes, [str(p.relative_to(folder)) for p in kept], warn


def safe_extract_zip(path: str | Path, dest: Path) -> Path:
    """Extract a zip with size, count, ratio and path checks; returns the folder to read."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        raise InputError(f"not a readable zip file ({exc})", path) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_FILES:
            raise InputError(f"zip holds {len(members)} files (limit {MAX_ZIP_FILES})", path)
        total = sum(m.file_size for m in members)
        if total > MAX_ZIP_BYTES:
            raise InputError(f"zip would unpack to {total / 1e9:.1f} GB (limit {MAX_ZIP_BYTES / 1e9:.0f} GB)", path)
        for member in members:
            if member.compress_size and member.file_size / member.compress_size > MAX_ZIP_RATIO:
                raise InputError(
                    f"zip member {member.filename!r} is compressed suspiciously well (zip bomb refused)", path
                )
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            if member.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise InputError(f"zip member {member.filename!r} points outside the archive", path)
            if PurePosixPath(member.filename).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            _extract_member(archive, member, dest.joinpath(*parts), path)
    entries = [p for p in dest.iterdir() if not p.name.startswith((".", "__"))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]  # a zip of one top folder holding the class folders
    return dest


def _extract_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, path: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(member) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
            written = out.tell()
    except ZIP_ERRORS as exc:
        raise InputError(f"zip member {member.filename!r} is damaged ({exc.__class__.__name__}: {exc})", path) from None
    if written > member.file_size:
        raise InputError(f"zip member {member.filename!r} is larger than declared", path)


def read_image_zip(path: str | Path, labelled: bool | None = None):
    with tempfile.TemporaryDirectory(prefix="ebsd-zip-") as tmp:
        folder = safe_extract_zip(path, Path(tmp))
        try:
            patterns, labels, classes, names, warn = read_image_folder(folder, labelled)
        except InputError as exc:
            raise InputError(f"{_inside(exc, folder)} (inside the zip)", path) from None
        return patterns, labels, classes, names, [_inside(message, folder) for message in warn]


def _inside(message: object, folder: Path) -> str:
    """A message about a file of an unpacked zip, naming it as the zip does instead of by its temporary path."""
    if isinstance(message, InputError) and message.path == str(folder):
        message = message.reason
    return str(message).replace(f"{folder}/", "").replace(str(folder), "the zip")
