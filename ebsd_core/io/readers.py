"""Open any supported pattern source as one :class:`PatternSource`.

Readers are plugins, tried in order (as in kikuchipy's I/O): the project's
HDF5 dataset, every EBSD format kikuchipy reads (EDAX .up1/.up2 and h5, Oxford
.ebsp and .h5oina, Bruker h5, EMsoft h5, NORDIF .dat, kikuchipy h5ebsd), single
images, folders of images (one sub-folder per class) and zips of those.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebsd_core.errors import EMPTY_FILE, NOT_A_FILE, InputError
from ebsd_core.io import hex_grid, images, nordif
from ebsd_core.io.dataset import is_dataset_file, made_by_simulator, read_dataset
from ebsd_core.io.hdf5 import H5PY_ERRORS, HDF5_EXTENSIONS, check_variable_length, hdf5_error_words
from ebsd_core.io.orientations import from_crystal_map, known, read_vendor_indexing
from ebsd_core.io.point_names import HEXAGONAL_NAMES
from ebsd_core.paths import is_hidden, printable_path
from ebsd_core.shared_state import caught_warnings
from ebsd_core.wording import counted, slug

log = logging.getLogger(__name__)

KIKUCHIPY_EXTENSIONS = {".h5", ".hdf5", ".h5ebsd", ".h5oina", ".up1", ".up2", ".ebsp", ".dat"}


@dataclass
class PatternSource:
    """Patterns from any reader, with what is known about them."""

    path: str
    kind: str
    patterns: object  # (N, rows, cols): numpy, h5py or dask array, or an ImageStack
    nav_shape: tuple[int, ...] | None = None
    static_background: np.ndarray | None = None
    labels: np.ndarray | None = None  # index into classes
    classes: list[int] | None = None  # space-group numbers
    names: list[str] | None = None  # per-pattern names (image files)
    material: np.ndarray | None = None
    split: np.ndarray | None = None
    quaternions: np.ndarray | None = None  # (N, 4) orix convention, NaN rows unknown
    orientations_from: str = ""  # where known quaternions came from, for the map's summary; "" when none
    orientations_file: str = ""  # the separate indexing file they came from (its path), whose .ang a map's .ang keeps
    step_um: float = 1.0  # scan step between map points
    hexagonal_grid: bool = False  # points on a hexagonal grid (EDAX), read as one line: no square map
    # of a hexagonal grid, where the scan says them: each point's row and column in half steps (ebsd_core.io.hex_grid)
    hexagonal_places: np.ndarray | None = None
    grid_starts_scan: bool = False  # images named by their points from the scan's first (see laid_on)
    warnings: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)  # how this tool made the file (its own datasets only)
    # images a run found it could not decode (their patterns blank in it), by index: "NAME: why" (see run_batch)
    unread: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def pattern_shape(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.patterns.shape[1:3])

    def batch(self, start: int, stop: int) -> np.ndarray:
        """Patterns ``start:stop`` as a numpy array."""
        try:
            block = self.patterns[start:stop]
            if hasattr(block, "compute"):
                block = block.compute()
            return np.asarray(block)
        except InputError:
            raise  # names the damaged image of a folder or zip
        except (OSError, ValueError, KeyError, RuntimeError) as exc:  # truncated or corrupt file mid-scan
            why = hdf5_error_words(exc) or f"{exc.__class__.__name__}: {exc}; the file may be cut short"
            raise InputError(f"cannot read patterns {start}-{stop}: {why}", self.path) from None

    def run_batch(self, start: int, stop: int) -> np.ndarray:
        """Patterns ``start:stop`` for a run over the whole scan (predictions, a map, its grain clean-up).

        An image that cannot be decoded then (damage its header does not show, in a folder too large to decode when
        opened; a file gone since) is a blank pattern, unknown in the run's answers, and why is kept in
        :attr:`unread`: one image does not end a run of thousands. A block none of whose images can be read (the
        folder moved, its drive gone) still ends it, naming the first.
        """
        if not isinstance(self.patterns, images.ImageStack):
            return self.batch(start, stop)
        block, failed = self.patterns.read_block(start, stop)
        if failed and len(failed) == stop - start > 1:
            first = min(failed)
            raise self.patterns.error(first, failed[first])
        self.unread.update({index: f"{self.patterns.names[index]}: {why}" for index, why in failed.items()})
        return block

    def laid_on(self, nav_shape: Sequence[int]) -> PatternSource:
        """The source on a map of ``nav_shape`` (rows, columns) that a file of the scan records (its indexing, a map
        made of it): itself where its patterns fill that map; where they are images named by their points from the
        scan's first (:attr:`grid_starts_scan`) and of fewer rows of its columns (an export cut short), a copy with
        blank points, without an image, in the rows they lack; else itself, for the caller to refuse."""
        if not (lacking := self.rows_lacking(nav_shape)):
            return self
        rows, cols = self.nav_shape[0] + lacking, self.nav_shape[1]
        names = self.names + [""] * (lacking * cols)
        if isinstance(self.patterns, images.ImageStack):
            patterns = self.patterns.with_blanks(names)
        else:
            blank = np.zeros((len(names) - len(self), *self.pattern_shape), dtype=self.patterns.dtype)
            patterns = np.concatenate([self.patterns, blank])
        quaternions = self.quaternions
        if quaternions is not None:  # unknown where no image is
            quaternions = np.concatenate([quaternions, np.full((len(names) - len(self), 4), np.nan, np.float32)])
        return dataclasses.replace(
            self,
            patterns=patterns,
            names=names,
            nav_shape=(rows, cols),
            quaternions=quaternions,
            warnings=list(self.warnings),
            unread=dict(self.unread),
        )

    @property
    def hexagonal_note(self) -> str:
        """Why no square map is made of a scan on a hexagonal grid (:attr:`hexagonal_grid`), and what is made of it,
        in the words of its reading."""
        if self.kind != "kikuchipy":
            return HEXAGONAL_NAMES
        return HEXAGONAL_GRID if self.hexagonal_places is None else HEXAGONAL_GRID_PLACED

    def rows_lacking(self, nav_shape: Sequence[int]) -> int:
        """How many rows of a map of ``nav_shape`` (rows, columns) this scan named by its points from its first
        (:attr:`grid_starts_scan`) has no image of: those after its last, where it has the map's columns; else 0."""
        if not self.grid_starts_scan or len(nav_shape) != 2 or len(self.nav_shape or ()) != 2:
            return 0
        (rows, cols), (own_rows, own_cols) = nav_shape, self.nav_shape
        return int(rows) - own_rows if int(cols) == own_cols and int(rows) > own_rows else 0

    def take(self, index: np.ndarray, window: int = 256, lenient: bool = False) -> np.ndarray:
        """Patterns at ``index`` (increasing), read in runs: indices within ``window`` of each other are read
        as one slice (one chunk of a compressed file is decompressed once, not once per pattern). ``lenient``: an
        image that cannot be read is blank, as in :meth:`run_batch`."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), *self.pattern_shape), dtype=self.patterns.dtype)
        first = 0
        while first < len(index):
            last = first
            while last + 1 < len(index) and index[last + 1] - index[first] < window:
                last += 1
            block = (self.run_batch if lenient else self.batch)(int(index[first]), int(index[last]) + 1)
            out[first : last + 1] = block[index[first : last + 1] - index[first]]
            first = last + 1
        return out

    def file_name(self, index: int) -> str | None:
        """The image file pattern ``index`` was read from, as its folder or zip names it (``Fm-3m/p3.png``), as text
        any page can show (:func:`~ebsd_core.paths.printable_path`); None for a file of patterns (a page of a stack,
        a point of a scan)."""
        if not self.named_images or not self.names[index]:
            return None  # "": a point of a scan exported as images that has no image
        return printable_path(self.names[index])

    @property
    def named_images(self) -> bool:
        """Whether the patterns were read from images named one by one (a folder or zip of images)."""
        return bool(self.names) and self.kind in ("image-folder", "zip")

    @property
    def imageless(self) -> np.ndarray:
        """Which patterns are of points of a scan exported as images that have no image (blank patterns)."""
        if not self.named_images:
            return np.zeros(len(self), dtype=bool)
        return np.array([not name for name in self.names], dtype=bool)

    def has_image(self, index: int) -> bool:
        """False for the pattern of a point of a scan exported as images that has no image (:attr:`imageless`), found
        without going through every name; True for any other."""
        return not self.named_images or bool(self.names[index])

    def index_of_file(self, name: str) -> int:
        """The index of the pattern read from the image ``name`` (as :meth:`file_name` gives it, ``Fm-3m/p3.png``, or
        its last part alone, ``p3.png``, where no other image has it); an error naming a few files where none does."""
        if not self.named_images:
            raise InputError(f"holds no images named one by one: give the pattern's index, not {name!r}", self.path)
        files = [self.file_name(index) or "" for index in range(len(self))]
        found = [index for index, file in enumerate(files) if name in (file, file.rsplit("/", 1)[-1])]
        if len(found) == 1:
            return found[0]
        if found:
            named = images.first_names([files[index] for index in found])
            raise InputError(f"{len(found)} images are named {name!r} ({named}): give its folder too", self.path)
        raise InputError(f"no image named {name!r} (it holds {images.first_names(files)})", self.path)

    @property
    def labelled(self) -> bool:
        return self.labels is not None and self.classes is not None


def _read_project_dataset(path: Path, lazy: bool) -> PatternSource:
    ds = read_dataset(path, lazy=lazy)
    return PatternSource(
        path=str(path),
        kind="dataset",
        patterns=ds.patterns,
        nav_shape=ds.nav_shape,
        static_background=ds.static_background,
        labels=ds.labels if (ds.labels >= 0).all() else None,
        classes=ds.classes,
        material=ds.material,
        split=ds.split,
        quaternions=ds.quaternions,
        orientations_from=_dataset_orientations(ds),
        step_um=float(ds.provenance.get("step_um", 1.0)),
        provenance=ds.provenance,
    )


def _dataset_orientations(ds) -> str:
    if not known(ds.quaternions):
        return ""
    return "simulation (true orientations)" if made_by_simulator(ds.provenance.get("generator")) else "the dataset"


#: What kikuchipy's readers say of an HDF5 file whose layout they know but whose header they cannot place.
NOT_LAID_OUT = ("is not a supported h5ebsd file", "is not in EMsoft's format")


#: What kikuchipy says of an h5ebsd scan of another grid than a square one, and the grid's name
SQUARE_GRIDS_ONLY = re.compile(r"Only square grids are supported, not '?(.*?)'?$")


def _why_unread(path: Path, exc: Exception) -> str:
    """Why kikuchipy could not read ``path``, in words a user can act on where its readers' own are not: where none
    recognised the file, RosettaSciIO asks the user to report an error in it, a copy cut short reads as a failed
    mmap, and a binary header of nonsense as an IndexError (an HDF5 file cut short was refused before it came
    here)."""
    if path.suffix.lower() in HDF5_EXTENSIONS and (words := hdf5_error_words(exc)):
        return words
    if any(words in str(exc) for words in ("please report this error", *NOT_LAID_OUT)):
        if path.suffix.lower() not in HDF5_EXTENSIONS:
            return "none of its readers recognises what it holds: another format under this name, or damaged"
        return (
            "an HDF5 file, but not laid out as the EBSD files it reads are: h5ebsd of EDAX, Bruker or kikuchipy, "
            "Oxford H5OINA, EMsoft, or this tool's datasets"
        )
    if "not 2, can be read" in str(exc):  # EDAX's .up1/.up2 of version 2
        return (
            "it is an EDAX file of version 2, which kikuchipy does not read (it reads version 1, and 3 on): export "
            "the patterns again from EDAX's software"
        )
    if found := SQUARE_GRIDS_ONLY.search(str(exc)):  # Bruker's, EDAX's
        return f"kikuchipy reads scans of a square grid only, and this one's grid is '{found[1]}'"
    if any(words in str(exc) for words in ("Unknown space group identifier", "base vectors are degenerate")):
        return f"the crystal phase its header gives is damaged ({exc})"  # EMsoft's phase of a simulation
    if "Cannot read compressed EBSD patterns" in str(exc):  # Oxford's .ebsp
        return (
            "its patterns are compressed, which kikuchipy cannot read: export the scan from AZtec with "
            "uncompressed patterns, or as .h5oina"
        )
    if isinstance(exc, IndexError | struct.error | ZeroDivisionError) or _header_nonsense(exc):
        return "its header cannot be read: damaged, cut short, or another format under this name"
    if any(words in str(exc) for words in SHORTER_THAN_HEADER):
        return "it is shorter than its header says: a copy or upload that did not finish, or a damaged header"
    return f"{exc.__class__.__name__}: {exc}"


#: What mmap and numpy say of a binary file whose header puts its patterns past its end (the last: kikuchipy 0.12's
#: count of patterns under NumPy 2.0, negative in uint32).
SHORTER_THAN_HEADER = ("mmap length is greater than file size", "length must be positive", "out of bounds for uint")
#: What numpy says where a binary header's numbers make no sense (the last: a size of petabytes).
HEADER_NONSENSE = (
    "values to unpack",
    "size of new array must be unchanged",
    "cannot reshape",
    "array is too big",
    "cannot convert float",  # NaN or infinity as a size
    "invalid shape in fixed-type tuple",
)


def _header_nonsense(exc: Exception) -> bool:
    """Whether a binary reader failed on numbers of its header that make no sense (found by fuzzing): a pattern of
    0 px, a header cut short before its end, a size that does not fit the data, an offset before the file."""
    return any(w in str(exc) for w in HEADER_NONSENSE) or (isinstance(exc, OSError) and exc.errno == errno.EINVAL)


def _setting_unreadable(exc: Exception) -> bool:
    """Whether kikuchipy failed on a NORDIF Setting.txt line that does not hold what it should (found by fuzzing:
    "could not convert string to float", a line missing)."""
    return isinstance(exc, IndexError) or any(w in str(exc) for w in ("could not convert", "invalid literal"))


def _read_kikuchipy(path: Path, lazy: bool) -> PatternSource:
    import kikuchipy as kp

    if nordif.is_scan_file(path) and not nordif.has_setting(path):
        raise InputError(nordif.MISSING_SETTING, path)
    try:
        with caught_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # kikuchipy zero-pads a scan whose header declares more patterns than the file holds; a damaged
            # header can declare billions (found by fuzzing: 22 GB and counting), so refuse instead
            warnings.filterwarnings("error", message=".*larger than file size", category=UserWarning)
            warnings.filterwarnings("ignore", message="Could not read static background")  # said below, plainly
            try:
                signal = kp.load(str(path), lazy=lazy)
            except OSError as exc:  # as kikuchipy reads an EDAX .up2 of a hexagonal grid: as a line
                if not _refused_as_hexagonal(exc) or (signal := _hexagonal_h5ebsd(path, lazy)) is None:
                    raise
        hexagonal = _hexagonal_grid(caught)
    except UserWarning as exc:
        raise InputError(
            f"the header declares more patterns than the file holds (an incomplete or damaged scan: {exc})", path
        ) from None
    except Exception as exc:  # kikuchipy/h5py raise many types for bad files
        if nordif.is_scan_file(path) and _setting_unreadable(exc):
            raise InputError(
                f"the {nordif.SETTING_FILE} beside it cannot be read: a line kikuchipy reads there does not hold "
                "what it should (damaged, edited by hand, or not NORDIF's)",
                path,
            ) from None
        if nordif.is_scan_file(path):
            raise InputError(
                f"kikuchipy cannot read this scan with the {nordif.SETTING_FILE} beside it (a damaged scan, or a "
                f"{nordif.SETTING_FILE} written for another one; {exc.__class__.__name__}: {exc})",
                path,
            ) from None
        raise InputError(f"kikuchipy cannot read this file ({_why_unread(path, exc)})", path) from None
    if isinstance(signal, list):
        signal = signal[0]
    if "MasterPattern" in type(signal).__name__:
        raise InputError(f"{MASTER_PATTERN}: give the scan's pattern file", path)
    if not isinstance(signal, kp.signals.EBSD) and type(signal).__name__ != "LazyEBSD":
        raise InputError(f"holds a {type(signal).__name__}, not EBSD patterns", path)
    data = signal.data
    if nordif.is_scan_file(path):
        nordif.check_size(path, data.shape, data.dtype.itemsize)
    sig_shape = tuple(data.shape[-2:])
    nav_shape = tuple(int(v) for v in data.shape[:-2]) or (1,)
    if 0 in nav_shape or 0 in sig_shape:
        raise InputError(f"the scan is empty (data shape {data.shape})", path)
    flat = data.reshape((-1, *sig_shape))
    background, background_notes = signal_background(signal, sig_shape)
    nav_axes = signal.axes_manager.navigation_axes
    # a hexagonal grid is mapped by no indexing (no square map is made of it)
    quaternions, indexing_notes = (None, []) if hexagonal else _own_orientations(signal, path, int(np.prod(nav_shape)))
    places = _hexagonal_places(path, len(flat)) if hexagonal else None
    if hexagonal and path.suffix.lower() in {".up1", ".up2"}:
        step = _edax_hexagonal_step(path)  # kikuchipy scales its one line by the rows' spacing
    else:
        step = float(nav_axes[0].scale) if nav_axes else 1.0
    return PatternSource(
        path=str(path),
        kind="kikuchipy",
        patterns=flat,
        nav_shape=nav_shape,
        static_background=background,
        quaternions=quaternions,
        orientations_from="" if quaternions is None else "the scan's own indexing",
        step_um=step,
        hexagonal_grid=hexagonal,
        hexagonal_places=places,
        warnings=_kikuchipy_notes(path, getattr(signal, "static_background", None), _h5ebsd_scans(path))
        + background_notes
        + ([HEXAGONAL_GRID if places is None else HEXAGONAL_GRID_PLACED] if hexagonal else [])
        + _edax_cut_short(path, len(flat), int(np.prod(sig_shape)) * data.dtype.itemsize, hexagonal)
        + indexing_notes,
    )


#: What a kikuchipy master pattern is said to be, where patterns were expected.
MASTER_PATTERN = (
    "holds an EBSD master pattern (intensities over all crystal directions, for simulation), not the patterns of a scan"
)


#: Below this correlation between the mean of a scan's patterns (spread over it) and the static background its file
#: or signal carries, the patterns are taken to have had it removed already: kikuchipy's ``remove_static_background``
#: keeps the background on the signal (and ``save`` writes it), and subtracting it again moved a model's probabilities
#: 4 to 30 times as much as reading those patterns without it. Recorded patterns gave 0.997-0.999 on every real scan
#: here; with the static background removed 0.56 or less, with the dynamic one alone 0.67-0.85; and leaving it out
#: of recorded patterns moved the probabilities 0.28-0.42 (bench/static_background.py).
RAW_PATTERN_CORRELATION = 0.9
#: Patterns of a scan, spread evenly over it, whose mean is compared with its static background: spread, as a scan's
#: first row may lie off the sample (a dark row whose mean is not the background's shape, though recorded as it is).
BACKGROUND_CHECK_PATTERNS = 32


def signal_background(signal, pattern_shape: tuple[int, ...]) -> tuple[np.ndarray | None, list[str]]:
    """A kikuchipy signal's static background, where it has one of its patterns' shape and they have not had it
    removed already (:data:`RAW_PATTERN_CORRELATION`); and a note when they have."""
    background = getattr(signal, "static_background", None)
    if background is None:
        return None, []
    # a copy: kikuchipy's can be read-only (NORDIF's), which torch warns of as undefined behaviour
    background = np.array(background.compute() if hasattr(background, "compute") else background)
    if background.shape != tuple(pattern_shape):
        return None, []
    mean, count = spread_mean(signal.data, background.shape)
    if (similarity := image_correlation(mean, background)) is None or similarity >= RAW_PATTERN_CORRELATION:
        return background, []
    return None, [
        "carries a static background, but its patterns seem to have had it removed already (the mean of "
        f"{count} of its patterns correlates {similarity:.2f} with it; recorded patterns, 0.99 or more), so it is "
        "not subtracted again: patterns as recorded are read best, as the model's own preprocessing removes the "
        "backgrounds"
    ]


def spread_mean(data, pattern_shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """The mean of :data:`BACKGROUND_CHECK_PATTERNS` patterns of ``data`` (a numpy or dask array of patterns, any
    navigation shape) spread evenly over it, read alone; and how many that was."""
    flat = data.reshape((-1, *pattern_shape))
    spread = np.unique(np.linspace(0, len(flat) - 1, BACKGROUND_CHECK_PATTERNS).astype(int))
    sample = flat[spread]
    sample = np.asarray(sample.compute() if hasattr(sample, "compute") else sample, dtype=np.float64)
    return sample.mean(axis=0), len(spread)


def image_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's correlation of two images; None where either is flat (a blank pattern, a background of zeros)."""
    a, b = a - a.mean(), np.asarray(b, dtype=np.float64) - np.mean(b)
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else None


