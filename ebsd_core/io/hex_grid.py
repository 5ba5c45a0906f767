"""Where the points of a scan recorded on a hexagonal grid lie, for drawing its phase map on that grid.

On a hexagonal grid every other row is offset by half a step, and rows lie sqrt(3)/2 of a step apart. A point's
place is its row and its column counted in half steps: row 0 has columns 0, 2, 4, ..., row 1 columns 1, 3, 5, ...
Drawn as an image of half-step columns, each point fills its own column and the next, so that the rows interlock
as the scan's points do (a brick wall), with nothing resampled.

A place is known where the scan says it: images named by their points, an OIM ``.h5``'s ``X Position`` and
``Y Position``, or an EDAX ``.up2`` whose count of patterns fits the rows and columns of its header.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: A row's height on a hexagonal grid, in steps.
ROW_HEIGHT = math.sqrt(3) / 2

#: What is made of a scan on a hexagonal grid whose points' places are known, as the notes on its reading say it.
DRAWN_ON_ITS_GRID = (
    "its patterns are classified and their phases drawn on that grid, cleaned up by grains there (the Phase map "
    'page\'s "Classify every pattern", or phasemap --out map.png), where regions of known phase can be labelled to '
    "train on (dataset --region). No square map is made of it (no .ctf or .h5 export); its own .ang (OIM's indexing "
    "of it, on that grid) is written again with the model's phases (uploaded beside it, or phasemap --orientations "
    "SCAN.ang --out map.ang)"
)


def is_hexagonal(places: Sequence[tuple[int, int]] | np.ndarray) -> bool:
    """Whether (row, half-step column) ``places`` lie on a hexagonal grid: every other row offset by half a step,
    so that each row takes every other column, the next row the others (a checkerboard); most rows hold two
    points or more (a diagonal line is no grid); no place twice."""
    places = np.asarray(places, dtype=np.int64).reshape(-1, 2)
    if len(places) < 3:
        return False
    rows, columns = places[:, 0] - places[:, 0].min(), places[:, 1] - places[:, 1].min()
    if np.bincount(rows * (int(columns.max()) + 1) + columns).max() > 1:  # a place twice
        return False
    if rows.max() < 1 or ((rows + columns - rows[0] - columns[0]) % 2).any():  # not a checkerboard
        return False
    per_row = np.bincount(rows)
    return 2 * int((per_row >= 2).sum()) >= len(per_row)


def up2_places(columns: int, rows: int, patterns: int) -> np.ndarray | None:
    """The places of an EDAX ``.up2`` scan of a hexagonal grid whose header gives ``columns`` and ``rows``, and whose
    size ``patterns``: rows alternately of ``columns`` and ``columns - 1`` points, the shorter ones half a step in (as
    OIM's ``.ang`` has them, ``NCOLS_ODD`` and ``NCOLS_EVEN``), or of ``columns`` and ``columns + 1``, the longer ones
    half a step out (as kikuchipy's example file has them). None for any other count (a scan cut short), and for
    rows all of ``columns`` points, which do not say which way the second row is offset."""
    if columns < 2 or rows < 2:
        return None
    if patterns == columns * rows - rows // 2:
        shorter = True
    elif patterns == columns * rows + rows // 2:
        shorter = False
    else:
        return None
    row = np.arange(rows)
    widths = columns + np.where(row % 2 == 0, 0, -1 if shorter else 1)
    offsets = row % 2 if shorter else 1 - row % 2
    of_point = np.repeat(row, widths)
    within = np.arange(len(of_point)) - np.repeat(np.cumsum(widths) - widths, widths)  # each point's place in its row
    return np.column_stack([of_point, offsets[of_point] + 2 * within]).astype(np.int64)


def places_from_positions(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The places of points at stage positions ``x`` and ``y`` (an OIM ``.h5``'s ``X Position`` and ``Y
    Position``), or None where they do not lie on a hexagonal grid."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if len(x) != len(y) or len(x) < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    places = np.column_stack([_places_along(y), _places_along(x)])
    return places if is_hexagonal(places) else None


def _places_along(values: np.ndarray) -> np.ndarray:
    """Each of ``values``' place along the rows or columns (:func:`~ebsd_core.io.point_names.grid_places`), worked
    out once per distinct value (a scan of millions of points has thousands)."""
    from ebsd_core.io.point_names import grid_places

    distinct, inverse = np.unique(values, return_inverse=True)
    place, _ = grid_places(distinct.tolist())
    return np.array([place[value] for value in distinct.tolist()], dtype=np.int64)[inverse]


#: The neighbours of a point, as (row, half-step column) offsets; with their mirror images they are its six.
NEIGHBOURS = ((0, 2), (1, -1), (1, 1))


def place_cells(places: np.ndarray) -> np.ndarray:
    """The point at each place (row, half-step column) of a grid of ``places``, -1 where none is."""
    places = np.asarray(places)
    cells = np.full((int(places[:, 0].max()) + 1, int(places[:, 1].max()) + 1), -1, dtype=np.int64)
    cells[places[:, 0], places[:, 1]] = np.arange(len(places))
    return cells


def grid_columns(places: np.ndarray) -> np.ndarray:
    """Each point's column: its place in half steps, halved and rounded down. The points of a column lie within half a
    step of each other across the rows, and the columns of a full row are counted 0, 1, 2, ... as OIM counts them,
    whichever way its rows are offset."""
    return np.asarray(places)[:, 1] // 2


def grid_size(places: np.ndarray) -> tuple[int, int]:
    """The rows and columns (:func:`grid_columns`) of a hexagonal grid's ``places``."""
    return int(np.asarray(places)[:, 0].max()) + 1, int(grid_columns(places).max()) + 1


def brick_shape(places: np.ndarray) -> tuple[int, int]:
    """The rows and half-step columns of the image that draws ``places`` (each point two columns wide)."""
    return int(places[:, 0].max()) + 1, int(places[:, 1].max()) + 2


def brick_image(values: np.ndarray, places: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """``values`` (one per point) as an image of half-step columns, each point in its own column and the next;
    ``fill`` where no point is (the half step at the end of every other row, a point the scan lacks)."""
    image = np.full(brick_shape(places), fill, dtype=np.float64)
    rows, columns = places[:, 0], places[:, 1]
    image[rows, columns] = values
    image[rows, columns + 1] = values
    return image


def brick_points(places: np.ndarray) -> np.ndarray:
    """The point each cell of :func:`brick_image` draws, or -1 where none does."""
    cells = np.full(brick_shape(places), -1, dtype=np.int64)
    points = np.arange(len(places))
    cells[places[:, 0], places[:, 1]] = points
    cells[places[:, 0], places[:, 1] + 1] = points
    return cells


def point_at(cells: np.ndarray, x: float, y: float) -> int | None:
    """The point drawn at ``x`` (in steps) and ``y`` (in steps, rows :data:`ROW_HEIGHT` apart) on the image whose
    ``cells`` :func:`brick_points` gives (a click on its map), or None where none is."""
    row, column = round(y / ROW_HEIGHT), round(x * 2)  # a half step's cell
    if 0 <= row < cells.shape[0] and 0 <= column < cells.shape[1] and cells[row, column] >= 0:
        return int(cells[row, column])
    return None
