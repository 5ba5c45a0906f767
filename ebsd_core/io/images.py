"""Pattern images: single files, folders with one sub-folder per class, and zips of those.

A folder or zip is first read as an :class:`ImageStack`, from each image's header only (its size and pixel type).
When its patterns fit in :data:`IN_MEMORY_BYTES` they are decoded at once, and an image that cannot be decoded is left
out with a warning. Larger ones stay an ImageStack that decodes images when sliced: a scan exported as 100,000 images
then needs the memory of one batch, as kikuchipy's lazy signals do for vendor files. Zips are read in place, never
unpacked.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import re
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ebsd_core.errors import InputError, PhaseError
from ebsd_core.io.point_names import ScanGrid, scan_grid
from ebsd_core.paths import is_hidden
from ebsd_core.phases import NOT_TOLD_APART, PHASE_NAME_HINTS, get_material, parse_space_group, space_group_words
from ebsd_core.threads import usable_cpus
from ebsd_core.wording import counted

IMAGE_EXTENSIONS = {".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg"}
MAX_IMAGE_PIXELS = 64_000_000  # a 8000x8000 pattern; larger declared sizes are refused as bombs
MAX_ZIP_BYTES = 4 * 1024**3
MAX_ZIP_FILES = 200_000
MAX_ZIP_RATIO = 200  # uncompressed/compressed size of one member
# what zipfile and zlib raise for damaged archives (bad headers, CRC, truncated or unsupported data)
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, NotImplementedError, ValueError)
DECODE_THREADS = min(8, usable_cpus())  # PIL's decoders release the GIL...
# ...but below about 200x200 px the rest of reading an image (opening it, its header, numpy) holds it, and one
# thread decodes faster than two (2-core EPYC: 5,000 PNGs of 160 px in 0.83 s on one thread, 1.01 s on two; of
# 240 px, 10,240 in 3.4 s on one and 2.5 s on two)
THREADED_DECODE_PIXELS = 200 * 200
DECODE_CHUNK = 32
OUTSIZED = 16  # images of more times the pixels of the most common size are left out
IN_MEMORY_BYTES = 1024**3  # folders and zips whose patterns take more are decoded batch by batch
HEADER_BYTES = 1 << 16


@dataclass(frozen=True)
class _Header:
    """What an image's header says: its (rows, cols) and the pixel type it will be read as."""

    shape: tuple[int, int]
    dtype: np.dtype
    cut_short: bool = False  # its file may end before its data does (:func:`_may_be_cut_short`): decoding tells


# PIL raises above twice this and warns above it; _checked_header refuses what lies between, from the same header.
# (No warnings filter: warnings.catch_warnings is not thread-safe, and images are read on threads.)
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


@contextlib.contextmanager
def _image_errors(path: str | Path) -> Iterator[None]:
    """Turn whatever PIL (or a damaged zip member) raises into one InputError naming ``path``."""
    try:
        yield
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning where -W error makes it one
        raise InputError("image declares an implausibly large size (decompression bomb refused)", path) from None
    except Exception as exc:  # PIL raises many types for corrupt files
        raise InputError(f"cannot read this image ({_why_unread(exc)})", path) from None


def _why_unread(exc: Exception) -> str:
    """PIL's reason in words a user can act on where its own are not."""
    if isinstance(exc, UnidentifiedImageError):  # "cannot identify image file 'x.png'"
        return "not an image in a format that is read: another format under this name, or damaged"
    if "image file is truncated" in str(exc) or "Truncated File Read" in str(exc):
        return CUT_SHORT
    if any(words in str(exc) for words in DAMAGED_IMAGE_WORDS) or isinstance(exc, KeyError | SyntaxError):
        return "its image data is damaged: the header reads, the pixels do not"  # KeyError: a TIFF tag's number
    return f"{exc.__class__.__name__}: {exc}"


#: What PIL says of an image whose header reads and whose pixels do not (found by fuzzing: a PNG's compressed
#: stream, a TIFF page's size tags).
DAMAGED_IMAGE_WORDS = (
    "broken data stream",
    "unrecognized data stream contents",
    "Missing dimensions",
    "Invalid dimensions",
    "unknown PCX mode",
    "Invalid argument",
)


