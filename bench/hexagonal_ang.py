"""The .ang of a scan on a hexagonal grid: its own (OIM's indexing of it) written again with the model's phases.

A scan of ``--points`` points (rows alternating 1,000 and 999, as OIM records them), its .ang made as OIM writes one
(``tests/conftest.py``'s ``oim_indexing``), then timed: reading its points' places
(:func:`ebsd_core.io.orientations.hexagonal_ang_places`) and writing it again with random phases
(:func:`ebsd_core.map_export.write_hexagonal_ang`), with the peak of Python's allocations in each (tracemalloc, in a
run of its own).
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _common import ROOT, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from conftest import oim_indexing  # noqa: E402

from ebsd_core.inference import Prediction  # noqa: E402
from ebsd_core.io.hex_grid import up2_places  # noqa: E402
from ebsd_core.io.orientations import hexagonal_ang_places  # noqa: E402
from ebsd_core.map_export import write_hexagonal_ang  # noqa: E402
from ebsd_core.phasemap import MapPhase  # noqa: E402
from ebsd_core.predictions import grid_points  # noqa: E402

COLUMNS = 1000


def timed(step) -> tuple[object, float, float]:
    """What ``step()`` gives, its seconds, and the peak of its allocations in MB in a second run (tracemalloc slows
    Python down many times over)."""
    start = time.perf_counter()
    value = step()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return value, seconds, peak


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=1_000_000, help="about this many (--quick: 100,000)")
    args = p.parse_args()
    rows = max(2, round((100_000 if args.quick else args.points) / (COLUMNS - 0.5)))
    points = COLUMNS * rows - rows // 2
    places = up2_places(COLUMNS, rows, points)
    probabilities = np.random.default_rng(0).dirichlet([1, 1], size=points).astype(np.float32)
    predicted = grid_points(Prediction(probabilities, ["Fm-3m", "Im-3m"], 0.6), places)
    phases = [MapPhase("austenite", 225, 3.595, "#1f77b4"), MapPhase("ferrite", 229, 2.867, "#ff7f0e")]
    with tempfile.TemporaryDirectory(prefix="bench-hexagonal-ang-") as folder:
        ang = oim_indexing(Path(folder) / "scan.ang", places, step=0.15)
        read, read_s, read_mb = timed(lambda: hexagonal_ang_places(ang, points))
        assert np.array_equal(read, places)
        out = Path(folder) / "phases.ang"
        _, write_s, write_mb = timed(lambda: write_hexagonal_ang(predicted, phases, ang, out))
        emit(
            {
                "points": points,
                "ang_mb": round(ang.stat().st_size / 1e6, 1),
                "read_places_s": round(read_s, 2),
                "read_places_peak_mb": round(read_mb),
                "write_s": round(write_s, 2),
                "write_peak_mb": round(write_mb),
            }
        )


if __name__ == "__main__":
    main()
