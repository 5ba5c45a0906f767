"""Crystal orientations of a scan, from its own indexing: kept so that phase maps export them.

Hough indexing gives every point of a dual-phase scan an orientation even where it cannot
tell the phases apart (Ni and Ni3Al, ferrite and NiAl). The phase map replaces only the
phase, so its .ang / .ctf / .h5 exports carry those orientations on, for grain and texture
analysis in MTEX, OIM or AZtec. They come from the pattern file itself (kikuchipy reads the
crystal map of its own h5ebsd and EMsoft files, not yet that of Oxford, EDAX or Bruker HDF5
files; Oxford's H5OINA and EDAX's OIM h5 are read here, as orix reads neither) or from a
separate file (.ang, .ctf, orix .h5, Bruker and EMsoft h5ebsd, read with orix, or those two),
with its points in the scan's order.

Quaternions follow orix (``Rotation.data``, shape (N, 4)); NaN rows are unknown.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsd_core.errors import EMPTY_FILE, InputError
from ebsd_core.io.hdf5 import H5PY_ERRORS, HDF5_EXTENSIONS, check_variable_length, unopened_file_words
from ebsd_core.shared_state import silenced_output
from ebsd_core.wording import counted

#: File types orientations are read from.
ORIENTATION_EXTENSIONS = {".ang", ".ctf"} | HDF5_EXTENSIONS


def known(quaternions: np.ndarray | None) -> bool:
    """Whether ``quaternions`` hold any orientation: some row finite and not the identity.

    kikuchipy gives a scan without indexing a crystal map of identity rotations, and the
    project's datasets store NaN where the orientation is unknown; neither is an orientation.
    """
    if quaternions is None or len(quaternions) == 0:
        return False
    q = np.asarray(quaternions, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(q).all(axis=1)
    identity = np.isclose(np.abs(q[:, 0]), 1.0) & np.isclose(np.abs(q[:, 1:]).sum(axis=1), 0.0)
    return bool((finite & ~identity).any())


def from_crystal_map(xmap, points: int) -> np.ndarray | None:
    """The quaternions of an orix ``CrystalMap`` of ``points`` points, or None when it holds none.

    Points the map left out (not in its data) get NaN.
    """
    if xmap is None or xmap.is_in_data.size != points:
        return None
    quaternions = _map_quaternions(xmap)
    return quaternions if known(quaternions) else None


def _map_quaternions(xmap) -> np.ndarray:
    quaternions = np.full((xmap.is_in_data.size, 4), np.nan, dtype=np.float32)
    quaternions[xmap.is_in_data] = xmap.rotations.data.reshape(-1, 4)
    return quaternions


@dataclass(frozen=True)
class _VendorIndexing:
    """Where a vendor's HDF5 file keeps a scan's Hough indexing (under ``<scan>/EBSD``)."""

    euler: tuple[str, ...]  # Bunge angles in Data: one (N, 3) dataset or three (N,) ones
    unindexed: tuple[str, float]  # a Data dataset and the value it holds where nothing was indexed
    shape: tuple[str, str]  # Header datasets of the map's rows and columns
    grid: str = ""  # the Header dataset naming the grid type (square or hexagonal), if the vendor writes one


#: The vendor HDF5 files whose indexing kikuchipy leaves out of the crystal map it reads, and orix does not read.
VENDOR_INDEXING = {
    "Oxford H5OINA": _VendorIndexing(("Euler",), ("Phase", 0), ("Y Cells", "X Cells")),
    "EDAX OIM h5": _VendorIndexing(("Phi1", "Phi", "Phi2"), ("CI", -1), ("nRows", "nColumns"), "Grid Type"),
}


def read_vendor_indexing(path: str | Path) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The Hough indexing in an Oxford H5OINA or EDAX OIM HDF5 file's first scan, or None when it holds none.

    Returns quaternions (N, 4), NaN where nothing was indexed, from the Bunge Euler angles as orix
    reads those of the same software's .ctf or .ang export (radians unless the dataset's unit says
    degrees), and the map shape (rows, columns) of the scan's header.
    """
    import h5py
    from orix.quaternion import Rotation

    path = Path(path)
    try:
        with h5py.File(path, "r") as file:
            scan = next((item for item in file.values() if isinstance(item, h5py.Group) and "EBSD/Data" in item), None)
            data = None if scan is None else scan["EBSD/Data"]
            layout = next((v for v in VENDOR_INDEXING.values() if data is not None and v.euler[0] in data), None)
            if layout is None:
                return None
            euler = np.column_stack([np.asarray(data[name], dtype=np.float64) for name in layout.euler])
            degrees = _text(data[layout.euler[0]].attrs.get("Unit", "rad")).lower().startswith("deg")
            flag, value = layout.unindexed
            unindexed = np.asarray(data[flag]).reshape(-1) == value if flag in data else np.zeros(len(euler), bool)
            header = scan["EBSD/Header"]
            shape = tuple(int(np.asarray(header[name]).reshape(-1)[0]) for name in layout.shape)
            hexagonal = layout.grid in header and "hex" in _text(header[layout.grid][()]).lower()
    except H5PY_ERRORS as exc:
        why = unopened_file_words(path, exc) or f"{exc.__class__.__name__}: {exc}"
        raise InputError(f"its indexing cannot be read ({why})", path) from None
    if hexagonal:
        raise InputError(_hexagonal_grid(len(euler)), path)
    euler = euler.reshape(-1, 3)
    if len(unindexed) != len(euler):
        raise InputError(
            f"its indexing holds {counted(len(euler), 'orientation')} but {counted(len(unindexed), 'point')}", path
        )
    euler[unindexed] = 0  # OIM writes 4 pi there, which orix warns of as angles given in degrees
    quaternions = Rotation.from_euler(euler, degrees=degrees).data.astype(np.float32)
    quaternions[unindexed] = np.nan
    return quaternions, shape