def _checked_header(img: Image.Image, path: str | Path) -> tuple[tuple[int, int], np.dtype]:
    """(rows, cols) and the pixel type a pattern image will be read as, from its header alone."""
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise InputError(f"image of {img.width}x{img.height} pixels is larger than allowed", path)
    if min(img.width, img.height) < 8:
        raise InputError(f"image has shape {(img.height, img.width)}; a pattern needs at least 8x8 pixels", path)
    return (img.height, img.width), _dtype_of_mode(img.mode)


def _dtype_of_mode(mode: str) -> np.dtype:
    if mode.startswith("I;16"):
        return np.dtype(np.uint16)
    if mode in ("I", "F"):
        return np.dtype(np.float32)
    return np.dtype(np.uint8)  # 8-bit grey, and colour converted to it


def _to_grey(img: Image.Image) -> np.ndarray:
    if img.mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)  # native byte order
    if img.mode in ("I", "F"):
        return np.asarray(img, dtype=np.float32)
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8)


def _header(file: str | Path | BinaryIO, path: str | Path, whole: bool = False) -> _Header:
    """What the image's header says; with ``whole`` (``file`` holds the whole image), also whether its file may end
    before its data does (:func:`_may_be_cut_short`), which decoding it tells."""
    with _image_errors(path), Image.open(file) as img:
        return _Header(*_checked_header(img, path), cut_short=whole and _may_be_cut_short(img))


#: Why an image whose file ends before its data does cannot be read.
CUT_SHORT = "it is cut short: a copy or upload that did not finish, or damaged"


def _may_be_cut_short(img: Image.Image) -> bool:
    """Whether the open image's file may end before its data does: a PNG whose chunks do not run to IEND within it, a
    TIFF whose strips or tiles, or an uncompressed BMP whose rows, end beyond it, a JPEG that does not end with its
    end marker. Found from the header and the file's size, so that a folder too large to decode at once finds such an
    image when it is opened: decoded only as a long run streamed it, the last image of an export that did not finish
    stopped the run at its end."""
    try:
        size = img.fp.seek(0, io.SEEK_END)
    except (AttributeError, OSError, ValueError):
        return False
    if img.format == "PNG" and img.tile:
        return not _png_chunks_end(img.fp, img.tile[0].offset - 8, size)
    if img.format == "TIFF":
        offsets, counts = img.tag_v2.get(273) or img.tag_v2.get(324), img.tag_v2.get(279) or img.tag_v2.get(325)
        try:
            return max(o + c for o, c in zip(offsets, counts)) > size
        except (TypeError, ValueError):  # tags missing or damaged: decoding tells
            return True
    if img.format == "BMP" and img.tile and img.tile[0].codec_name == "raw":
        return img.tile[0].offset + abs(img.tile[0].args[1]) * img.height > size
    if img.format == "JPEG":
        img.fp.seek(size - 2)
        return img.fp.read(2) != b"\xff\xd9"
    return False


def _png_chunks_end(fp: BinaryIO, at: int, size: int) -> bool:
    """Whether the PNG chunks from offset ``at`` (the first image data's) lie within ``size`` bytes, to IEND."""
    while at + 12 <= size:  # a chunk: length, type, data, CRC
        fp.seek(at)
        length, kind = int.from_bytes(fp.read(4), "big"), fp.read(4)
        at += 12 + length
        if kind == b"IEND":
            return at <= size
    return False


def _decode(file: str | Path | BinaryIO, path: str | Path) -> np.ndarray:
    with _image_errors(path), Image.open(file) as img:
        _checked_header(img, path)
        img.load()
        return _to_grey(img)


def read_image(path: str | Path) -> np.ndarray:
    """One pattern image as a 2-D array: uint8 or uint16 as recorded, float32 for float or 32-bit images
    (RGB/RGBA converted to 8-bit grey)."""
    return _decode(Path(path), path)


