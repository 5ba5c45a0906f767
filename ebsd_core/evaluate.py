"""Metrics for a trained classifier: accuracy, per-class scores, confusions, calibration."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from ebsd_core.phases import space_group_symbol

#: Same-lattice pairs that Hough indexing cannot tell apart (true class, confused with).
SAME_LATTICE_PAIRS = ((225, 221), (221, 225), (229, 221), (221, 229))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def evaluate_predictions(
    probs: np.ndarray,
    labels: np.ndarray,
    classes: list[int],
    materials: np.ndarray | None = None,
) -> dict:
    """Metrics of predicted probabilities (N, C) against labels (N,), as plain JSON types."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return {"patterns": 0}
    predictions = probs.argmax(axis=1)
    symbols = [space_group_symbol(sg) for sg in classes]
    index = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=index, zero_division=0)
    matrix = confusion_matrix(labels, predictions, labels=index)
    metrics = {
        "patterns": int(len(labels)),
        "accuracy": float((predictions == labels).mean()),
        "classes": symbols,
        "per_class": {
            sym: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for sym, p, r, f, s in zip(symbols, precision, recall, f1, support)
        },
        "confusion_matrix": matrix.tolist(),
        "ece": expected_calibration_error(probs, labels),
        "mean_confidence": float(probs.max(axis=1).mean()),
        "same_lattice_confusion": {},
    }
    for true_sg, other_sg in SAME_LATTICE_PAIRS:
        if true_sg in classes and other_sg in classes:
            t, o = classes.index(true_sg), classes.index(other_sg)
            n = int((labels == t).sum())
            if n:
                key = f"{space_group_symbol(true_sg)} as {space_group_symbol(other_sg)}"
                metrics["same_lattice_confusion"][key] = float(matrix[t, o] / n)
    if materials is not None:
        materials = np.asarray(materials).astype(str)
        metrics["per_material"] = {
            m: {
                "accuracy": float((predictions[materials == m] == labels[materials == m]).mean()),
                "n": int((materials == m).sum()),
                "space_group": symbols[int(labels[materials == m][0])],  # a material is of one class
            }
            for m in sorted(set(materials))
        }
    return metrics