def _own_orientations(signal, path: Path, points: int) -> tuple[np.ndarray | None, list[str]]:
    """The scan's own indexing, and a note when it is there but unreadable: kikuchipy's crystal map, or the
    Euler angles of an Oxford or EDAX HDF5 file, whose crystal map kikuchipy leaves empty."""
    quaternions = from_crystal_map(getattr(signal, "xmap", None), points)
    if quaternions is not None or path.suffix.lower() not in HDF5_EXTENSIONS:
        return quaternions, []
    try:
        found = read_vendor_indexing(path)
    except InputError as exc:
        return None, [f"{exc.reason}: its map's exports will carry no orientations"]
    if found is None or len(found[0]) != points or not known(found[0]):
        return None, []
    return found[0], []


#: The note on a scan recorded on a hexagonal grid, read as one line of patterns (as kikuchipy reads an EDAX .up2).
HEXAGONAL_GRID = (
    "the scan was recorded on a hexagonal grid and is read as one line of patterns, in the file's order: each "
    "pattern is classified on its own, and its file does not say where its points lie, to draw them; its own .ang "
    "(OIM's indexing of it, on that grid) does: upload it beside the scan, or give it (phasemap --orientations "
    "SCAN.ang)"
)

#: The note on a scan recorded on a hexagonal grid whose file says where its points lie on it.
HEXAGONAL_GRID_PLACED = (
    "the scan was recorded on a hexagonal grid (every other row offset by half a step), read in the file's order: "
    + hex_grid.DRAWN_ON_ITS_GRID
)


