"""State the whole process shares, which the dashboard's threads (its sessions and jobs) take turns with.

``warnings.catch_warnings`` swaps the process's warning filters and handler: a hexagonal-grid scan read while
another thread read a square one was taken for square (2 of 80 reads), its warning caught by the other thread.
torch's and numpy's global random generators are the process's too: a SHAP explanation seeding them while a
training job built its network changed the trained weights of a seeded run (3 of 4 runs).
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from collections.abc import Iterator

#: Held while warnings are caught or filtered (:func:`caught_warnings`) or the standard streams are swapped
#: (:func:`silenced_output`: two threads restoring them in the wrong order would leave one swallowing all output).
WARNINGS = threading.RLock()
#: Held while the global random generators are seeded or drawn from (model construction, SHAP).
GLOBAL_RNG = threading.RLock()


@contextlib.contextmanager
def caught_warnings(record: bool = False) -> Iterator[list[warnings.WarningMessage] | None]:
    """``warnings.catch_warnings``, one thread at a time."""
    with WARNINGS, warnings.catch_warnings(record=record) as caught:
        yield caught


@contextlib.contextmanager
def silenced_output(stderr: bool = False) -> Iterator[io.StringIO]:
    """What libraries print to standard output (and ``stderr``) inside the block is kept from the streams, one
    thread at a time; the block is given it, for what a library says only there."""
    printed = io.StringIO()
    with WARNINGS, contextlib.redirect_stdout(printed):
        if not stderr:
            yield printed
            return
        with contextlib.redirect_stderr(printed):
            yield printed