def crop_to_aspect(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The largest centred window of ``array`` with the aspect ratio of ``shape``: stretching a pattern to another
    aspect ratio would turn its Kikuchi bands (a 45 degree band of a 4:3 camera ends at 37 degrees in a square)."""
    rows, cols = array.shape
    target_rows, target_cols = shape
    if rows * target_cols > cols * target_rows:  # taller than the target: keep the middle rows
        keep = max(1, round(cols * target_rows / target_cols))
        top = (rows - keep) // 2
        return array[top : top + keep]
    keep = max(1, round(rows * target_cols / target_rows))
    left = (cols - keep) // 2
    return array[:, left : left + keep]


def _resize(array: np.ndarray, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    from skimage.transform import resize

    array = crop_to_aspect(array, shape)
    resized = resize(array.astype(np.float32), shape, preserve_range=True, anti_aliasing=True)
    if np.issubdtype(dtype, np.integer):
        resized = np.clip(np.rint(resized), np.iinfo(dtype).min, np.iinfo(dtype).max)
    return resized.astype(dtype)


def first_names(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


class _Folder:
    """Images in a folder, named by their path relative to it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def listing(self) -> tuple[list[str], dict[str, list[str]]]:
        """The images directly inside, and those of each visible sub-folder."""
        subfolders = sorted(_visible_subfolders(self.root))
        inside = {sub.name: [f"{sub.name}/{p.name}" for p in list_images(sub)] for sub in subfolders}
        return [p.name for p in list_images(self.root)], inside

    def header(self, name: str) -> _Header:
        return _header(self.root / name, name, whole=True)

    def decode(self, name: str) -> np.ndarray:
        return _decode(self.root / name, name)

    def error(self, message: str, name: str | None = None) -> InputError:
        """``message`` about the folder, or about its file ``name``."""
        return InputError(message, self.root if name is None else self.root / name)


class _Zip:
    """Image members of a zip, read in place, named as the zip names them below its one top folder (if any)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members = _checked_image_members(path)
        self._archive: zipfile.ZipFile | None = None
        self._lock = threading.Lock()

    def listing(self) -> tuple[list[str], dict[str, list[str]]]:
        direct, inside = [], {}
        for name in sorted(self._members, key=natural_order):
            parts = name.split("/")
            if len(parts) == 1:
                direct.append(name)
            elif len(parts) == 2 and not parts[0].startswith((".", "__")):
                inside.setdefault(parts[0], []).append(name)
        return direct, dict(sorted(inside.items()))

    def open(self, name: str, header_only: bool = False) -> BinaryIO:
        """The member's bytes; with ``header_only``, its first 64 kB (enough for the headers of most images)."""
        try:
            with self._lock:  # one handle per process, opened on first use (the central directory is read once)
                if self._archive is None:
                    self._archive = zipfile.ZipFile(self.path)
                with self._archive.open(self._members[name]) as member:
                    return io.BytesIO(member.read(HEADER_BYTES if header_only else -1))
        except (*ZIP_ERRORS, RuntimeError) as exc:  # RuntimeError: an encrypted member
            why = "its entry is damaged" if isinstance(exc, OSError) else f"{exc.__class__.__name__}: {exc}"
            raise InputError(f"cannot be read from the zip ({why})", name) from None

    def header(self, name: str) -> _Header:
        first = self.open(name, header_only=True)
        whole = first.getbuffer().nbytes < HEADER_BYTES  # a pattern's image, of 15 kB
        try:
            return _header(first, name, whole)
        except InputError:
            if whole:
                raise
            return _header(self.open(name), name, whole=True)  # a header beyond the first bytes (a TIFF's at its end)

    def decode(self, name: str) -> np.ndarray:
        return _decode(self.open(name), name)

    def error(self, message: str, name: str | None = None) -> InputError:
        """``message`` about the zip, or about its member ``name``."""
        return InputError(f"{message if name is None else f'{name}: {message}'} (inside the zip)", self.path)


class _Pages:
    """The pages of one multi-page TIFF, named ``page 0``, ``page 1``, ...; one open file, read under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._image: Image.Image | None = None
        self._lock = threading.Lock()

    def _at(self, name: str) -> Image.Image:
        if self._image is None:
            self._image = Image.open(self.path)
        self._image.seek(int(name.split()[-1]))
        return self._image

    def header(self, name: str) -> _Header:
        with self._lock, _image_errors(name):
            return _Header(*_checked_header(self._at(name), name))

    def decode(self, name: str) -> np.ndarray:
        with self._lock, _image_errors(name):
            page = self._at(name)
            page.load()
            return _to_grey(page)

    def error(self, message: str, name: str | None = None) -> InputError:
        return InputError(message if name is None else f"{name}: {message}", self.path)


_Container = _Folder | _Zip | _Pages  # where an ImageStack reads its images: header(name), decode(name), error()


def _checked_image_members(path: Path) -> dict[str, str]:
    """Image members of a zip by their name below its one top folder, after size, count, ratio and path checks."""
    try:
        with zipfile.ZipFile(path) as archive:
            # a member without a name (a damaged directory; found by fuzzing) is nothing to read: ZipInfo.is_dir fails
            members = [m for m in archive.infolist() if m.filename and not m.is_dir()]
    except ZIP_ERRORS as exc:
        raise InputError(f"not a readable zip file ({exc})", path) from None
    if len(members) > MAX_ZIP_FILES:
        raise InputError(f"zip holds {len(members)} files (limit {MAX_ZIP_FILES})", path)
    total = sum(m.file_size for m in members)
    if total > MAX_ZIP_BYTES:
        raise InputError(f"zip holds {total / 1e9:.1f} GB of files (limit {MAX_ZIP_BYTES / 1e9:.0f} GB)", path)
    images: dict[str, str] = {}
    for member in members:
        if member.compress_size and member.file_size / member.compress_size > MAX_ZIP_RATIO:
            raise InputError(f"zip member {member.filename!r} is compressed suspiciously well (zip bomb refused)", path)
        parts = PurePosixPath(member.filename.replace("\\", "/")).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise InputError(f"zip member {member.filename!r} points outside the archive", path)
        if parts and is_image_name(parts[-1]):
            images["/".join(parts)] = member.filename
    tops = {name.split("/")[0] for name in images if not name.startswith((".", "__"))}
    if len(tops) == 1 and (top := tops.pop()) not in images:  # a zip of one top folder holding the class folders
        images = {name[len(top) + 1 :]: member for name, member in images.items() if name.startswith(f"{top}/")}
    return images


class ImageStack:
    """Pattern images as an (N, rows, cols) array that decodes them when sliced.

    Images of another size than the most common one are centre-cropped to its aspect ratio and resized to it; the
    pixel type is the images' own when they all share one (8-bit patterns take a quarter of the memory of float32),
    float32 otherwise.
    """

    ndim = 3

    def __init__(self, container: _Container, names: list[str], headers: list[_Header]) -> None:
        self._container = container
        self.names = names
        self._shapes = [h.shape for h in headers]
        rows, cols = Counter(self._shapes).most_common(1)[0][0]
        self.shape = (len(names), rows, cols)
        kinds = {h.dtype for h in headers}
        self.dtype = kinds.pop() if len(kinds) == 1 else np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def resized(self) -> list[str]:
        """The images of another size than the stack's."""
        return [name for name, shape in zip(self.names, self._shapes) if shape != self.shape[1:]]

    def read(self, index: int) -> np.ndarray:
        """Pattern ``index`` at the stack's shape and type; an image that cannot be decoded is named."""
        try:
            return self._read(index)
        except InputError as exc:
            raise self.error(index, exc.reason) from None

    def with_blanks(self, names: list[str]) -> ImageStack:
        """This stack's images at the places of their ``names``, with a blank pattern where a name is ""."""
        shapes = dict(zip(self.names, self._shapes))
        stack = copy.copy(self)
        stack.names = names
        stack._shapes = [shapes.get(name, self.shape[1:]) for name in names]
        stack.shape = (len(names), *self.shape[1:])
        return stack

    def _read(self, index: int) -> np.ndarray:
        if not self.names[index]:  # a point of a scan without an image
            return np.zeros(self.shape[1:], dtype=self.dtype)
        array = self._container.decode(self.names[index])
        if array.shape != self.shape[1:]:
            return _resize(array, self.shape[1:], self.dtype)
        return array.astype(self.dtype, copy=False)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            return self.read(int(np.arange(len(self))[key]))[rest]
        indices = np.arange(len(self))[key]
        out = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype)
        for row, array in enumerate(self._decoded(indices.tolist(), self.read, self.shape[1] * self.shape[2])):
            out[row] = array
        return out[(slice(None), *rest)] if rest else out

    def _try_read(self, index: int) -> np.ndarray | InputError:
        try:
            return self._read(index)
        except InputError as exc:
            return exc

    @staticmethod
    def _decoded(indices, read, pixels: int) -> Iterator:
        """``read`` of each index, in order, on threads for large images, DECODE_CHUNK images per task (a task per
        image would cost more than decoding it; a share per thread would hold all the patterns twice)."""
        indices = list(indices)
        if len(indices) < 2 * DECODE_CHUNK or DECODE_THREADS < 2 or pixels < THREADED_DECODE_PIXELS:
            yield from map(read, indices)
            return
        chunks = [indices[i : i + DECODE_CHUNK] for i in range(0, len(indices), DECODE_CHUNK)]
        with ThreadPoolExecutor(DECODE_THREADS) as pool:
            for decoded in pool.map(lambda chunk: [read(i) for i in chunk], chunks):
                yield from decoded

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[:]
        return array if dtype is None else array.astype(dtype)

    def read_block(self, start: int, stop: int) -> tuple[np.ndarray, dict[int, str]]:
        """Patterns ``start:stop``, a blank one for each image that cannot be decoded, and why each of those could
        not be, by index."""
        out = np.zeros((stop - start, *self.shape[1:]), dtype=self.dtype)
        failed = {}
        pixels = self.shape[1] * self.shape[2]
        for index, array in zip(range(start, stop), self._decoded(range(start, stop), self._try_read, pixels)):
            if isinstance(array, InputError):
                failed[index] = array.reason
            else:
                out[index - start] = array
        return out, failed

    def error(self, index: int, reason: str) -> InputError:
        """``reason`` about the image of pattern ``index``, naming it with its folder or zip."""
        return self._container.error(reason, self.names[index])

    def readable(self, warn: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every pattern that can be decoded, and their indices; the others are left out with a warning."""
        out, failed = self.read_block(0, len(self))
        _report_unreadable(self._container, [(self.names[i], why) for i, why in failed.items()], len(self), warn)
        if not failed:
            return out, np.arange(len(self))
        kept = np.setdiff1d(np.arange(len(self)), list(failed))
        for place, index in enumerate(kept[min(failed) :], start=min(failed)):  # moved up in place: out[kept] is a copy
            out[place] = out[index]
        return out[: len(kept)], kept


def _report_unreadable(container: _Container, failed: list[tuple[str, str]], total: int, warn: list[str]) -> None:
    """Warn of the images left out as unreadable, (name, reason) each; an error when none of ``total`` is left."""
    if not failed:
        return
    first = f"{failed[0][0]}: {failed[0][1]}"
    if len(failed) == total:
        raise container.error(
            f"its one image cannot be read: {first}"
            if total == 1
            else f"none of its {total:,} images can be read; the first, {first}"
        )
    names = first_names([PurePosixPath(name).name for name, _ in failed])
    left_out = "was left out" if len(failed) == 1 else "were left out"
    warn.append(f"{counted(len(failed), 'image')} could not be read and {left_out} ({names}); the first, {first}")


def _read_headers(container: _Container, names: list[str], warn: list[str]) -> tuple[list[str], list[_Header]]:
    """The images whose headers can be read, with their headers; the others are left out with a warning.

    One damaged file does not stop a folder of thousands; a folder where none can be read is an error.
    """
    kept, headers, failed = [], [], []
    for name in names:
        try:
            headers.append(container.header(name))
            kept.append(name)
        except InputError as exc:
            failed.append((name, exc.reason))
    _report_unreadable(container, failed, len(names), warn)
    return kept, headers


def natural_order(name: str | Path) -> tuple[list, str]:
    """Sort key that puts ``p2.png`` before ``p10.png``: a scan exported as images is a map only in this order."""
    name = str(name)
    parts = re.split(r"(\d+)", name)  # text, digits, text, ...: each place holds one type, so keys compare
    return [int(part) if index % 2 else part for index, part in enumerate(parts)], name


def is_image_name(name: str) -> bool:
    """Whether a file of this name (or path in a zip) is read as an image: by its extension; a hidden file never is."""
    path = PurePosixPath(name)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(path.name)


def list_images(folder: Path) -> list[Path]:
    """The images directly in ``folder``, in natural order of their names (hidden files left out)."""
    images = (p for p in folder.iterdir() if p.is_file() and is_image_name(p.name))
    return sorted(images, key=lambda path: natural_order(path.name))


def _visible_subfolders(folder: Path) -> Iterator[Path]:
    return (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def holds_images_itself(folder: Path) -> bool:
    """Whether ``folder`` has images directly inside; False for a sub-folder this account may not read."""
    try:
        return any(is_image_name(p.name) and p.is_file() for p in folder.iterdir())
    except PermissionError:
        return False


def holds_images(folder: Path) -> bool:
    """Whether ``folder`` has images directly inside or in a visible sub-folder (how it is read as images); stops
    at the first, as the folder is listed in full again when it is read."""
    return any(holds_images_itself(place) for place in itertools.chain([folder], _visible_subfolders(folder)))


def _why_not_a_class(tokens: list[str]) -> str:
    for token in tokens:  # "P63mmc" for Ti, "123"
        if named := space_group_words(token):
            return f"names {named}, {NOT_TOLD_APART}"
    for token in tokens:
        if token.lower() in PHASE_NAME_HINTS:
            return f"does not name a space group ({PHASE_NAME_HINTS[token.lower()]})"
    return "does not name a space group"


def class_from_folder_name(name: str) -> int:
    """``"Fm-3m"``, ``"225"``, ``"225_ni"``, ``"Fm-3m ni"`` or a catalogue material, ``"Ni"``, -> 225."""
    tokens = [name, *name.replace("-", " - ").split()[:1], *name.replace("_", " ").split()]
    for token in tokens:
        try:
            return parse_space_group(token)
        except PhaseError:
            continue
    for token in tokens:  # after the space groups: "225_w" is Fm-3m, whatever tungsten's group
        with contextlib.suppress(PhaseError):
            return get_material(token).space_group
    raise PhaseError(
        f"class folder {name!r} {_why_not_a_class(tokens)}; name it like 'Fm-3m', '225', "
        "'225_ni' or after a catalogue material ('ni3al'; see 'python -m ebsd_core phases')"
    )


def _names_space_group(name: str) -> bool:
    try:
        class_from_folder_name(name)
    except PhaseError:
        return False
    return True


def reads_as_class_folders(folder: Path) -> bool:
    """Whether ``folder`` is read as class folders: sub-folders hold images, and each that does names a space
    group."""
    held = [sub for sub in _visible_subfolders(folder) if holds_images_itself(sub)]
    return bool(held) and all(_names_space_group(sub.name) for sub in held)


@dataclass
class ImageSet:
    """What a folder or zip of images holds: the patterns, their names and, for class folders, their labels."""

    patterns: ImageStack | np.ndarray
    names: list[str]
    labels: np.ndarray | None = None  # index into classes
    classes: list[int] | None = None  # space-group numbers
    warnings: list[str] | None = None
    grid: ScanGrid | None = None  # of a scan whose images are named by their points


def _read_container(container: _Container, labelled: bool | None, lazy: bool) -> ImageSet:
    """Class sub-folders (labelled) or images directly (unlabelled).

    With ``labelled=None``, images directly inside beside sub-folders that do not name a space group
    (``thumbnails/``, ``raw/``) are read, with a warning; ``labelled=True`` insists on class folders.
    """
    direct, inside = container.listing()
    warn: list[str] = []
    if inside and labelled is None and direct and not all(_names_space_group(sub) for sub in inside):
        named = "it does not name" if len(inside) == 1 else "they do not all name"
        warn.append(
            f"{counted(len(inside), 'sub-folder')} not read, as {named} a space group: {first_names(list(inside))}"
        )
        inside = {}
    label_of: dict[str, int] | None = None
    grid = points = None
    if inside and labelled is not False:
        names, label_of = _class_folders(container, inside, direct, warn)
    elif direct:
        names = direct
        if grid := scan_grid(names, warn):  # a scan's points named by position: row by row, not column by column
            points = [None if i is None else direct[i] for i in grid.order]
            names = [name for name in points if name is not None]
    else:
        raise container.error("no images (PNG/TIFF/BMP/JPEG) and no class sub-folders")
    # a hexagonal grid draws no map: its lost points are just not there
    places = points if grid and not grid.hexagonal else None
    patterns, kept = _opened(container, names, warn, lazy, places)
    if label_of is None:
        if places is not None:
            _say_blank_points(kept, grid.shape, warn)
        return ImageSet(patterns, kept, warnings=warn, grid=grid)
    names = kept
    classes = sorted(set(label_of[name] for name in names))
    labels = np.array([classes.index(label_of[name]) for name in names])
    return ImageSet(patterns, names, labels, classes, warn)


def _say_blank_points(names: list[str], shape: tuple[int, int], warn: list[str]) -> None:
    """Say which points of a grid of ``shape`` have no readable image (their ``names`` "", row by row)."""
    empty = [index for index, name in enumerate(names) if not name]
    if not empty:
        return
    first = "; ".join(f"row {i // shape[1]}, column {i % shape[1]}" for i in empty[:3]) + (
        "; ..." if len(empty) > 3 else ""
    )
    warn.append(
        f"{counted(len(empty), 'point')} of the {shape[0]} x {shape[1]} map that the images' names give "
        f"{'has' if len(empty) == 1 else 'have'} no readable image ({first}): drawn as "
        f"{'a blank pattern' if len(empty) == 1 else 'blank patterns'}, read as unknown"
    )


def _opened(
    container: _Container, names: list[str], warn: list[str], lazy: bool, places: list[str | None] | None = None
) -> tuple[ImageStack | np.ndarray, list[str]]:
    """The patterns of the images ``names`` and the names kept: decoded now when they fit in IN_MEMORY_BYTES (or
    ``lazy`` is False), else an ImageStack; unreadable images are left out with a warning.

    ``places``: the points of a scan's grid, row by row, each its image's name (None where no image names it). The
    patterns are then laid on it, each decoded into its place, with a blank one at each point without a readable
    image, whose name is "" (copied onto it after they were decoded, they took twice their memory meanwhile)."""
    names, headers = _without_outsized(container, *_read_headers(container, names, warn), warn)
    stack = _stack(container, names, headers, places)
    if lazy and stack.nbytes > IN_MEMORY_BYTES:
        # an image whose file may end before its data does is decoded now, to be found when the folder is opened,
        # not at the end of a long run (decoded at once, it is found then; decoding it here too took twice as long)
        if len(kept := _decodable(container, names, headers, warn)) < len(names):
            names, headers = [names[i] for i in kept], [headers[i] for i in kept]
            stack = _stack(container, names, headers, places)
        _say_resized(stack, warn)
        return stack, list(stack.names)
    _say_resized(stack, warn)
    if places is None:
        patterns, kept = stack.readable(warn)
        return patterns, [names[i] for i in kept]
    patterns, failed = stack.read_block(0, len(stack))
    _report_unreadable(container, [(stack.names[i], why) for i, why in failed.items()], len(names), warn)
    return patterns, ["" if index in failed else name for index, name in enumerate(stack.names)]


def _stack(
    container: _Container, names: list[str], headers: list[_Header], places: list[str | None] | None
) -> ImageStack:
    """The images ``names``, laid on ``places`` where given (:func:`_opened`)."""
    stack = ImageStack(container, names, headers)
    if places is None:
        return stack
    readable = set(names)
    return stack.with_blanks([name if name in readable else "" for name in places])


def _decodable(container: _Container, names: list[str], headers: list[_Header], warn: list[str]) -> list[int]:
    """The indices of the images that decode, of those whose files may end before their data (the others are not
    decoded); those that do not are left out with a warning."""
    failed = []
    for index, (name, header) in enumerate(zip(names, headers)):
        if header.cut_short:
            try:
                container.decode(name)
            except InputError as exc:
                failed.append((index, name, exc.reason))
    _report_unreadable(container, [(name, why) for _, name, why in failed], len(names), warn)
    left_out = {index for index, _, _ in failed}
    return [index for index in range(len(names)) if index not in left_out]


def _say_resized(stack: ImageStack, warn: list[str]) -> None:
    if stack.resized:
        rows, cols = stack.shape[1:]
        warn.append(
            f"{counted(len(stack.resized), 'image')} resized to {cols}x{rows}, the size of most, after a centre crop"
            f" to its aspect ratio where theirs differs (e.g. {stack.resized[0]})"
        )


def _without_outsized(
    container: _Container, names: list[str], headers: list[_Header], warn: list[str]
) -> tuple[list[str], list[_Header]]:
    """Leave out images of over OUTSIZED times the pixels of the most common size: not a pattern of this scan, and
    resizing it (found by fuzzing: a damaged header declaring 16x8,000,000 px) would take minutes."""
    rows, cols = Counter(h.shape for h in headers).most_common(1)[0][0]
    outsized = [(name, h) for name, h in zip(names, headers) if h.shape[0] * h.shape[1] > OUTSIZED * rows * cols]
    if not outsized:
        return names, headers
    failed = [
        (name, f"image of {h.shape[1]}x{h.shape[0]} px, over {OUTSIZED} times the size of most ({cols}x{rows})")
        for name, h in outsized
    ]
    _report_unreadable(container, failed, len(names), warn)
    left_out = {name for name, _ in outsized}
    kept = [(name, h) for name, h in zip(names, headers) if name not in left_out]
    return [name for name, _ in kept], [h for _, h in kept]


def _class_folders(
    container: _Container, inside: dict[str, list[str]], direct: list[str], warn: list[str]
) -> tuple[list[str], dict[str, int]]:
    if direct:
        were = "was" if len(direct) == 1 else "were"
        warn.append(f"{counted(len(direct), 'image')} beside the class folders {were} not read (e.g. {direct[0]})")
    label_of: dict[str, int] = {}
    for sub, names in inside.items():
        if not names:
            warn.append(f"class folder {sub!r} holds no images and was skipped")
            continue
        try:
            space_group = class_from_folder_name(sub)
        except PhaseError as exc:  # with the others that fail too, so that one run finds them all
            others = [f"'{o}'" for o, held in inside.items() if held and o != sub and not _names_space_group(o)]
            also = f". Nor {'does' if len(others) == 1 else 'do'} {first_names(others)}" if others else ""
            raise container.error(exc.reason + also, sub) from None
        label_of.update(dict.fromkeys(names, space_group))
    if not label_of:
        raise container.error("no images (PNG/TIFF/BMP/JPEG) in any class sub-folder")
    return list(label_of), label_of


def read_image_folder(folder: str | Path, labelled: bool | None = None, lazy: bool = True) -> ImageSet:
    """A folder of images: class sub-folders (labelled) or images directly (unlabelled).

    Patterns of up to :data:`IN_MEMORY_BYTES`, or all with ``lazy=False``, are decoded now, and an image that cannot be
    is left out with a warning. Larger ones come as an :class:`ImageStack` checked from the headers only: an image
    damaged beyond its header is named when its patterns are read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", folder)
    return _read_container(_Folder(folder), labelled, lazy)


def read_image_zip(path: str | Path, labelled: bool | None = None, lazy: bool = True) -> ImageSet:
    """A zip of images laid out as :func:`read_image_folder` reads them, read in place (never unpacked)."""
    return _read_container(_Zip(Path(path)), labelled, lazy)


def page_count(path: str | Path) -> int:
    """How many images a file holds: several for a multi-page TIFF (an ImageJ stack of a scan's patterns)."""
    with _image_errors(path), Image.open(path) as img:
        return int(getattr(img, "n_frames", 1))


def read_image_pages(path: str | Path, lazy: bool = True) -> ImageSet:
    """Every page of a multi-page TIFF, in order, as :func:`read_image_folder` reads the images of a folder."""
    path = Path(path)
    warn: list[str] = []
    patterns, names = _opened(_Pages(path), [f"page {index}" for index in range(page_count(path))], warn, lazy)
    return ImageSet(patterns, names, warnings=warn)