def load_crystal_map(path: str | Path):
    """The orix ``CrystalMap`` in ``path``, its points on a square grid.

    Raises
    ------
    InputError
        Naming the file: orix cannot read it, or its points do not fill a square grid (an EDAX
        hexagonal grid, or coordinates that disagree with the header).
    """
    path = Path(path)
    if path.suffix.lower() in HDF5_EXTENSIONS:
        check_variable_length(path)  # orix reads every header string
    try:
        xmap = _orix_load(path)
    except Exception as exc:  # orix raises many types for files it cannot parse
        raise InputError(f"orix cannot read a crystal map from it ({_why_unread(path, exc)})", path) from None
    points, grid = xmap.is_in_data.size, int(np.prod(xmap.shape))
    if points != grid:
        if _hexagonal_header(path):
            raise InputError(_hexagonal_grid(points), path)
        raise InputError(f"its {points} points do not fill its {xmap.shape[0]}x{xmap.shape[1]} grid", path)
    return xmap


def _orix_load(path: Path):
    """orix's reading of ``path``; an .ang or .ctf written on Windows (a sample's or operator's name, a "µm" or a
    project's path in its code page, which orix reads as UTF-8) through a UTF-8 copy (found on review: such a file was
    refused as "damaged, cut short, or another format")."""
    from orix import io as orix_io

    try:
        with silenced_output():  # orix prints phase-name notes
            return orix_io.load(str(path))
    except UnicodeDecodeError:
        if path.suffix.lower() not in {".ang", ".ctf"}:
            raise
    with tempfile.TemporaryDirectory(prefix="ebsd-indexing-") as folder:
        copy = Path(folder) / path.name
        copy.write_text(path.read_text(encoding="cp1252", errors="replace"), encoding="utf-8")
        with silenced_output():
            return orix_io.load(str(copy))


#: What orix's readers of text files raise where the header or columns are not what they expect.
_TEXT_PARSE_ERRORS = (IndexError, ValueError, KeyError, UnicodeDecodeError)


def _why_unread(path: Path, exc: Exception) -> str:
    """Why orix could not read ``path``, in words a user can act on where orix's own are not ("tuple index out of
    range" for an .ang of other columns, an AttributeError for an HDF5 file of a layout it does not read)."""
    suffix = path.suffix.lower()
    if suffix in HDF5_EXTENSIONS:
        if words := unopened_file_words(path, exc):
            return words
        if "file_reader" in str(exc):
            return "an HDF5 file, but not of a layout orix reads: h5ebsd of EDAX or Bruker, or orix's own .h5"
    if suffix in {".ang", ".ctf"} and isinstance(exc, _TEXT_PARSE_ERRORS):
        if path.stat().st_size == 0:
            return EMPTY_FILE
        vendor = "EDAX OIM .ang" if suffix == ".ang" else "Oxford .ctf"
        return f"its header or columns are not those of an {vendor}: damaged, cut short, or another format"
    return f"{exc.__class__.__name__}: {exc}"


def _hexagonal_grid(points: int) -> str:
    return (
        f"its {points} points lie on a hexagonal grid, which no square map fits; convert it to a square grid first "
        "(OIM Analysis and MTEX can)"
    )


def _hexagonal_header(path: Path) -> bool:
    """Whether an EDAX .ang header says ``GRID: HexGrid``."""
    if path.suffix.lower() != ".ang":
        return False
    with open(path, encoding="latin-1") as f:
        for line in f:
            if not line.startswith("#"):
                return False
            if line.lstrip("# ").upper().startswith("GRID:"):
                return "HEX" in line.upper()
    return False


#: The columns of an EDAX .ang's points, counted from 0, that a phase map of the scan replaces: each point's
#: confidence index (CI) and phase. Before them: three Euler angles, x, y and the image quality.
ANG_CONFIDENCE_COLUMN, ANG_PHASE_COLUMN = 6, 7