#: Where an h5ebsd scan gives each point's place on the stage: EDAX's, Bruker's
H5EBSD_POSITIONS = (("EBSD/Data/X Position", "EBSD/Data/Y Position"), ("EBSD/Data/X SAMPLE", "EBSD/Data/Y SAMPLE"))


def _hexagonal_places(path: Path, patterns: int) -> np.ndarray | None:
    """The places on its grid of the ``patterns`` of a hexagonal scan (:mod:`ebsd_core.io.hex_grid`): from an EDAX
    ``.up2``'s header, or an h5ebsd file's stage positions; None where the file does not say them."""
    import h5py

    if path.suffix.lower() in {".up1", ".up2"}:
        with open(path, "rb") as file:
            header = file.read(25)
        if len(header) < 25 or struct.unpack_from("<I", header)[0] < 3:
            return None
        columns, rows = struct.unpack_from("<2I", header, 17)  # after the size, offset and a byte (kikuchipy's read)
        return hex_grid.up2_places(columns, rows, patterns)
    try:
        with h5py.File(path, "r") as file:
            scan = file[_h5ebsd_scans(path)[0]]
            for x, y in H5EBSD_POSITIONS:
                if isinstance(scan.get(x), h5py.Dataset) and isinstance(scan.get(y), h5py.Dataset):
                    x, y = np.asarray(scan[x][()], np.float64).ravel(), np.asarray(scan[y][()], np.float64).ravel()
                    break
            else:
                return None
    except (*H5PY_ERRORS, IndexError):
        return None
    if len(x) != patterns or (x < -1e6).any() or (y < -1e6).any():  # OIM writes -1111111 where a point failed
        return None
    return hex_grid.places_from_positions(x, y)


