"""The Phase map page on a saved map of N x N points (AppTest, no browser): server time to draw it, per rerun (a
click, a row typed), and the size of its largest chart, which Streamlit refuses above 200 MB (server.maxMessageSize).
Also a scan of N x N points on a hexagonal grid, classified ("Classify every pattern") and drawn on its grid.

Targets: a rerun well under the 18 s a 1000 x 1000 map took when every point was drawn; every map shown.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from serving import as_running_server  # noqa: E402

STREAMLIT_MESSAGE_LIMIT_MB = 200


def saved_map(side: int, folder: Path) -> Path:
    """A random two-phase map of side x side points with ground truth (so the page draws its three maps)."""
    from ebsd_core.phasemap import MapPhase, PhaseMap, save_phase_map

    n = side * side
    rng = np.random.default_rng(0)
    phases = [MapPhase("Ni", 225, 3.52, "#1f77b4"), MapPhase("Ni3Al", 221, 3.57, "#ff7f0e")]
    probabilities = rng.dirichlet([1, 1], n).astype(np.float32)
    phase_map = PhaseMap(
        (side, side), phases, probabilities, np.ones(n, np.float32), 0.5, truth=rng.integers(0, 2, n), source="big.h5"
    )
    return save_phase_map(phase_map, folder / f"map-{side}.npz")


def measure(side: int, reruns: int) -> dict:

    path = saved_map(side, Path(tempfile.mkdtemp()))
    # none at map_scan: the point's pattern is said to be missing
    drawn = timed_page({"map_path": str(path), "map_scan": str(path.with_suffix(".h5"))}, reruns)
    return {"points": side * side, **drawn}


def timed_page(state: dict, reruns: int) -> dict:
    """The Phase map page drawn with ``state`` in its session: the first draw, the slowest of ``reruns``, its charts."""
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    app.run()
    for key, value in state.items():
        app.session_state[key] = value
    start = time.perf_counter()
    app.switch_page("pages/phasemap.py").run()
    first = time.perf_counter() - start
    times = []
    for _ in range(reruns):
        start = time.perf_counter()
        app.run()
        times.append(time.perf_counter() - start)
    charts = [len(chart.proto.spec) / 1e6 for chart in app.get("plotly_chart")]
    return {
        "first_draw_s": round(first, 2),
        "rerun_s": round(max(times), 2),
        "charts": len(charts),
        "largest_chart_mb": round(max(charts, default=0), 1),
        "all_charts_mb": round(sum(charts), 1),
        "under_message_limit": max(charts, default=0) < STREAMLIT_MESSAGE_LIMIT_MB,
        "exception": bool(app.exception),
    }


def classified_hexagonal_scan(side: int, folder: Path) -> dict:
    """What "Classify every pattern" gives of a random two-phase scan of ``side`` rows of ``side`` points on a
    hexagonal grid: its result, with the points' file to draw on the grid."""
    from ebsd_core.inference import Prediction
    from ebsd_core.predictions import write_grid_points

    n = side * side
    probabilities = np.random.default_rng(0).dirichlet([1, 1], n).astype(np.float32)
    prediction = Prediction(probabilities, ["Fm-3m", "Pm-3m"], 0.5, np.ones(n, np.float32))
    places = np.array([(row, row % 2 + 2 * column) for row in range(side) for column in range(side)])
    (folder / "big.csv").write_text("path,index,prediction,confidence,p_Fm-3m,p_Pm-3m\n")
    counts = {"Fm-3m": int((prediction.index == 0).sum()), "Pm-3m": int((prediction.index == 1).sum())}
    return {
        "grid": str(write_grid_points(folder / "big.grid.safetensors", prediction, places)),
        "colours": {"Fm-3m": "#1f77b4", "Pm-3m": "#ff7f0e"},
        "labels": {"Fm-3m": "Ni (Fm-3m)", "Pm-3m": "Ni3Al (Pm-3m)"},
        "counts": counts | {"unknown": n - sum(counts.values())},
        "predictions": str(folder / "big.csv"),
        "scan": str(folder / "big.up2"),
        "model_name": "duplex",
        "patterns": n,
        "least_sure": 0,
        "notes": [],
    }


def measure_hexagonal(side: int, reruns: int) -> dict:
    result = classified_hexagonal_scan(side, Path(tempfile.mkdtemp()))
    drawn = timed_page({"map_predictions": result}, reruns)
    points_mb = round(Path(result["grid"]).stat().st_size / 1e6, 1)
    return {"grid": "hexagonal", "points": side * side, "points_file_mb": points_mb, **drawn}


def main() -> None:
    args = parser(__doc__).parse_args()
    os.environ.setdefault("EBSD_FEWSHOT_HOME", tempfile.mkdtemp())
    os.environ.setdefault("EBSD_MODEL_STORE", tempfile.mkdtemp())
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.__init__ = as_running_server(PagesManager.__init__)
    sides = (200, 1000) if args.quick else (200, 1000, 2000)
    reruns = 2 if args.quick else 3
    maps = [measure(side, reruns) for side in sides] + [measure_hexagonal(side, reruns) for side in sides]
    emit({"benchmark": "phasemap_page", "maps": maps})


if __name__ == "__main__":
    main()
