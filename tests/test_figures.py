import io
import threading

import numpy as np
from PIL import Image

from ebsd_core.explain_report import _grid_png, shap_image_plot


def test_figures_drawn_at_once_in_two_threads_are_each_their_own():
    """shap draws on pyplot's current figure, which is one for the whole process: with a filter grid drawn in
    another thread (two dashboard sessions), 4-10 of 30 SHAP plots were the grid instead."""
    rng = np.random.default_rng(0)
    values, pattern, grid = rng.normal(size=(2, 24, 24)), rng.normal(size=(24, 24)), rng.normal(size=(32, 128))

    def size(png: bytes) -> tuple[int, int]:
        return Image.open(io.BytesIO(png)).size

    expected = {"shap": size(shap_image_plot(values, pattern, ["A", "B"])), "grid": size(_grid_png(grid, "g"))}
    assert expected["shap"] != expected["grid"]
    drawn = []

    def draw(kind: str, times: int) -> None:
        for _ in range(times):
            png = shap_image_plot(values, pattern, ["A", "B"]) if kind == "shap" else _grid_png(grid, "g")
            drawn.append((kind, size(png)))

    threads = [threading.Thread(target=draw, args=("shap", 12)), threading.Thread(target=draw, args=("grid", 24))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(drawn) == 36 and all(got == expected[kind] for kind, got in drawn)
