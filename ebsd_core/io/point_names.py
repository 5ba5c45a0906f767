"""A scan exported as images, one per point, named by the point's place (``x12_y5.png``, ``Pattern x=12 y=5.bmp``,
``row5_col12.tif``).

Taken in the natural order of their names, such images run column by column (``x0_y0``, ``x0_y1``, ...), and a map
laid out row by row from them would be scrambled without a word. Where every name gives a point, once, and the points
fill at least half of a grid, the images are put in row order and the grid gives the map its shape; its points without
an image are blank (an export cut short, a file lost, still gives its map), rows and columns of them too, and a few
images whose names give no point (an overview image dropped beside the patterns) are left out of the scan. Points on
a hexagonal grid (every other row offset by half a step) are taken row by row, with no map shape, said so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ebsd_core.io.hex_grid import DRAWN_ON_ITS_GRID, is_hexagonal
from ebsd_core.wording import counted

#: a number after "=" may be negative (stage coordinates, ``x=-1.5``); after "_" or "-", or none, it is not (``x-12``)
_NUMBER = r"(?:\s*=\s*(?=-?\d)|\s*[_-]?\s*(?=\d))(-?\d+(?:\.\d+)?)(?![\d.])"
_COLUMN, _ROW = r"(?:x|c|col|column)", r"(?:y|r|row)"
#: column then row (``x12_y5``, ``X12Y5``, ``x=12, y=5``, ``c12_r5``), or row then column (``y5x12``, ``row5_col12``);
#: neither inside a word (``box3``, ``day2``).
_POINT_NAMES = (
    (re.compile(rf"(?<![a-z]){_COLUMN}{_NUMBER}[\s_,;-]*(?<![a-z]){_ROW}{_NUMBER}", re.I), False),
    (re.compile(rf"(?<![a-z]){_ROW}{_NUMBER}[\s_,;-]*(?<![a-z]){_COLUMN}{_NUMBER}", re.I), True),
)


@dataclass(frozen=True)
class ScanGrid:
    """Where the images of a scan lie: ``order`` gives, for each point of a grid of ``shape`` (rows, columns), row by
    row (each row by column), the index of its image's name, or None where no image names it. ``starts_scan``: the
    names' first row and column are numbered 0 or 1, the scan's first (an export cut short loses its last rows)."""

    order: list[int | None]
    shape: tuple[int, int]
    starts_scan: bool = False
    hexagonal: bool = False  # every other row offset by half a step: ``order`` is row by row, ``shape`` (points,)
    places: tuple[tuple[int, int], ...] = ()  # of a hexagonal grid: each point's row and column in half steps


#: The note on images whose names place their points on a hexagonal grid.
HEXAGONAL_NAMES = (
    "the images' names place their points on a hexagonal grid (every other row offset by half a step), taken row by "
    f"row: {DRAWN_ON_ITS_GRID}"
)


def _point(name: str) -> tuple[float, float] | None:
    """The (x, y) (column, row) a file name gives, or None."""
    stem = PurePosixPath(name).stem
    for pattern, y_first in _POINT_NAMES:
        if found := pattern.search(stem):
            first, second = float(found[1]), float(found[2])
            return (second, first) if y_first else (first, second)
    return None


#: The most of a scan's images whose names may give no point (an overview image dropped beside the patterns), as a
#: share of them: they are left out of the scan, said so.
MOST_UNNAMED_SHARE = 0.1


def scan_grid(names: list[str], warn: list[str]) -> ScanGrid | None:
    """The grid that the image ``names`` lay out (:class:`ScanGrid`), where each gives its point (x and y), no two the
    same, and the points fill at least half of a grid; None otherwise. A few names that give no point (at most
    :data:`MOST_UNNAMED_SHARE` of them) are left out of the grid, said in ``warn``. Names that give points but not
    such a grid are said in ``warn`` too: they are then taken in the order of the names, which gives no map shape."""
    if len(names) < 2 or (_point(names[0]) is None and _point(names[-1]) is None):
        return None  # most folders name no points: said by their first and last names
    found = {index: point for index, name in enumerate(names) if (point := _point(name)) is not None}
    unnamed = [names[index] for index in range(len(names)) if index not in found]
    if len(found) < 2 or len(unnamed) > MOST_UNNAMED_SHARE * len(names):
        return None
    points = list(found.values())
    (column, columns), (row, rows) = grid_places([x for x, _ in points]), grid_places([y for _, y in points])
    place = {(row[y], column[x]): index for index, (x, y) in found.items()}
    twice = len(points) - len(place)
    if not twice and _hexagonal(list(place), rows, columns):
        warn.append(HEXAGONAL_NAMES)
        order = [place[point] for point in sorted(place)]  # row by row, as the vendors write such a scan
        return ScanGrid(order, (len(order),), hexagonal=True, places=tuple(sorted(place)))
    if not twice and 2 * len(points) >= rows * columns:
        if unnamed:
            shown = ", ".join(PurePosixPath(name).name for name in unnamed[:3]) + (", ..." if len(unnamed) > 3 else "")
            warn.append(
                f"{counted(len(unnamed), 'image')} whose "
                f"{'name gives' if len(unnamed) == 1 else 'names give'} no point of the scan "
                f"{'was' if len(unnamed) == 1 else 'were'} left out of it ({shown})"
            )
        first = (min(x for x, _ in points), min(y for _, y in points))
        order = [place.get((r, c)) for r in range(rows) for c in range(columns)]
        return ScanGrid(order, (rows, columns), all(value in (0, 1) for value in first))
    gaps = f"{counted(twice, 'point')} named twice" if twice else f"{len(points):,} of its {rows * columns:,} points"
    example = PurePosixPath(names[next(iter(found))]).name
    warn.append(
        f"the images' names give their points of a scan (x and y, as in {example}), but not a {rows} x {columns} "
        f"grid ({gaps}): they are taken in the order of their names"
    )
    return None


def _hexagonal(points: list[tuple[int, int]], rows: int, columns: int) -> bool:
    """Whether the (row, column) ``points`` lie on a hexagonal grid (:func:`~ebsd_core.io.hex_grid.is_hexagonal`;
    on the grid of half steps, each row takes every other column, the next row the others) and fill at least half
    of its places."""
    if columns < 3 or not is_hexagonal(points):
        return False
    even = (points[0][0] + points[0][1]) % 2 == 0
    places = rows * columns // 2 + (rows * columns % 2 if even else 0)  # of an odd count, (0, 0)'s take one more
    return 2 * len(points) >= places


#: How far from a whole number of steps from the first a coordinate may lie, as a share of the step (stage coordinates
#: written with a few decimals: ``x=0.333``)
STEP_TOLERANCE = 0.01


def grid_places(values: list[float]) -> tuple[dict[float, int], int]:
    """Each of the ``values``' place along the scan's rows or columns, and how many places there are.

    The scan's step is the smallest gap between the values: a row or column with no image between others (an export
    that lost it) keeps its place, to be drawn blank, rather than the rows after it moving up into it. Values that are
    not whole steps apart (coordinates of no even grid) are placed in their order.
    """
    distinct = sorted(set(values))
    if len(distinct) < 2:
        return {value: 0 for value in distinct}, len(distinct)
    span = distinct[-1] - distinct[0]
    step = span / round(span / min(b - a for a, b in zip(distinct, distinct[1:])))  # over the span: x=0.333 ... 33.333
    steps = [(value - distinct[0]) / step for value in distinct]
    if all(abs(n - round(n)) < STEP_TOLERANCE for n in steps):
        return {value: round(n) for value, n in zip(distinct, steps)}, round(steps[-1]) + 1
    return {value: n for n, value in enumerate(distinct)}, len(distinct)