def _edax_hexagonal_step(path: Path) -> float:
    """The step between the points of a row that the header of an EDAX ``.up2`` (version 3 or later) of a hexagonal
    grid gives, in µm (after its columns, rows and grid byte, as kikuchipy reads it: kikuchipy scales its one line of
    patterns by the rows' spacing instead); 1 where it gives none."""
    with open(path, "rb") as file:
        header = file.read(42)
    if len(header) < 42 or struct.unpack_from("<I", header)[0] < 3:
        return 1.0
    step = struct.unpack_from("<d", header, 26)[0]
    return step if math.isfinite(step) and step > 0 else 1.0


def _hexagonal_grid(caught: list[warnings.WarningMessage]) -> bool:
    """Whether kikuchipy warned that the scan's grid is hexagonal; other warnings go on as they came."""
    hexagonal = False
    for warning in caught:
        if "hexagonal grid" in str(warning.message):
            hexagonal = True
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return hexagonal


def _kikuchipy_notes(path: Path, background: np.ndarray | None, scans: list[str]) -> list[str]:
    """What the user should know about how a vendor file was read."""
    notes = []
    if len(scans) > 1:
        notes.append(
            f"holds {len(scans)} scans ({images.first_names(scans)}); the first, {scans[0]}, was read. To read "
            f"another, save it on its own with kikuchipy: kikuchipy.load({path.name!r}, scan_group_names="
            f"{scans[1]!r}).save('{slug(scans[1], 'scan')}.h5')"
        )
    if nordif.is_scan_file(path) and background is None:
        notes.append(f"no {nordif.BACKGROUND_FILE} beside it: only the dynamic background is removed")
    return notes