def hexagonal_ang_places(path: str | Path, points: int) -> np.ndarray:
    """The places on its grid (:mod:`~ebsd_core.io.hex_grid`) of the points of an EDAX .ang of a scan recorded on a
    hexagonal grid (its header's ``GRID: HexGrid``), in the file's order, from their x and y: the scan's own indexing,
    whose points its phase map keeps (:func:`~ebsd_core.map_export.write_hexagonal_ang`).

    Raises
    ------
    InputError
        Naming the file: none, not such an .ang, of another count of points than the scan's ``points``, or its
        points' x and y on no hexagonal grid.
    """
    from ebsd_core.io.hex_grid import places_from_positions

    path = Path(path)
    if not path.is_file():
        raise InputError("no such orientation file", path)
    if path.suffix.lower() != ".ang" or not _hexagonal_header(path):
        raise InputError(
            "the scan's grid is hexagonal, and so must its indexing be: an EDAX .ang whose header says GRID: HexGrid, "
            "which this is not",
            path,
        )
    try:
        with warnings.catch_warnings():  # numpy's on a file of no points: its count is said below
            warnings.simplefilter("ignore", UserWarning)
            columns = np.loadtxt(path, comments="#", usecols=(3, 4, ANG_PHASE_COLUMN), encoding="latin-1", ndmin=2)
    except ValueError:
        raise InputError(
            "its points are not an EDAX .ang's columns (three Euler angles, x, y, image quality, confidence index, "
            "phase, ...): damaged, cut short, or another format",
            path,
        ) from None
    if len(columns) != points:
        raise InputError(f"holds {counted(len(columns), 'point')} but the scan has {counted(points, 'pattern')}", path)
    places = places_from_positions(columns[:, 0], columns[:, 1])
    if places is None:
        raise InputError("its points' x and y do not lie on a hexagonal grid, as its header says they do", path)
    return places


def _text(value) -> str:
    """An HDF5 attribute as text: h5py gives str, bytes or an array of either."""
    value = np.asarray(value).reshape(-1)[0] if np.ndim(value) else value
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def read_orientations(path: str | Path, points: int, nav_shape: Sequence[int] | None = None) -> np.ndarray:
    """The orientations of a scan's ``points`` points from an indexing file (.ang, .ctf, H5OINA, ...).

    Raises
    ------
    InputError
        Naming the file: unreadable, of another size or map shape, or without orientations.
    """
    return read_indexing(path, points, nav_shape)[0]


def read_indexing(
    path: str | Path, points: int, nav_shape: Sequence[int] | None = None, more_rows: bool = False
) -> tuple[np.ndarray, tuple[int, ...]]:
    """The orientations of a scan's ``points`` points from an indexing file, as :func:`read_orientations` gives them,
    and the map shape the file records: (rows, columns), or (points,) for a line or a hexagonal grid.

    ``more_rows``: the scan's map (``nav_shape``) may be the first rows of the file's, of its columns (images named
    by their points from the scan's first, an export cut short: see
    :meth:`~ebsd_core.io.readers.PatternSource.laid_on`); the file's orientations are then of more points.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such orientation file", path)
    if path.suffix.lower() not in ORIENTATION_EXTENSIONS:
        raise InputError(f"not an orientation file; these are read: {', '.join(sorted(ORIENTATION_EXTENSIONS))}", path)
    quaternions, map_shape = _indexing(path)
    shape = tuple(int(v) for v in nav_shape or ())
    if more_rows and len(shape) == 2 == len(map_shape) and map_shape[1] == shape[1] and map_shape[0] > shape[0]:
        points = len(quaternions)  # the whole scan's, rows after the scan's last included
        shape = map_shape
    if len(quaternions) != points:
        raise InputError(
            f"holds {counted(len(quaternions), 'point')} but the scan has {counted(points, 'pattern')}", path
        )
    if len(shape) == 2 and np.prod(shape) == points and map_shape not in {shape, (points,)}:
        raise InputError(f"its map is {map_shape[0]}x{map_shape[1]} points but the scan is {shape[0]}x{shape[1]}", path)
    if not known(quaternions):
        raise InputError("holds no orientations (every point is the identity or unindexed)", path)
    return quaternions, map_shape


def _indexing(path: Path) -> tuple[np.ndarray, tuple[int, ...]]:
    """Every point's quaternion (NaN where unknown) and the map shape of an indexing file."""
    found = read_vendor_indexing(path) if path.suffix.lower() in HDF5_EXTENSIONS else None
    if found is not None:
        return found
    if path.suffix.lower() == ".h5oina":  # orix does not read the format: its message would mislead
        raise InputError("holds no indexing (no EBSD/Data/Euler in its first scan)", path)
    xmap = load_crystal_map(path)
    return _map_quaternions(xmap), tuple(int(v) for v in xmap.shape)
