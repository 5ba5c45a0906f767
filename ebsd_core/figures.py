"""Matplotlib figures drawn from several threads at once (the dashboard's sessions and jobs).

pyplot keeps one registry of figures and one *current* figure for the whole process, and libraries that draw
with it (shap's ``image_plot``) pick the current figure: two SHAP plots or a SHAP plot and a phase map drawn at
once could each get the other's figure (4 of 30 SHAP plots drawn beside filter grids were the grids). Every
figure is therefore drawn, saved and closed under one lock.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator

_PYPLOT = threading.RLock()


@contextlib.contextmanager
def pyplot() -> Iterator:
    """``matplotlib.pyplot`` (off-screen) for the figures drawn, saved and closed inside the block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with _PYPLOT:
        yield plt


def png_bytes(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, then closed (call inside :func:`pyplot`)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