def _edax_cut_short(path: Path, patterns: int, pattern_bytes: int, hexagonal: bool) -> list[str]:
    """A note when an EDAX .up1/.up2 file ends part-way through a pattern. Where its header gives no map (version
    1, or a hexagonal grid), kikuchipy counts the patterns from the file's size and drops a last one cut short;
    so a copy or upload that did not finish reads without a word, as a smaller scan."""
    if path.suffix.lower() not in {".up1", ".up2"}:
        return []
    with open(path, "rb") as file:
        version, _, _, offset = struct.unpack("<4I", file.read(16))
    left_over = path.stat().st_size - offset - patterns * pattern_bytes
    if (version != 1 and not hexagonal) or not 0 < left_over < pattern_bytes:
        return []
    return [
        f"the file ends part-way through pattern {patterns + 1} (a copy or upload that did not finish?): the "
        f"{patterns} whole pattern{'s' if patterns != 1 else ''} before it {'were' if patterns != 1 else 'was'} read"
    ]


def _refused_as_hexagonal(exc: Exception) -> bool:
    """Whether kikuchipy refused an h5ebsd file as of a hexagonal grid (EDAX's "HexGrid", Bruker's "hexagonal")."""
    found = SQUARE_GRIDS_ONLY.search(str(exc))
    return bool(found and "hex" in found[1].lower())


