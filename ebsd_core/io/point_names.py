"""A scan exported as images, one per point, named by the point's place (``x12_y5.png``, ``Pattern x=12 y=5.bmp``,
``row5_col12.tif``).

Taken in the natural order of their names, such images run column by column (``x0_y0``, ``x0_y1``, ...), and a map
laid out row by row from them would be scrambled without a word. Where every name gives a point, once, and the points
fill at least half of a grid, the images are put in row order and the grid gives the map its shape; its points without
an image are blank (an export cut short, a file lost, still gives its map).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ebsd_core.wording import counted

_NUMBER = r"\s*[=_-]?\s*(\d+(?:\.\d+)?)(?![\d.])"
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
    row (each row by column), the index of its image's name, or None where no image names it."""

    order: list[int | None]
    shape: tuple[int, int]


def _point(name: str) -> tuple[float, float] | None:
    """The (x, y) (column, row) a file name gives, or None."""
    stem = PurePosixPath(name).stem
    for pattern, y_first in _POINT_NAMES:
        if found := pattern.search(stem):
            first, second = float(found[1]), float(found[2])
            return (second, first) if y_first else (first, second)
    return None


def scan_grid(names: list[str], warn: list[str]) -> ScanGrid | None:
    """The grid that the image ``names`` lay out (:class:`ScanGrid`), where each gives its point (x and y), no two the
    same, and the points fill at least half of a grid; None otherwise. Names that give points but not such a grid are
    said in ``warn``: they are then taken in the order of the names, which gives no map shape."""
    if len(names) < 2:
        return None
    points = []
    for name in names:  # most folders name no points: said by the first name
        if (point := _point(name)) is None:
            return None
        points.append(point)
    xs, ys = sorted({x for x, _ in points}), sorted({y for _, y in points})
    place = {point: index for index, point in enumerate(points)}
    twice = len(points) - len(place)
    if not twice and 2 * len(points) >= len(xs) * len(ys):
        return ScanGrid([place.get((x, y)) for y in ys for x in xs], (len(ys), len(xs)))
    found = (
        f"{counted(twice, 'point')} named twice" if twice else f"{len(points):,} of its {len(xs) * len(ys):,} points"
    )
    warn.append(
        f"the images' names give their points of a scan (x and y, as in {PurePosixPath(names[0]).name}), but not "
        f"a {len(ys)} x {len(xs)} grid ({found}): they are taken in the order of their names"
    )
    return None
