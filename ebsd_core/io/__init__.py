"""Readers and writers: the project's HDF5 dataset, vendor EBSD files, image folders.

The names below are loaded on first use: importing them here made the package and ``readers`` (which imports
its sibling modules through the package) import each other, and two threads importing them at once (a
dashboard page started while the page before it still imports) could meet the half-imported module.
"""

import importlib

_EXPORTS = {
    "Dataset": "dataset",
    "read_dataset": "dataset",
    "write_dataset": "dataset",
    "PatternSource": "readers",
    "open_patterns": "readers",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ebsd_core.io.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ebsd_core.io' has no attribute {name!r}")
