"""A run's predictions as CSV, the ``predict`` command's contract: ``path,index,prediction,confidence``, then one
``p_<symbol>`` column per class; ``prediction`` is the space-group symbol or ``unknown``."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsd_core.atomic import atomic_path
from ebsd_core.errors import InputError
from ebsd_core.inference import UNKNOWN, Prediction, blank_points
from ebsd_core.io.readers import PatternSource
from ebsd_core.paths import printable_path
from ebsd_core.store import ModelCard


def csv_header(card: ModelCard) -> list[str]:
    return ["path", "index", "prediction", "confidence", *[f"p_{symbol}" for symbol in card.class_symbols]]


def csv_rows(source: PatternSource, prediction: Prediction, name: str | None = None) -> Iterator[list[str]]:
    """One row per pattern of ``source``: its path is its image's name, else the source's path. ``name``: the
    source as its user knows it (its path within a folder of scans given), which names its rows instead, followed by
    its images' names."""
    for i, (label, conf, probs) in enumerate(zip(prediction.labels, prediction.confidence, prediction.probabilities)):
        row_name = source.names[i] if source.names else None
        if name:  # a folder's or a zip's images, a stack's pages, by their names in it; a file of one, by its own
            row_name = f"{name}/{row_name}" if row_name and source.kind != "image" else name
        yield [printable_path(row_name or source.path), str(i), label, f"{conf:.4f}", *[f"{p:.4f}" for p in probs]]


def write_predictions(
    path: str | Path, source: PatternSource, prediction: Prediction, card: ModelCard, name: str | None = None
) -> Path:
    """The CSV of one source's predictions at ``path``, written whole or not at all; ``name`` as :func:`csv_rows`
    takes it."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(card))
        writer.writerows(csv_rows(source, prediction, name))
    return Path(path)


def prediction_counts(prediction: Prediction) -> dict[str, int]:
    """Patterns per class, by symbol in the model's order, then ``unknown``; a class that none was read as counts 0."""
    counts = Counter(prediction.labels)
    return {symbol: counts[symbol] for symbol in [*prediction.classes, UNKNOWN]}


@dataclass(frozen=True)
class GridPoints:
    """The predictions of a scan on a hexagonal grid, point by point, for drawing them on it: ``index`` (the
    model's class, -1 unknown), ``confidence``, ``blank`` (a blank pattern: no confidence) and ``places`` (each
    point's row and column in half steps, :mod:`ebsd_core.io.hex_grid`), with each point's ``probabilities``; after
    the grain clean-up, ``raw_probabilities`` are those of each pattern alone."""

    index: np.ndarray
    confidence: np.ndarray
    blank: np.ndarray
    places: np.ndarray
    probabilities: np.ndarray
    raw_probabilities: np.ndarray | None = None


def grid_points(prediction: Prediction, places: np.ndarray, raw: np.ndarray | None = None) -> GridPoints:
    """The :class:`GridPoints` of ``prediction``, whose points lie at ``places``; ``raw``: the probabilities of each
    pattern alone, before the grain clean-up."""
    return GridPoints(
        np.asarray(prediction.index, np.int16),  # a model's classes: a few
        np.asarray(prediction.confidence, np.float32),
        blank_points(prediction.quality),
        np.asarray(places, np.int32),
        np.asarray(prediction.probabilities, np.float32),
        None if raw is None else np.asarray(raw, np.float32),
    )


def write_grid_points(
    path: str | Path, prediction: Prediction, places: np.ndarray, raw: np.ndarray | None = None
) -> Path:
    """:class:`GridPoints` of ``prediction`` at ``places`` (and ``raw``, :func:`grid_points`), at ``path``
    (safetensors), written whole or not at all."""
    from safetensors.numpy import save_file

    points = grid_points(prediction, places, raw)
    arrays = {
        "index": points.index,
        "confidence": points.confidence,
        "blank": points.blank.astype(np.uint8),
        "places": points.places,
        "probabilities": points.probabilities,
    }
    if points.raw_probabilities is not None:
        arrays["raw_probabilities"] = points.raw_probabilities
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp))
    return Path(path)


def read_grid_points(path: str | Path) -> GridPoints:
    """What :func:`write_grid_points` wrote.

    Raises
    ------
    InputError
        Where the file cannot be read as such (damaged, or of another kind).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
        blank = arrays["blank"].astype(bool)
        probabilities, raw = arrays["probabilities"], arrays.get("raw_probabilities")
        return GridPoints(arrays["index"], arrays["confidence"], blank, arrays["places"], probabilities, raw)
    except (SafetensorError, KeyError, OSError) as exc:
        raise InputError(
            f"the points of a classified scan cannot be read from it ({exc}): classify it again", path
        ) from None