#: Where the patterns of an h5ebsd scan lie: EDAX's, Bruker's
H5EBSD_PATTERNS = ("EBSD/Data/Pattern", "EBSD/Data/RawPatterns")


def _hexagonal_h5ebsd(path: Path, lazy: bool):
    """The first scan of an h5ebsd file of a hexagonal grid, which kikuchipy refuses to read, read as one line of
    patterns in the file's order (as kikuchipy reads an EDAX ``.up2`` of one), with a warning that says so; its step
    is the header's ``Step X``. None where no dataset of the scan holds one pattern per point."""
    import dask.array as da
    import h5py
    import kikuchipy as kp

    file = h5py.File(path, "r")  # kept open while a lazy scan is read, as kikuchipy keeps its own
    try:
        scan = file[_h5ebsd_scans(path)[0]]
        data = next((scan[name] for name in H5EBSD_PATTERNS if isinstance(scan.get(name), h5py.Dataset)), None)
        if data is None or data.ndim != 3 or 0 in data.shape:
            file.close()
            return None
        step = scan.get("EBSD/Header/Step X")
        step = float(np.ravel(step[()])[0]) if isinstance(step, h5py.Dataset) else 1.0
        if lazy:
            chunks = (max(1, 2**25 // data[0].nbytes), *data.shape[1:])
            patterns = kp.signals.LazyEBSD(da.from_array(data, chunks=chunks))
        else:
            patterns = kp.signals.EBSD(data[()])
            file.close()
    except BaseException:
        file.close()
        raise
    patterns.axes_manager.navigation_axes[0].scale = step
    warnings.warn("a hexagonal grid, read as one line of patterns", stacklevel=2)  # as kikuchipy warns of a .up2
    return patterns


def _h5ebsd_scans(path: Path) -> list[str]:
    """The scans of a vendor or kikuchipy h5ebsd file (its top groups; kikuchipy reads the first), or [] for
    other files."""
    if path.suffix.lower() not in HDF5_EXTENSIONS:
        return []
    import h5py

    try:
        with h5py.File(path, "r") as file:
            if not any(key.strip().lower() == "manufacturer" for key in file):  # EDAX writes " Manufacturer"
                return []  # not h5ebsd
            # a scan's group holds EBSD/Data in every vendor's h5ebsd; EMsoft's top groups (CrystalData, ...) do not
            return [
                key
                for key, item in file.items()
                if isinstance(item, h5py.Group) and isinstance(item.get("EBSD/Data"), h5py.Group)
            ]
    except H5PY_ERRORS:
        return []  # kikuchipy has just read it; nothing more to say


def _read_single_image(path: Path, lazy: bool) -> PatternSource:
    if images.page_count(path) > 1:  # a stack of a scan's patterns (ImageJ and others write these)
        return _from_images(path, "image-stack", images.read_image_pages(path, lazy))
    array = images.read_image(path)
    return PatternSource(path=str(path), kind="image", patterns=array[None], nav_shape=(1,), names=[path.name])


def _from_images(path: Path, kind: str, found: images.ImageSet) -> PatternSource:
    return PatternSource(
        path=str(path),
        kind=kind,
        patterns=found.patterns,
        nav_shape=found.grid.shape if found.grid and not found.grid.hexagonal else (len(found.patterns),),
        grid_starts_scan=bool(found.grid and found.grid.starts_scan),
        hexagonal_grid=bool(found.grid and found.grid.hexagonal),
        hexagonal_places=np.array(found.grid.places) if found.grid and found.grid.places else None,
        labels=found.labels,
        classes=found.classes,
        names=found.names,
        warnings=found.warnings,
    )


def _with_note(source: PatternSource, note: str) -> PatternSource:
    source.warnings.append(note)
    return source


def _read_acquisition_folder(scan: Path) -> Reader:
    """A NORDIF acquisition folder, read as its scan: its images are the background and calibration patterns."""
    note = (
        f"read as a NORDIF acquisition: its scan {scan.name} with {nordif.SETTING_FILE}; the images beside them "
        "(background, calibration) are not patterns of the scan"
    )
    return lambda _folder, lazy: _with_note(_read_kikuchipy(scan, lazy), note)


def _is_scan_file_name(name: str) -> bool:
    return Path(name).suffix.lower() in KIKUCHIPY_EXTENSIONS and not is_hidden(name)


def _is_source_file_name(name: str) -> bool:
    """A scan file, or a zip (of a scan's images), by name."""
    return _is_scan_file_name(name) or (name.lower().endswith(".zip") and not is_hidden(name))


def _is_saved_model(folder: Path) -> bool:
    try:
        return (folder / "model.json").is_file()
    except OSError:  # a folder this account may not read: no model of its own (said when it is read)
        return False


def check_readable(path: Path) -> None:
    """Refuse, in words, a file or folder the system will not let this account read (a lab's data tree often holds
    private folders); readers and listings met it as "PermissionError" or in kikuchipy's and HDF5's words.

    Raises
    ------
    InputError
        Naming ``path``: no such file or folder, not a file (a pipe), or this account may not read it.
    """
    try:
        if not path.exists():
            raise InputError("no such file or folder", path)
        if path.is_dir():
            os.scandir(path).close()
        elif path.is_file():
            open(path, "rb").close()
        else:  # a pipe, whose reading would wait for a writer for good (a readers' check does), or a device
            raise InputError(f"{NOT_A_FILE}: give a file or folder of patterns", path)
    except PermissionError:
        kind = "folder" if _is_dir_or_unknown(path) else "file"
        raise InputError(f"this account may not read this {kind} (permission denied)", path) from None


def _is_dir_or_unknown(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _read_whole(folder: Path) -> bool:
    """A file, a saved model or a NORDIF acquisition folder: never a folder of sources read each by itself."""
    return not folder.is_dir() or _is_saved_model(folder) or nordif.scan_in_folder(folder) is not None


def scans_in_folder(folder: Path) -> list[Path]:
    """The scan files directly in ``folder`` when it holds scans and no images (each is read by itself), in natural
    order of their names; empty for a file, a NORDIF acquisition folder, a saved model or a folder of images."""
    if _read_whole(folder) or images.holds_images(folder):
        return []
    scans = (p for p in folder.iterdir() if p.is_file() and _is_scan_file_name(p.name))
    return sorted(scans, key=lambda p: images.natural_order(p.name))


def sources_in_folder(folder: Path, within: Path | None = None) -> list[Path]:
    """What ``predict`` reads of a folder, each by itself: :func:`scans_in_folder` and the zips beside them when the
    folder holds scans and no images; when it holds neither, only sub-folders (a project folder of samples), every
    source in its tree, in natural order: NORDIF acquisition folders, folders of images (their own images; see
    :func:`open_patterns` ``labelled=False``), folders of class folders, scan files and zips, through linked folders
    too. Saved models and hidden folders are passed over. Empty when the folder is read as one source (a folder of
    images, of class folders that each name a space group, a NORDIF acquisition). A sub-folder this account may not read
    is listed as a source, to be refused with that reason when it is read. ``within``: links that lead out of this
    folder are not followed (a server's data root, where they would be refused: a link to ``/`` would have the whole
    disk walked)."""
    check_readable(folder)
    if scans := scans_in_folder(folder):  # with the zips beside them (of a scan's images), as in a sample's folder
        zips = [p for p in folder.iterdir() if p.is_file() and _is_source_file_name(p.name) and p not in scans]
        return sorted(scans + zips, key=lambda p: images.natural_order(p.name))
    if _read_whole(folder):
        return []
    if images.holds_images_itself(folder):
        return []  # first: it stops at the first image, where listing the sub-folders stats every file of the folder
    if images.reads_as_class_folders(folder):
        return []
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:  # not passed over in silence: its scans would be missing from the answers
        found.append(Path(exc.filename))

    walked: set[str] = set()
    # linked folders are followed (a lab's tree often links its samples' folders from a network share), each once
    for place, subfolders, files in os.walk(folder, onerror=unreadable, followlinks=True):
        real = os.path.realpath(place)
        if real in walked or (within is not None and not Path(real).is_relative_to(within)):
            subfolders.clear()  # a link back up the tree, to a folder walked already, or out of ``within``
            continue
        walked.add(real)
        here = Path(place)
        subfolders[:] = sorted(
            (name for name in subfolders if not name.startswith((".", "__")) and not _is_saved_model(here / name)),
            key=images.natural_order,
        )
        if nordif.scan_in_folder(here):
            found.append(here)
            subfolders.clear()
        elif any(images.is_image_name(name) for name in files):
            found.append(here)  # its scan files, if any, go unread with a note, as in any folder of images
        elif not any(_is_scan_file_name(name) for name in files) and images.reads_as_class_folders(here):
            found.append(here)  # a labelled set (Fm-3m/, Pm-3m/): one source, as when given by itself
            subfolders.clear()
        else:
            found += [here / name for name in sorted(files, key=images.natural_order) if _is_source_file_name(name)]
    return found


def open_found_source(path: Path) -> PatternSource:
    """A source :func:`sources_in_folder` found, read as meant there: a folder of images for its own images alone
    (its sub-folders are sources of their own), a folder of class folders as their labelled set."""
    # found without images of its own only when it is class folders, or a folder this account may not read (refused
    # with that reason when read)
    return open_patterns(path, labelled=False if path.is_dir() and images.holds_images_itself(path) else None)


def _refuse_orientations_alone(folder: Path) -> None:
    """A folder of a scan's orientation files (.ang, .ctf) and nothing else is said to be one, not to lack images."""
    children = list(folder.iterdir())
    if any(images.is_image_name(child.name) or child.is_dir() for child in children):  # names first: no stat
        return
    if found := sorted(c.name for c in children if c.suffix.lower() in ORIENTATION_MAP_EXTENSIONS):
        raise InputError(
            f"holds no patterns, only a scan's orientations ({images.first_names(found)}): {ORIENTATIONS_ADVICE}",
            folder,
        )


def _scan_file_names(names: list[str]) -> list[str]:
    """The scan files among the file ``names`` of a folder or zip, by name."""
    return sorted(name for name in names if _is_scan_file_name(Path(name).name))


def _zip_file_names(names: list[str]) -> list[str]:
    """The zips among the member ``names`` of a zip, hidden ones passed over as everywhere else."""
    return sorted(name for name in names if name.lower().endswith(".zip") and not is_hidden(Path(name).name))


def _unread_scan_files(names: list[str]) -> str | None:
    """The warning for scan files (or zips) inside a folder or zip read as images, or None when there are none."""
    scans, zips = _scan_file_names(names), _zip_file_names(names)
    if not scans and not zips:
        return None
    what = " and ".join(counted(len(found), kind) for kind, found in (("scan file", scans), ("zip", zips)) if found)
    were = "was" if len(scans) + len(zips) == 1 else "were"
    return (
        f"{what} here {were} not read, only the images: {images.first_names(scans + zips)}; give "
        f"{'a scan file' if scans else 'a zip'}{' (or zip)' if scans and zips else ''} by itself"
    )


def _read_image_container(kind: str, read: Callable, listing: Callable[[Path], list[str]]) -> Reader:
    def reader(path: Path, lazy: bool) -> PatternSource:
        source = _from_images(path, kind, read(path, lazy))
        unread = _unread_scan_files(listing(path))
        return _with_note(source, unread) if unread else source

    return reader


def _zip_names(path: Path) -> list[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except images.ZIP_ERRORS:
        return []  # the image reader names what is wrong with the zip


Reader = Callable[[Path, bool], PatternSource]


ORIENTATION_MAP_EXTENSIONS = {".ang", ".ctf"}


ORIENTATIONS_ADVICE = (
    "give it with the scan's pattern file (on Phase map, as the scan's Hough indexing; phasemap --orientations) or as "
    "the layout of a simulated map (simulate-map --layout)"
)


def _choose_reader(path: Path, labelled: bool | None) -> Reader:
    suffix = path.suffix.lower()
    if suffix in ORIENTATION_MAP_EXTENSIONS:
        raise InputError(f"holds a scan's orientations, not its patterns: {ORIENTATIONS_ADVICE}", path)
    if suffix == ".cif":
        raise InputError(
            "holds a crystal structure, not patterns: simulate patterns of its phase with 'simulate --cif' (on the "
            "Data page: Phases of your own)",
            path,
        )
    if path.is_file() and nordif.companion_name(path.name) == nordif.SETTING_FILE:
        raise InputError(
            f"is read with its NORDIF scan: give the {nordif.SCAN_SUFFIX} file beside it, or upload both", path
        )
    if path.is_dir() and _is_saved_model(path):
        raise InputError(
            "is a saved model, not patterns: give it as the model (--model; on the dashboard, a zip of it is added "
            "on Results)",
            path,
        )
    if path.is_dir():
        if scan := nordif.scan_in_folder(path):
            return _read_acquisition_folder(scan)
        if scans := scans_in_folder(path):
            raise InputError(
                f"holds {counted(len(scans), 'scan file')} ({images.first_names([p.name for p in scans])}) and no "
                "images: give one scan file at a time",
                path,
            )
        sources = sources_in_folder(path) if labelled is None else []
        if any(source.is_file() for source in sources):
            # sample folders, not class folders (these never hold scan files): said so, not "names no space group"
            named = images.first_names([p.relative_to(path).as_posix() for p in sources])
            raise InputError(
                f"holds no patterns of its own but {len(sources)} scans or folders of patterns in its sub-folders "
                f"({named}): give one at a time (predict and info read them all)",
                path,
            )
        _refuse_orientations_alone(path)
        return _read_image_container(
            "image-folder",
            lambda p, lazy: images.read_image_folder(p, labelled, lazy),
            lambda p: [child.name for child in p.iterdir() if child.is_file()],
        )
    if suffix == ".zip":
        members = _zip_names(path)  # once, for both checks
        if nordif.holds_acquisition(members):
            raise InputError(
                f"holds a NORDIF acquisition ({nordif.SCAN_SUFFIX} scan and {nordif.SETTING_FILE}), which is read from "
                f"its files, never from a zip: upload the .dat with {nordif.SETTING_FILE}, or unpack the zip on the "
                "server and give its folder",
                path,
            )
        if not any(images.is_image_name(name) for name in members) and (scans := _scan_file_names(members)):
            raise InputError(
                f"holds {counted(len(scans), 'scan file')} ({images.first_names(scans)}) and no images: a scan is read "
                "from its own file, never from a zip: unpack it and give (or upload) the scan files themselves",
                path,
            )
        if not any(images.is_image_name(name) for name in members) and (zips := _zip_file_names(members)):
            raise InputError(
                f"holds {counted(len(zips), 'zip')} ({images.first_names(zips)}) and no images: a zip inside a zip is "
                "not read: unpack it and give (or upload) the zips inside one at a time",
                path,
            )
        return _read_image_container(
            "zip", lambda p, lazy: images.read_image_zip(p, labelled, lazy), lambda _zip: members
        )
    if suffix in HDF5_EXTENSIONS:
        check_variable_length(path)  # before anything reads it, even to ask what it is (and one cut short)
    if suffix in {".h5", ".hdf5"} and is_dataset_file(path):
        return _read_project_dataset
    if suffix in images.IMAGE_EXTENSIONS:
        return _read_single_image
    if suffix in KIKUCHIPY_EXTENSIONS:
        return _read_kikuchipy
    raise InputError(
        "unsupported file type; supported: the project's .h5, EBSD files kikuchipy reads "
        f"({', '.join(sorted(KIKUCHIPY_EXTENSIONS))}), images, folders and zips of images",
        path,
    )


def open_patterns(path: str | Path, lazy: bool = True, labelled: bool | None = None) -> PatternSource:
    """Open a pattern source of any supported kind.

    ``labelled=True`` reads a folder or zip of images as class folders only (an error names a sub-folder that
    does not name a space group); by default, images beside such sub-folders are read unlabelled instead.

    Raises
    ------
    InputError
        Naming the file and the problem when it cannot be read.
    """
    path = Path(path)
    check_readable(path)
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(EMPTY_FILE, path)
    source = _choose_reader(path, labelled)(path, lazy)
    if len(source) == 0:
        raise InputError("holds no patterns", path)
    for message in source.warnings:
        log.warning("%s: %s", path, message)
    return source
