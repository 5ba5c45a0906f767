"""ebsd_core: few-shot deep learning for EBSD pattern classification (the engine).

Layers, bottom to top: ``io``, ``phases``, ``masters``, ``simulate`` ->
``preprocess``, ``datasets`` -> models and training -> explanation. The engine
never imports streamlit; the dashboard in ``pages/`` calls into it. From Python (a script,
a notebook), :mod:`ebsd_core.api` is the front door: ``load_classifier``, ``train``.
"""

__version__ = "0.1.0"

import os as _os

if _os.name == "nt":  # rather than "No module named 'fcntl'" from deep inside
    raise ImportError(
        "ebsd_core runs on Linux (and macOS, untried): on Windows, run it in WSL 2, as its file locks and "
        "permissions are POSIX ones"
    )


def _give_the_libraries_a_home() -> None:
    """A home and a temporary folder, before HyperSpy, numba or matplotlib is imported (imported here, not at the
    top: the package imports none of its modules as it loads, see tests/test_imports.py)."""
    from ebsd_core.home_folder import ensure_temporary_folder, ensure_writable_home

    ensure_writable_home()
    ensure_temporary_folder()  # in the working folder, which the new home may have made known


_give_the_libraries_a_home()
